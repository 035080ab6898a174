"""The artifact folder's meta.json, in one place: what it holds, writing it, reading it and checking it.

fcos3d-compile writes it (compiler/build.py), the runtime reads and checks it before loading model.so
(runtime/execute.py), align-bpu asks whether an artifact was compiled from a given ONNX. numpy + stdlib only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from .errors import Fcos3dError
from .io import atomic_write_json, sha256_file

__all__ = [
    "META",
    "META_FORMAT",
    "LIBRARY",
    "VERSIONED_DISTS",
    "ArtifactError",
    "make_meta",
    "write_meta",
    "read_meta",
    "check_meta",
    "check_versions",
    "check_onnx",
    "check_files",
    "compiled_from",
    "file_hashes",
    "library_path",
    "replaceable",
]

META = "meta.json"
META_FORMAT = 1
LIBRARY = "model.so"
# Recorded in meta.json; the first two decide whether a library loads (model.so calls into the TVM runtime).
VERSIONED_DISTS = ("fcos3d", "apache-tvm", "apache-tvm-ffi", "onnx", "onnxsim", "numpy")
_RUNTIME_DISTS = ("apache-tvm", "apache-tvm-ffi")
_OUTPUT_DTYPES = ("int8", "int32")
FIX = "recompile with fcos3d-compile"


class ArtifactError(Fcos3dError, ValueError):
    """The folder is not a loadable artifact: meta.json missing, invalid or not matching model.so, a truncated
    library, or a library for another machine. The message names the file and the fix."""


def installed_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


# -- writing ----------------------------------------------------------------------------------------------------


def make_meta(graph, *, board: str, target: dict, onnx: dict, output_shapes: Sequence[tuple[int, ...]]) -> dict:
    """meta.json: everything a runtime needs to feed the module and dequantise its outputs.

    ``graph``: the compiled IntGraph (its inputs and outputs); ``onnx``: {path, sha256, opset, simplified}.
    """
    return {
        "format": META_FORMAT,
        "function": "main",
        "library": LIBRARY,
        "board": board,
        "target": target,
        "onnx": onnx,
        "inputs": [
            {
                "name": i.name,
                "shape": list(i.shape),
                "dtype": "int8",
                "scale": float(i.scale),
                # int8 zero point (docs/int8.md 1); onnx_dtype "uint8": the ONNX tensor is this int8 input + 128
                "zero_point": int(getattr(i, "zero_point", 0)),
                "onnx_dtype": getattr(i, "onnx_dtype", "int8"),
            }
            for i in graph.inputs
        ],
        "outputs": [
            {
                "name": o.name,
                "shape": list(shape),
                "dtype": o.dtype,
                # float = int * scales[c] along axis 1 (one entry for int8 outputs, per channel for int32 heads)
                "scales": [float(s) for s in np.asarray(o.scales, dtype=np.float64)],
                # float = (int - zero_point) * scales; onnx_dtype "uint8": the ONNX tensor is the int8 output + 128
                "zero_point": int(getattr(o, "zero_point", 0)),
                "onnx_dtype": getattr(o, "onnx_dtype", o.dtype),
            }
            for o, shape in zip(graph.outputs, output_shapes, strict=True)
        ],
        "versions": {d: installed_version(d) for d in VERSIONED_DISTS},
    }


def file_hashes(folder: str | Path) -> dict[str, str]:
    """{file name: sha256} of every file in an artifact folder being written, meta.json aside (it holds them)."""
    folder = Path(folder)
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != META}


def write_meta(out_dir: str | Path, meta: dict) -> Path:
    """Record the sha256 of every other file of ``out_dir`` in ``meta["files"]``, then write ``out_dir/meta.json``
    atomically. Call it last, on the finished temp folder (fcos3d.io.atomic_dir): the hashes tie meta.json to the
    exact model.so and reports beside it, and load_artifact refuses any other pairing."""
    meta["files"] = file_hashes(out_dir)
    return atomic_write_json(Path(out_dir) / META, meta, indent=2)


# Names fcos3d-compile writes into an artifact folder (and the CLI's IR dumps): a folder holding only these is
# one it may replace; anything else there belongs to someone else.
# profile.json / profile.csv: the measured per-layer profile (fcos3d/compiler/profile.py) beside perf.json.
_OWN_FILES = ("model.so", META, "perf.json", "perf.csv", "perf.html", "profile.json", "profile.csv")


def replaceable(folder: str | Path) -> None:
    """Refuse to replace ``folder`` unless it is missing, empty, or an artifact: its files are meta.json, the
    files its meta.json lists and the names fcos3d-compile writes. ArtifactError naming the foreign file."""
    folder = Path(folder)
    if not os.path.lexists(folder):
        return
    if not folder.is_dir() or folder.is_symlink():
        raise ArtifactError(f"{folder} exists and is not an artifact folder: move it away or pass another --out")
    names = sorted(p.name for p in folder.iterdir())
    if not names:
        return
    if META not in names:
        raise ArtifactError(
            f"{folder} is not empty and holds no meta.json (e.g. {names[0]}): it is not an artifact, so "
            "fcos3d-compile will not replace it; move it away or pass another --out"
        )
    try:
        listed = set(json.loads((folder / META).read_bytes()).get("files") or {})
    except (OSError, ValueError, AttributeError):
        listed = set()
    foreign = [n for n in names if n not in listed and n not in _OWN_FILES and not n.startswith("ir-after-")]
    if foreign:
        raise ArtifactError(
            f"{folder / foreign[0]} is not part of the artifact in {folder}: fcos3d-compile replaces the whole "
            "folder, so move that file away (or pass another --out) first"
        )


# -- reading and checking ---------------------------------------------------------------------------------------


def read_meta(folder: str | Path) -> tuple[dict, Path]:
    """(meta, path of meta.json) of an artifact folder, checked by check_meta; ArtifactError otherwise."""
    meta_path = Path(folder) / META
    if not meta_path.is_file():
        raise ArtifactError(f"{folder}: no meta.json; is this a folder written by fcos3d-compile?")
    try:
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{meta_path}: not UTF-8 text (byte {exc.start}); {FIX}") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{meta_path}: not valid JSON ({exc}); {FIX}") from None
    except OSError as exc:
        raise ArtifactError(f"{meta_path}: cannot be read ({exc.strerror}); check its permissions") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{meta_path}: a JSON {type(meta).__name__}, not an object; {FIX}")
    check_meta(meta, meta_path)
    return meta, meta_path


def check_meta(meta: dict, meta_path: Path) -> None:
    """The fields a runtime reads are there and well formed."""
    missing = [k for k in ("format", "function", "library", "board", "inputs", "outputs") if k not in meta]
    if missing:
        raise ArtifactError(f"{meta_path} lacks {missing}; {FIX}")
    if meta["format"] != META_FORMAT:
        raise ArtifactError(f"{meta_path}: format {meta['format']} is not {META_FORMAT}; {FIX}")
    if not meta["outputs"]:
        raise ArtifactError(f"{meta_path} lists no outputs; {FIX}")
    for kind in ("inputs", "outputs"):
        if not isinstance(meta[kind], list) or not all(isinstance(s, dict) for s in meta[kind]):
            raise ArtifactError(f"{meta_path}: {kind} is not a list of objects; {FIX}")
        for k, spec in enumerate(meta[kind]):
            lacks = [f for f in ("name", "shape", "dtype") if f not in spec]
            if lacks:
                raise ArtifactError(f"{meta_path}: {kind}[{k}] lacks {lacks}; {FIX}")
            shape = spec["shape"]
            if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape):
                raise ArtifactError(f"{meta_path}: {kind}[{k}] has shape {shape!r}, not positive integers; {FIX}")
    for spec in meta["outputs"]:
        if spec["dtype"] not in _OUTPUT_DTYPES:
            raise ArtifactError(
                f"{meta_path}: output {spec['name']!r} has dtype {spec['dtype']!r}, not int8/int32; {FIX}"
            )
        scales = spec.get("scales")
        channels = spec["shape"][1] if len(spec["shape"]) > 1 else 1
        if not isinstance(scales, list) or len(scales) not in (1, channels):
            raise ArtifactError(f"{meta_path}: output {spec['name']!r} needs 1 or {channels} scales; {FIX}")
    library_path(meta, meta_path)


def library_path(meta: dict, meta_path: Path) -> Path:
    """The library meta.json names, which must be a plain file name inside the artifact folder."""
    lib = meta["library"]
    if not isinstance(lib, str) or not lib or lib in (".", "..") or Path(lib).name != lib or "\\" in lib:
        raise ArtifactError(
            f"{meta_path}: library {lib!r} is not a file name inside the artifact folder (a path elsewhere "
            f"would load another model); {FIX}"
        )
    return meta_path.parent / lib


def check_files(meta: dict, meta_path: Path) -> None:
    """Every file meta.json lists is there with the sha256 recorded when it was compiled, the library among them:
    a model.so from another compile (a hand copy, a torn recompile) is refused instead of run silently."""
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        raise ArtifactError(
            f"{meta_path} records no sha256 of the artifact's files (an older fcos3d-compile wrote it); {FIX}"
        )
    if meta["library"] not in files:
        raise ArtifactError(f"{meta_path} records no sha256 of {meta['library']}; {FIX}")
    folder = meta_path.parent
    for name, want in files.items():
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise ArtifactError(f"{path} is missing (meta.json lists it); {FIX}")
        have = sha256_file(path)
        if have != want:
            raise ArtifactError(
                f"{path} is not the file compiled with {meta_path} (sha256 {have[:12]}..., meta.json records "
                f"{str(want)[:12]}...): a torn or hand-copied artifact; {FIX}, or copy the whole folder again"
            )


def check_versions(meta: dict, meta_path: Path) -> None:
    """The TVM the library was compiled with is the TVM that will run it (on this host, the RPC client too)."""
    recorded = meta.get("versions", {})
    for dist in _RUNTIME_DISTS:
        want = recorded.get(dist)
        if want is None:
            raise ArtifactError(f"{meta_path} does not record the {dist} version; {FIX}")
        have = installed_version(dist)
        if have != want:
            raise ArtifactError(
                f"{meta_path}: compiled with {dist} {want}, this machine has {have}: "
                f"{FIX} here, or install {dist}=={want}"
            )


def check_onnx(meta: dict, meta_path: Path, onnx_path: str | Path | None) -> None:
    """The model compiled is the ONNX the user names (or the one meta.json names, when it is still there)."""
    want = (meta.get("onnx") or {}).get("sha256")
    if onnx_path is None:
        recorded = (meta.get("onnx") or {}).get("path")
        if not recorded or not Path(recorded).is_file():
            return  # an artifact copied away from its ONNX: nothing to compare against
        onnx_path = recorded
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ArtifactError(f"{onnx_path}: no such ONNX file to check {meta_path} against")
    if want is None:
        raise ArtifactError(f"{meta_path} does not record the ONNX sha256; {FIX} {onnx_path}")
    have = sha256_file(onnx_path)
    if have != want:
        raise ArtifactError(
            f"{meta_path} was compiled from an ONNX with sha256 {want[:12]}..., {onnx_path} has "
            f"{have[:12]}...: {FIX} {onnx_path}"
        )


def compiled_from(folder: str | Path, onnx_path: str | Path) -> bool:
    """Whether ``folder`` is a whole artifact (meta.json valid, every file's sha256 as recorded) compiled from
    ``onnx_path`` (False otherwise: the caller recompiles)."""
    try:
        meta, meta_path = read_meta(folder)
        check_files(meta, meta_path)
    except ArtifactError:
        return False
    onnx = meta.get("onnx")
    return isinstance(onnx, dict) and onnx.get("sha256") == sha256_file(onnx_path)
