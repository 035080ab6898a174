"""Run a compiled artifact (model.so + meta.json) locally with TVM's Relax VM; returns raw integer outputs.

Used by tests and validation to compare the compiled module with the simulator bit for bit. Never imports torch.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Artifact", "ArtifactError", "load_artifact"]

META_FORMAT = 1


class ArtifactError(ValueError):
    """The folder is not a loadable artifact (missing/invalid meta.json, wrong board for this machine)."""


def _check_meta(meta: dict, where: Path) -> None:
    missing = [k for k in ("format", "function", "library", "board", "inputs", "outputs") if k not in meta]
    if missing:
        raise ArtifactError(f"{where}: meta.json lacks {missing}; recompile with fcos3d-compile")
    if meta["format"] != META_FORMAT:
        raise ArtifactError(f"{where}: meta.json format {meta['format']} is not {META_FORMAT}; recompile")
    triple = str(meta.get("target", {}).get("mtriple", ""))
    if triple and not triple.startswith(platform.machine()):
        raise ArtifactError(
            f"{where}: compiled for {triple!r} (board {meta['board']!r}), this machine is {platform.machine()}: "
            "run it on the board (TVM RPC) or compile with --target host"
        )


@dataclass
class Artifact:
    """A loaded artifact: ``run(x)`` -> ``{output name: int8/int32 array}`` in meta.json's order."""

    path: Path
    meta: dict
    _vm: object

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.meta["inputs"]]

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.meta["outputs"]]

    def run(self, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """int8 (N, C, H, W) input(s) -> raw outputs. ``x``: one array, or ``{input name: array}``."""
        import tvm

        given = dict(x) if isinstance(x, Mapping) else {self.input_names[0]: x}
        if len(self.input_names) != 1 and not isinstance(x, Mapping):
            raise ValueError(f"the artifact has inputs {self.input_names}: pass a dict")
        args = []
        for spec in self.meta["inputs"]:
            if spec["name"] not in given:
                raise KeyError(f"missing input {spec['name']!r}")
            v = np.ascontiguousarray(given[spec["name"]])
            if v.dtype != np.int8 or list(v.shape) != spec["shape"]:
                raise TypeError(f"input {spec['name']!r} must be int8 {spec['shape']}, got {v.dtype} {list(v.shape)}")
            args.append(tvm.runtime.tensor(v, tvm.cpu()))
        result = self._vm[self.meta["function"]](*args)
        return {o["name"]: r.numpy() for o, r in zip(self.meta["outputs"], result, strict=True)}


def load_artifact(path: str | Path) -> Artifact:
    """Open an artifact folder: check meta.json, load model.so into a Relax VM on the local CPU."""
    import tvm
    from tvm import relax

    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise ArtifactError(f"{path}: no meta.json; is this a folder written by fcos3d-compile?")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{meta_path}: not valid JSON ({exc})") from None
    _check_meta(meta, path)
    lib_path = path / meta["library"]
    if not lib_path.is_file():
        raise ArtifactError(f"{path}: {meta['library']} is missing")
    lib = tvm.runtime.load_module(str(lib_path))
    return Artifact(path, meta, relax.VirtualMachine(lib, tvm.cpu()))
