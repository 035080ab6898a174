"""The TOSA reference model equals the simulator on random small int8 graphs: 0 differing output elements.

The graphs are tests/runtime/qdq_graphs.py's (as tests/compiler/test_random_graphs.py compiles for TVM): every
conv kind (dense, grouped, depthwise x1/x2, pointwise; stride 1/2; pads; ReLU; bias), int32 heads, the add rule,
nearest resizes of every ONNX index mode, max pools, concats on every axis, and chains of them. A nearest resize
whose index map needs a RESIZE outside TOSA's limits is refused with TosaEmitError (counted, never compared).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdq_graphs import single_op_graphs, small_graphs
from tosa_cases import emit_and_load, mismatches, requires_tosa

from fcos3d.compiler.tosa.rescale import TosaEmitError
from fcos3d.runtime.reference.simulator import Simulator

pytestmark = requires_tosa

N_SINGLE, N_CHAIN = 80, 40  # 120 random graphs, one example (one reference-model run each, ~0.05 s)
CHECKED: list[str] = []
REFUSED: list[str] = []


@settings(max_examples=1, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(
    singles=st.lists(single_op_graphs(), min_size=N_SINGLE, max_size=N_SINGLE),
    chains=st.lists(small_graphs(), min_size=N_CHAIN, max_size=N_CHAIN),
)
def test_reference_model_equals_simulator_on_random_graphs(singles, chains, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tosa_random")
    failures = []
    for i, case in enumerate(singles + chains):
        sim = Simulator(case.model)
        try:
            ref = emit_and_load(sim.graph, folder, f"g{i}")
        except TosaEmitError as e:
            assert "Resize" in str(e), f"{case.description}: {e}"  # the one documented refusal
            REFUSED.append(case.description)
            continue
        bad, total, lines = mismatches(sim, ref, [case.x, np.full_like(case.x, -128), np.full_like(case.x, 127)])
        if bad or not total:
            failures.append(f"{case.description}: " + "; ".join(lines))
        CHECKED.append(case.description)
    assert not failures, "\n".join(failures[:20])


def test_enough_random_graphs_were_compared():
    """Runs after the property test (file order): >= 100 graphs compared with exactly 0 differing elements."""
    assert len(CHECKED) >= 100, (len(CHECKED), REFUSED)
    assert len(REFUSED) <= len(CHECKED) // 10, REFUSED
