"""Tests of fcos3d/runtime/align.py: mismatch counts, first mismatching index and values, missing/extra outputs."""

from __future__ import annotations

import numpy as np

from fcos3d.runtime.align import compare_outputs


def _outputs(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "feat": rng.integers(-128, 128, (1, 4, 3, 5), dtype=np.int8),
        "head": rng.integers(-(2**31), 2**31 - 1, (1, 2, 3, 5), dtype=np.int32),
    }


def test_equal():
    sim = _outputs()
    report = compare_outputs({k: v.copy() for k, v in sim.items()}, sim)
    assert report.equal and report.mismatches == 0
    assert [(o.name, o.total, o.first_index) for o in report.outputs] == [("feat", 60, None), ("head", 30, None)]
    assert "bit-exact (60 values)" in report.summary()


def test_first_mismatch_in_c_order():
    sim = _outputs()
    board = {k: v.copy() for k, v in sim.items()}
    board["head"][0, 1, 2, 0] ^= 1  # later in C order
    board["head"][0, 0, 2, 4] = sim["head"][0, 0, 2, 4] + 3 if sim["head"][0, 0, 2, 4] < 2**31 - 4 else 0
    board["head"][0, 1, 0, 0] = -sim["head"][0, 1, 0, 0] - 1  # a huge difference: no int32 wrap in max |diff|
    report = compare_outputs(board, sim)
    assert not report.equal and report["feat"].equal
    h = report["head"]
    assert (h.mismatches, h.total, h.first_index) == (3, 30, (0, 0, 2, 4))
    assert (h.board_value, h.sim_value) == (int(board["head"][0, 0, 2, 4]), int(sim["head"][0, 0, 2, 4]))
    assert h.max_abs_diff == abs(2 * int(sim["head"][0, 1, 0, 0]) + 1)
    assert "head: 3/30 differ" in report.summary() and "first at (0, 0, 2, 4)" in report.summary()


def test_missing_extra_and_mismatched_shapes():
    sim = _outputs()
    board = {"feat": sim["feat"].astype(np.int32), "extra": np.zeros(3, np.int8)}
    report = compare_outputs(board, sim)
    assert [o.name for o in report.outputs] == ["feat", "head", "extra"]
    assert not report.equal
    assert "board gives int32" in report["feat"].problem
    assert report["head"].problem == "missing from the board's outputs"
    assert report["extra"].problem == "not an output of the simulator"
