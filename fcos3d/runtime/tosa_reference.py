"""Runs a .tosa graph on the TOSA reference model: the executable spec of the integer semantics Arm's NPUs
implement, the Ethos-U boards' stand-in here (no NPU hardware; label results so).

``TosaReferenceModel(tosa_path, io).run(x)`` takes and returns our NCHW arrays; ``io`` is the emitter's record of
each graph end's TOSA tensor and layout (``TosaProgram.io``, meta.json's "tosa_io"). The host transposes, the
reference model (the ``tosa_reference_model`` executable of tosa-tools) runs in a subprocess with a timeout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fcos3d.errors import Fcos3dError

__all__ = [
    "BOARD_LABEL",
    "TosaArtifactRunner",
    "load_tosa_artifact",
    "TosaReferenceError",
    "TosaReferenceMissingError",
    "TosaReferenceModel",
    "check_tosa_file",
    "reference_model_executable",
]

BOARD_LABEL = "TOSA reference model (the NPU's integer spec), no hardware"
_EXE = "tosa_reference_model"


class TosaReferenceError(Fcos3dError, RuntimeError):
    """A .tosa file the reference model cannot load or run; the message names the file."""


class TosaReferenceMissingError(TosaReferenceError):
    """The tosa_reference_model executable is not installed."""


def reference_model_executable() -> Path:
    """The native ``tosa_reference_model`` of the installed tosa-tools wheel (its ``bin/``; the console script
    beside Python is a Python shim that costs a start-up per call), else the one on PATH."""
    try:
        from importlib import metadata

        exe = Path(metadata.distribution("tosa-tools").locate_file(Path("bin") / _EXE))
        if exe.is_file() and os.access(exe, os.X_OK):
            return exe
    except Exception:  # no distribution metadata: look on PATH
        pass
    for found in (shutil.which(_EXE, path=str(Path(sys.executable).parent)), shutil.which(_EXE)):
        if found:
            return Path(found)
    raise TosaReferenceMissingError(
        f"{_EXE} is not installed: install tosa-tools==2026.8.0 (pyproject.toml pins it; `make setup` installs it)"
    )


def check_tosa_file(path: str | Path) -> None:
    """Read the flatbuffer's structure (identifier, regions, blocks, tensors, operators) before the reference
    model sees it: a truncated or foreign file is one error naming it (the reference model itself aborts)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TosaReferenceError(f"{path}: cannot read the TOSA file ({e.strerror})") from None
    if len(data) < 8 or data[4:8] != b"TOSA":
        raise TosaReferenceError(f"{path}: not a TOSA flatbuffer (no 'TOSA' file identifier): re-run fcos3d-compile")
    try:
        from tosa.TosaGraph import TosaGraph

        graph = TosaGraph.GetRootAs(data, 0)
        version = graph.Version()
        _ = (version._Major(), version._Minor())
        for r in range(graph.RegionsLength()):
            region = graph.Regions(r)
            for b in range(region.BlocksLength()):
                block = region.Blocks(b)
                for t in range(block.TensorsLength()):
                    tensor = block.Tensors(t)
                    _ = (tensor.Name(), tensor.ShapeAsNumpy(), tensor.DataLength())
                for o in range(block.OperatorsLength()):
                    op = block.Operators(o)
                    _ = (op.Op(), op.InputsLength(), op.OutputsLength())
    except ImportError:
        raise TosaReferenceMissingError(f"{path}: the tosa package (tosa-tools) is not installed") from None
    except Exception as e:  # a truncated or corrupted flatbuffer: offsets past the end, bad tables
        raise TosaReferenceError(
            f"{path}: corrupt TOSA flatbuffer ({type(e).__name__}): re-run fcos3d-compile"
        ) from None


