"""fcos3d.boards: one TOML file per board (a TVM target dict, a cross compiler, accelerator figures).

Standard library only: ``load_board(name)``, ``board_names()``; the files live beside this module.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = ["Board", "Figure", "UnknownBoardError", "board_names", "load_board", "load_board_file"]


class UnknownBoardError(ValueError):
    """No board file of that name; the message lists the known boards."""


@dataclass(frozen=True)
class Figure:
    """One published accelerator figure with the source it comes from (notes/boards.md)."""

    name: str
    value: float
    unit: str
    source: str


@dataclass(frozen=True)
class Board:
    """A compilation target. ``target`` is the TVM target as a dict (TVM 0.27 refuses target strings);
    ``cross_compiler`` is None for the host (TVM's default compiler) or e.g. ``aarch64-linux-gnu-g++``."""

    name: str
    description: str
    target: MappingProxyType
    cross_compiler: str | None = None
    figures: tuple[Figure, ...] = field(default=())

    def __post_init__(self):
        if not self.name or not self.description:
            raise ValueError("Board: 'name' and 'description' must be non-empty strings")
        if self.target.get("kind") != "llvm":
            raise ValueError(f"Board {self.name!r}: target.kind must be 'llvm' (CPU code), got {self.target.get('kind')!r}")

    def target_dict(self) -> dict[str, Any]:
        """A plain (mutable) copy of the target for ``tvm.target.Target``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.target.items()}


def _freeze(value):
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _from_dict(doc: dict, origin: str) -> Board:
    missing = [k for k in ("name", "description", "target") if k not in doc]
    if missing:
        raise ValueError(f"{origin}: missing key(s) {missing}; a board needs name, description and [target]")
    figures = tuple(
        Figure(str(f["name"]), float(f["value"]), str(f.get("unit", "")), str(f["source"]))
        for f in doc.get("figures", [])
    )
    return Board(
        name=str(doc["name"]),
        description=str(doc["description"]),
        target=MappingProxyType({k: _freeze(v) for k, v in doc["target"].items()}),
        cross_compiler=doc.get("cross_compiler") or None,
        figures=figures,
    )


def _files() -> dict[str, Any]:
    return {p.name[:-5]: p for p in resources.files(__name__).iterdir() if p.name.endswith(".toml")}


def board_names() -> list[str]:
    """The names of the packaged boards, sorted."""
    return sorted(_files())


def load_board_file(path: str | Path) -> Board:
    """A board from any TOML file."""
    path = Path(path)
    return _from_dict(tomllib.loads(path.read_text()), str(path))


def load_board(name: str) -> Board:
    """A packaged board by name (``host``, ``arm-npu``, ...), or a path to a ``.toml`` file."""
    if name.endswith(".toml") and Path(name).is_file():
        return load_board_file(name)
    files = _files()
    if name not in files:
        raise UnknownBoardError(f"unknown board {name!r}; known boards: {', '.join(sorted(files))}")
    return _from_dict(tomllib.loads(files[name].read_text()), f"fcos3d/boards/{name}.toml")
