"""The artifact folder's meta.json, in one place: what it holds, writing it, reading it and checking it.

fcos3d-compile writes it (compiler/build.py), the runtime reads and checks it before loading model.so
(runtime/execute.py), align-bpu asks whether an artifact was compiled from a given ONNX. numpy + stdlib only.
"""

from __future__ import annotations

import json
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
    "compiled_from",
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
            {"name": i.name, "shape": list(i.shape), "dtype": "int8", "scale": float(i.scale)} for i in graph.inputs
        ],
        "outputs": [
            {
                "name": o.name,
                "shape": list(shape),
                "dtype": o.dtype,
                # float = int * scales[c] along axis 1 (one entry for int8 outputs, per channel for int32 heads)
                "scales": [float(s) for s in np.asarray(o.scales, dtype=np.float64)],
            }
            for o, shape in zip(graph.outputs, output_shapes, strict=True)
        ],
        "versions": {d: installed_version(d) for d in VERSIONED_DISTS},
    }


def write_meta(out_dir: str | Path, meta: dict) -> Path:
    """Write ``out_dir/meta.json`` atomically (a reader never sees half of it)."""
    return atomic_write_json(Path(out_dir) / META, meta, indent=2)


# -- reading and checking ---------------------------------------------------------------------------------------


def read_meta(folder: str | Path) -> tuple[dict, Path]:
    """(meta, path of meta.json) of an artifact folder, checked by check_meta; ArtifactError otherwise."""
    meta_path = Path(folder) / META
    if not meta_path.is_file():
        raise ArtifactError(f"{folder}: no meta.json; is this a folder written by fcos3d-compile?")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{meta_path}: not valid JSON ({exc}); {FIX}") from None
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
        for k, spec in enumerate(meta[kind]):
            lacks = [f for f in ("name", "shape", "dtype") if f not in spec]
            if lacks:
                raise ArtifactError(f"{meta_path}: {kind}[{k}] lacks {lacks}; {FIX}")
    for spec in meta["outputs"]:
        if spec["dtype"] not in _OUTPUT_DTYPES:
            raise ArtifactError(
                f"{meta_path}: output {spec['name']!r} has dtype {spec['dtype']!r}, not int8/int32; {FIX}"
            )
        scales = spec.get("scales")
        if scales is None or len(scales) not in (1, spec["shape"][1]):
            raise ArtifactError(f"{meta_path}: output {spec['name']!r} needs 1 or {spec['shape'][1]} scales; {FIX}")


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
    """Whether ``folder`` holds a meta.json recording ``onnx_path``'s sha256 (False for no or unreadable meta)."""
    meta_path = Path(folder) / META
    try:
        want = json.loads(meta_path.read_text()).get("onnx", {}).get("sha256")
    except (OSError, ValueError, AttributeError):  # ValueError: bad JSON or not UTF-8
        return False
    return want == sha256_file(onnx_path)