def _failure_line(output: str) -> str:
    """The reference model's own reason, one line: its first ERROR/FATAL line and the line after it."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for k, ln in enumerate(lines):
        if "ERROR" in ln or "FATAL" in ln:
            detail = lines[k + 1] if k + 1 < len(lines) and ln.endswith(":") else ""
            return f"{ln} {detail}".strip()
    return lines[-1] if lines else "no output"


class TosaReferenceModel:
    """One .tosa graph on the reference model. ``run(x)`` -> ``{output name: array}`` (NCHW, int8 / int32)."""

    label = BOARD_LABEL

    def __init__(self, tosa_path: str | Path, io: Mapping, timeout_s: float = 600.0):
        self.path = Path(tosa_path)
        self.io = io
        self.timeout_s = timeout_s
        check_tosa_file(self.path)
        self.exe = reference_model_executable()

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.io["inputs"]]

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.io["outputs"]]

    def run(self, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        given = dict(x) if isinstance(x, Mapping) else {self.io["inputs"][0]["name"]: x}
        if not isinstance(x, Mapping) and len(self.io["inputs"]) != 1:
            raise ValueError(f"the graph has inputs {self.input_names}: pass a dict")
        with tempfile.TemporaryDirectory(prefix="fcos3d-tosa-") as tmp:
            tmp = Path(tmp)
            ifm_names, ifm_files = [], []
            for k, spec in enumerate(self.io["inputs"]):
                if spec["name"] not in given:
                    raise KeyError(f"missing input {spec['name']!r}")
                v = np.asarray(given[spec["name"]])
                if v.dtype == np.uint8:  # a uint8 graph input in its ONNX form: the int8 form is u8 - 128
                    v = (v.astype(np.int16) - 128).astype(np.int8)
                if v.dtype != np.int8:
                    raise TypeError(f"input {spec['name']!r} must be int8, got {v.dtype}")
                v = np.ascontiguousarray(np.transpose(v, spec["perm"]))
                if list(v.shape) != list(spec["shape"]):
                    raise ValueError(
                        f"input {spec['name']!r}: shape {v.shape} (TOSA layout), the graph has {spec['shape']}"
                    )
                f = tmp / f"in{k}.npy"
                np.save(f, v)
                ifm_names.append(spec["tensor"])
                ifm_files.append(str(f))
            ofm_files = [str(tmp / f"out{k}.npy") for k in range(len(self.io["outputs"]))]
            cmd = [
                str(self.exe),
                f"--tosa_file={self.path}",
                f"--ifm_name={','.join(ifm_names)}",
                f"--ifm_file={','.join(ifm_files)}",
                f"--ofm_name={','.join(o['tensor'] for o in self.io['outputs'])}",
                f"--ofm_file={','.join(ofm_files)}",
            ]
            env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
            try:
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=self.timeout_s, env=env, stdin=subprocess.DEVNULL
                )
            except subprocess.TimeoutExpired:
                raise TosaReferenceError(
                    f"{self.path}: the TOSA reference model ran past {self.timeout_s:.0f} s (timeout_s)"
                ) from None
            if proc.returncode != 0 or not all(Path(f).is_file() for f in ofm_files):
                raise TosaReferenceError(
                    f"{self.path}: the TOSA reference model failed (exit {proc.returncode}): "
                    f"{_failure_line(proc.stdout + chr(10) + proc.stderr)}"
                )
            out = {}
            for spec, f in zip(self.io["outputs"], ofm_files, strict=True):
                v = np.load(f)
                out[spec["name"]] = np.ascontiguousarray(np.transpose(v, np.argsort(spec["perm"]))).astype(
                    spec["dtype"], copy=False
                )
            return out


class TosaArtifactRunner:
    """A TOSA artifact (fcos3d.compiler.tosa.artifact) opened for running: ``run(x)`` as ``Artifact.run``, on the
    reference model. ``label`` says what computes the outputs; ``meta`` is the artifact's meta.json."""

    label = BOARD_LABEL
    device = "tosa-reference-model"

    def __init__(self, path: Path, meta: dict, model: TosaReferenceModel):
        self.path, self.meta, self.model = path, meta, model

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.meta["inputs"]]

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.meta["outputs"]]

    def run(self, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.model.run(x)
        for spec in self.meta["outputs"]:
            a = out[spec["name"]]
            if str(a.dtype) != spec["dtype"] or list(a.shape) != list(spec["shape"]):
                raise TosaReferenceError(
                    f"{self.path / 'meta.json'}: output {spec['name']!r} is {spec['dtype']} {spec['shape']}, the "
                    f"reference model returns {a.dtype} {list(a.shape)}: recompile with fcos3d-compile"
                )
        return {spec["name"]: out[spec["name"]] for spec in self.meta["outputs"]}


def load_tosa_artifact(
    path: str | Path, onnx_path: str | Path | None = None, board: str | None = None
) -> TosaArtifactRunner:
    """Open an Ethos-U artifact folder on the TOSA reference model, after the checks ``load_artifact`` makes:
    meta.json valid and written by the TOSA backend, every file's sha256 as recorded, the ONNX's sha256 (``onnx_path``
    or meta.json's), the board when given, and model.tosa a whole TOSA flatbuffer. Each failure one error naming
    the file."""
    from fcos3d.artifact import ArtifactError, check_files, check_onnx, library_path, read_meta

    path = Path(path)
    meta, meta_path = read_meta(path)
    if meta.get("backend") != "tosa" or "tosa_io" not in meta:
        raise ArtifactError(
            f"{meta_path}: not a TOSA artifact (no backend 'tosa' / tosa_io); open it with load_artifact"
        )
    if board is not None and meta["board"] != board:
        raise ArtifactError(f"{meta_path}: compiled for board {meta['board']!r}, not {board!r}")
    check_files(meta, meta_path)
    check_onnx(meta, meta_path, onnx_path)
    return TosaArtifactRunner(path, meta, TosaReferenceModel(library_path(meta, meta_path), meta["tosa_io"]))
