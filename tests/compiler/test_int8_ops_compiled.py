"""Every op of fcos3d.int8, symmetric and with zero points (int8 and uint8), compiled for host: equal to the
simulator bit for bit (the one-node models of tests/int8/ort_ops.py, all in one compiled module)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "int8"))

from ort_ops import OP_CASES, VARIANTS, as_int8, make_case, random_feeds  # noqa: E402


@pytest.mark.slow
def test_each_op_compiled_equals_the_simulator(host_compile):
    import tvm

    from fcos3d.int8.reader import parse_qdq
    from fcos3d.runtime.reference.simulator import Simulator

    models = {}
    for case in OP_CASES:
        for variant in VARIANTS:
            for tie in (False, True) if not case.exact else (False,):
                models[f"{case.name}__{variant}__{int(tie)}"] = make_case(case, variant, seed=3, tie=tie)
    graphs = {name: parse_qdq(m) for name, m in models.items()}
    vm = host_compile(graphs)
    differ = {}
    for name, graph in graphs.items():
        sim = Simulator(graph)
        for r in range(2):
            feeds = random_feeds(models[name], seed=5 + r)
            want = sim.run(feeds)
            got = vm[name](*(tvm.runtime.tensor(as_int8(feeds[i.name]), tvm.cpu()) for i in graph.inputs))
            for k, o in enumerate(graph.outputs):
                n = int(np.count_nonzero(got[k].numpy() != want[o.name]))
                if n:
                    differ[name] = differ.get(name, 0) + n
    assert differ == {}
