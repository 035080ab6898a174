"""Per op, the simulator against onnxruntime (graph optimisations off) on one-node-pattern QDQ models.

Tolerance ladder (docs/int8.md 5): at most 1 LSB, and every 1-LSB difference classified as a rounding tie (ORT's
float value before its QuantizeLinear within ``ort_ops.TIE_RTOL`` relative of a .5 boundary, widened for Add by
its stated common-domain error); data movements and selections (max pool, nearest resize, layout ops) exactly.
Each op runs symmetric int8, int8 with zero points and uint8, with random scales and with power-of-two scales
(exact ties, where the integer path rounds up and ORT to even).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ort_ops import OP_CASES, VARIANTS, compare_with_ort, make_case  # noqa: E402

_TIES: dict[str, int] = {}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", OP_CASES, ids=[c.name for c in OP_CASES])
def test_op_matches_onnxruntime_up_to_ties(case, variant):
    for tie in (False, True) if not case.exact else (False,):
        result = compare_with_ort(make_case(case, variant, seed=3, tie=tie), case, seed=3)
        assert result.max_diff <= 1 and result.unexplained == 0, (case.name, variant, tie, result)
        if case.exact:
            assert result.max_diff == 0
        _TIES[case.name] = _TIES.get(case.name, 0) + result.ties


def test_ties_were_met():
    """The classification is exercised: power-of-two scales make ties for conv, add and the average pools."""
    if not _TIES:
        pytest.skip("runs after test_op_matches_onnxruntime_up_to_ties")
    for name in ("conv3x3", "add", "avgpool_k3s2p1", "avgpool_ceil"):
        assert _TIES.get(name, 0) > 0, (name, _TIES)
