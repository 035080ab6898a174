"""Bit-exact comparison of board outputs with the integer simulator's (the check HAT's align_bpu makes).

Pure numpy, no torch: ``compare_outputs(board, sim)`` -> an AlignReport that says, per output, how many
integers differ and where the first difference is. Library code: it returns data, the CLI prints it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["AlignReport", "OutputAlignment", "compare_outputs"]


@dataclass(frozen=True)
class OutputAlignment:
    """One output: ``mismatches`` of ``total`` elements differ; ``first_index`` (a C-order index tuple) and the
    board / simulator values there, or None when equal. ``problem`` is set instead when the two cannot be compared
    element by element (missing on one side, another dtype or shape); such an output counts as not equal."""

    name: str
    mismatches: int
    total: int
    first_index: tuple[int, ...] | None = None
    board_value: int | None = None
    sim_value: int | None = None
    max_abs_diff: int = 0
    problem: str | None = None

    @property
    def equal(self) -> bool:
        return self.problem is None and self.mismatches == 0


@dataclass(frozen=True)
class AlignReport:
    """Every output in the simulator's order (then outputs only the board has); ``equal`` when all match."""

    outputs: tuple[OutputAlignment, ...]

    @property
    def equal(self) -> bool:
        return all(o.equal for o in self.outputs)

    @property
    def mismatches(self) -> int:
        return sum(o.mismatches for o in self.outputs)

    def __getitem__(self, name: str) -> OutputAlignment:
        for o in self.outputs:
            if o.name == name:
                return o
        raise KeyError(name)

    def summary(self) -> str:
        """One line per output, for logs and error messages."""
        lines = []
        for o in self.outputs:
            if o.problem is not None:
                lines.append(f"{o.name}: {o.problem}")
            elif o.equal:
                lines.append(f"{o.name}: bit-exact ({o.total} values)")
            else:
                lines.append(
                    f"{o.name}: {o.mismatches}/{o.total} differ (max |diff| {o.max_abs_diff}), first at "
                    f"{o.first_index}: board {o.board_value}, simulator {o.sim_value}"
                )
        return "\n".join(lines)


def _compare(name: str, b: np.ndarray, s: np.ndarray) -> OutputAlignment:
    b, s = np.asarray(b), np.asarray(s)
    if b.dtype != s.dtype or b.shape != s.shape:
        return OutputAlignment(
            name, 0, s.size, problem=f"board gives {b.dtype} {b.shape}, simulator {s.dtype} {s.shape}"
        )
    differ = b != s
    n = int(np.count_nonzero(differ))
    if n == 0:
        return OutputAlignment(name, 0, s.size)
    flat = int(np.flatnonzero(differ)[0])  # C order: the first element a row-major walk meets
    idx = tuple(int(i) for i in np.unravel_index(flat, s.shape))
    # int64 so that int32 extremes do not wrap when subtracted
    max_diff = int(np.max(np.abs(b.astype(np.int64) - s.astype(np.int64))))
    return OutputAlignment(name, n, s.size, idx, int(b[idx]), int(s[idx]), max_diff)


def compare_outputs(board: Mapping[str, np.ndarray], sim: Mapping[str, np.ndarray]) -> AlignReport:
    """Per output name: mismatch count, total, first mismatching index and the two values there (exact equality)."""
    rows = []
    for name, s in sim.items():
        if name not in board:
            rows.append(OutputAlignment(name, 0, int(np.asarray(s).size), problem="missing from the board's outputs"))
        else:
            rows.append(_compare(name, board[name], s))
    for name, b in board.items():
        if name not in sim:
            rows.append(OutputAlignment(name, 0, int(np.asarray(b).size), problem="not an output of the simulator"))
    return AlignReport(tuple(rows))
