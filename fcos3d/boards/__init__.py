"""fcos3d.boards: one TOML file per board (a TVM target dict, a cross compiler, accelerator figures).

Standard library only: ``load_board(name)``, ``board_names()``; the files live beside this module.
``Board.accelerator`` holds the latency estimator's profile (fcos3d/compiler/latency/estimate.py, PERFORMANCE.md
"Latency model"): every figure with its source, published or a stated assumption, never silent.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = [
    "ACCELERATOR_FIGURES",
    "OPTIONAL_FIGURES",
    "Accelerator",
    "Board",
    "Figure",
    "BoardError",
    "UnknownBoardError",
    "board_names",
    "alias_of",
    "load_board",
    "load_board_file",
]


class UnknownBoardError(ValueError):
    """No board file of that name; the message lists the known boards."""


class BoardError(ValueError):
    """A board file that cannot be read or holds an invalid value; the message names the file and the field."""


@dataclass(frozen=True)
class Figure:
    """One published accelerator figure with the source it comes from (notes/boards.md)."""

    name: str
    value: float
    unit: str
    source: str


# The figures the estimator reads (PERFORMANCE.md "Latency model"), name -> unit. A board file may hold more
# (peak TOPS, cores, ...): those are shown by `fcos3d boards show` and not used by the model.
ACCELERATOR_FIGURES: dict[str, str] = {
    "macs_per_cycle": "MAC/cycle",  # int8 MACs the array completes per cycle when every lane is busy
    "block_oc": "channels",  # output channels per array block: Cout is padded to a multiple of it
    "block_ic": "channels",  # input channels consumed per block step: Cin per group is padded to it
    "block_h": "rows",  # output rows per block
    "block_w": "columns",  # output columns per block
    "elementwise_per_cycle": "elements/cycle",  # Add / Resize / MaxPool window / Concat elements per cycle
    "clock_hz": "Hz",
    "sram_bytes": "bytes",  # on-chip memory for activations: a layer whose tensors fit stays on chip
    "sram_bytes_per_s": "bytes/s",
    "dram_bytes_per_s": "bytes/s",  # off-chip: weights always, activations that do not fit SRAM
    "op_overhead_cycles": "cycles",  # fixed cost per layer (command setup, memory latency, kernel call)
}

# Optional per-op-kind throughputs that replace macs_per_cycle / elementwise_per_cycle for that kind: the
# calibrated host profile needs them (untuned code runs a depthwise conv or a requantising Add at its own
# speed); the Ethos-U profiles have them as fitted to Vela's estimate (scripts/fit_npu_boards.py).
OPTIONAL_FIGURES: dict[str, str] = {
    "depthwise_macs_per_cycle": "MAC/cycle",
    "add_per_cycle": "elements/cycle",
    "resize_per_cycle": "elements/cycle",
    "maxpool_per_cycle": "elements/cycle",
    "concat_per_cycle": "elements/cycle",
    # Ethos-U per-kind terms fitted to Vela (compiler/latency/estimate.py uses each only when present)
    "lut_per_cycle": "elements/cycle",
    "mul_per_cycle": "elements/cycle",
    "avgpool_per_cycle": "elements/cycle",
    "conv_overhead_cycles": "cycles",
    "matmul_overhead_cycles": "cycles",
    "add_overhead_cycles": "cycles",
    "mul_overhead_cycles": "cycles",
    "lut_overhead_cycles": "cycles",
    "elementwise_block_c": "channels",
    "narrow_input_outputs_per_cycle": "elements/cycle",
}
# Host CPU terms (compiler/latency/estimate.py HOST_FIGURES; fitted by scripts/calibrate_host.py): used only
# when a board file has them, which no NPU board file does (scripts/fit_npu_boards.py leaves them out).
HOST_ONLY_FIGURES: dict[str, str] = {
    "dot_lanes": "lanes",
    "amx_macs_per_cycle": "MAC/cycle",  # the MAC slots of AMX tile instructions (dense convs on AMX tiles)
    "conv_outputs_per_cycle": "elements/cycle",
    "pack_words_per_cycle": "words/cycle",
    "pad_bytes_per_cycle": "bytes/cycle",
    "channel_pad_bytes_per_cycle": "bytes/cycle",  # a depthwise conv's padded copy, made inside its kernel
    "window_channels_per_cycle": "channels/cycle",  # a window depthwise conv's fixed work per channel
    "zero_point_pad_bytes_per_cycle": "bytes/cycle",
    "default_conv_macs_per_cycle": "MAC/cycle",
    "matmul_macs_per_cycle": "MAC/cycle",
    "convtranspose_per_cycle": "elements/cycle",
    "resize_linear_per_cycle": "elements/cycle",
    "softmax_per_cycle": "elements/cycle",
    "lut_avgpool_per_cycle": "elements/cycle",  # a LutAveragePool's window elements (TVM's default code)
    "context_bytes_per_cycle": "bytes/cycle",
    "call_overhead_cycles": "cycles",  # once per inference: the VM's call of main (argument checks, allocations)
    "kernel_launch_cycles": "cycles",  # per kernel an op launches beyond its first (pad_split, im2col, ...)
}
OPTIONAL_FIGURES.update(HOST_ONLY_FIGURES)


@dataclass(frozen=True)
class Accelerator:
    """The estimator's profile of the unit that runs the layers: ``figures`` by name (all of
    ``ACCELERATOR_FIGURES`` present, positive, each with a source). ``note`` says how the profile was made."""

    name: str
    figures: MappingProxyType
    note: str = ""

    def __post_init__(self):
        missing = [k for k in ACCELERATOR_FIGURES if k not in self.figures]
        if missing:
            raise BoardError(
                f"accelerator {self.name!r}: missing figure(s) {missing}; add [[figures]] entries "
                f"with name, value, unit and source (fcos3d/boards/ethos-u55-256.toml is an example)"
            )
        for f in self.figures.values():
            if not f.source.strip():
                raise BoardError(
                    f"accelerator {self.name!r}: figure {f.name!r} has no source; cite one or state the assumption"
                )
            if (f.name in ACCELERATOR_FIGURES or f.name in OPTIONAL_FIGURES) and not 0 < f.value < math.inf:
                raise BoardError(
                    f"accelerator {self.name!r}: figure {f.name!r} must be a finite number > 0, got {f.value}"
                )

    def __getitem__(self, name: str) -> float:
        return self.figures[name].value


@dataclass(frozen=True)
class Board:
    """A compilation target. ``target`` is the TVM target as a dict (TVM 0.27 refuses target strings);
    ``cross_compiler`` is None for the host (TVM's default compiler) or e.g. ``aarch64-linux-gnu-g++``."""

    name: str
    description: str
    target: MappingProxyType
    cross_compiler: str | None = None
    figures: tuple[Figure, ...] = field(default=())
    accelerator: Accelerator | None = None
    # True for a profile whose CPU cannot load a TVM shared library (a Cortex-M beside an Ethos-U55):
    # fcos3d perf estimates it, fcos3d-compile refuses it.
    estimate_only: bool = False

    def __post_init__(self):
        if not self.name or not self.description:
            raise BoardError("Board: 'name' and 'description' must be non-empty strings")
        if self.target.get("kind") != "llvm":
            raise BoardError(
                f"Board {self.name!r}: target.kind must be 'llvm' (CPU code), got {self.target.get('kind')!r}"
            )

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
        raise BoardError(f"{origin}: missing key(s) {missing}; a board needs name, description and [target]")
    if not isinstance(doc.get("target"), dict):
        raise BoardError(f'{origin}: [target] must be a table (kind = "llvm", ...)')
    try:
        figures = tuple(
            Figure(str(f["name"]), float(f["value"]), str(f.get("unit", "")), str(f["source"]))
            for f in doc.get("figures", [])
        )
    except KeyError as exc:
        raise BoardError(f"{origin}: a [[figures]] entry lacks {exc}; each needs name, value, unit, source") from None
    except (TypeError, ValueError):
        raise BoardError(f"{origin}: every [[figures]] value must be a number") from None
    names = [f.name for f in figures]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BoardError(f"{origin}: figure(s) {repeated} given more than once; keep one [[figures]] entry each")
    accelerator = None
    if "accelerator" in doc:
        acc = doc["accelerator"]
        accelerator = Accelerator(
            str(acc.get("name", doc["name"])), MappingProxyType({f.name: f for f in figures}), str(acc.get("note", ""))
        )
    return Board(
        name=str(doc["name"]),
        description=str(doc["description"]),
        target=MappingProxyType({k: _freeze(v) for k, v in doc["target"].items()}),
        cross_compiler=doc.get("cross_compiler") or None,
        figures=figures,
        accelerator=accelerator,
        estimate_only=bool(doc.get("estimate_only", False)),
    )


def _files() -> dict[str, Any]:
    return {p.name[:-5]: p for p in resources.files(__name__).iterdir() if p.name.endswith(".toml")}


def board_names() -> list[str]:
    """The names of the packaged boards, sorted."""
    return sorted(_files())


def _parse(text_of, origin: str) -> Board:
    """The board of a TOML text; every problem one BoardError naming ``origin`` (a path or the packaged name)."""
    try:
        doc = tomllib.loads(text_of())
    except OSError as exc:
        raise BoardError(f"{origin}: cannot be read ({exc.strerror}); check the path") from None
    except UnicodeDecodeError:
        raise BoardError(f"{origin}: not UTF-8 text; a board is a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise BoardError(f"{origin}: TOML syntax error ({exc}); fix the file") from None
    try:
        return _from_dict(doc, origin)
    except BoardError as exc:
        text = str(exc)
        raise BoardError(text if text.startswith(origin) else f"{origin}: {text}") from None


def load_board_file(path: str | Path) -> Board:
    """A board from any TOML file."""
    path = Path(path)
    return _parse(path.read_text, str(path))


def alias_of(name: str) -> str | None:
    """The board a packaged alias names (``arm-npu`` -> ``ethos-u65-512``), None for a board of its own."""
    files = _files()
    if name not in files:
        return None
    try:
        target = tomllib.loads(files[name].read_text()).get("alias_of")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None  # load_board reports the file's problem
    return str(target) if target else None


def load_board(name: str) -> Board:
    """A packaged board by name (``host``, ``cortex-a55``, ``ethos-u55-256``, ...; an alias such as ``arm-npu``
    gives the board it names), or a path to a ``.toml`` file."""
    if name.endswith(".toml"):
        return load_board_file(name)
    files = _files()
    if name not in files:
        raise UnknownBoardError(f"unknown board {name!r}; known boards: {', '.join(sorted(files))}")
    target = alias_of(name)
    if target is not None:
        if target not in files or alias_of(target) is not None:
            raise BoardError(f"fcos3d/boards/{name}.toml: alias_of = {target!r} is not a packaged board")
        return load_board(target)
    return _parse(files[name].read_text, f"fcos3d/boards/{name}.toml")
