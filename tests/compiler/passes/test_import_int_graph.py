"""import_int_graph: the IR it emits (int32 conv accumulators, no floats) and each op kind vs the simulator."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from qdq_graphs import QDQGraphBuilder

from fcos3d.compiler.passes.import_int_graph import import_int_graph
from fcos3d.runtime.reference.simulator import Simulator


def _graph(op: str, tie: bool = False):
    b = QDQGraphBuilder(seed=11, tie=tie)
    x = b.input((2, 4, 7, 6))
    if op == "conv":
        b.output(b.conv(x, 6, kernel=3, stride=2, relu=True))
    elif op == "depthwise":
        b.output(b.conv(x, 4, kernel=3, groups=4))
    elif op == "head":
        b.conv(x, 3, kernel=1, pad=0, int32_output=True)
    elif op == "add":
        y = b.conv(x, 4, kernel=1, pad=0)
        b.output(b.add(x, y, relu=True))
    elif op == "maxpool":
        b.output(b.maxpool(x, 3, 2, 1))  # padded windows: -128 padding must never win
    elif op == "resize":
        b.output(b.resize(x, sizes=(11, 5), coordinate_mode="half_pixel", nearest_mode="round_prefer_ceil"))
    else:
        y = b.conv(x, 2, kernel=1, pad=0)
        b.output(b.concat([x, y], out_scale=x.scale * 0.7))  # both inputs requantised
    return Simulator(b.build())


def test_conv_accumulates_in_int32_and_nothing_is_float():
    text = import_int_graph(_graph("conv").graph).script()
    assert 'out_dtype="int32"' in text
    assert "q_multiply_shift_per_axis" in text  # the one rounding rule (fixedpoint.requantize)
    # The only floats: the requantisation's value marked float32 (exact: |acc + bias| <= 128 * sum|w| + |bias| is
    # far below 2**24 here) and its exact float32 scale (an int32 constant's bits), the 8th argument: what lets the
    # x86 lowering use the float32 form of the rounding (docs/int8.md 2.5). Every tensor stays an integer.
    floats = [line.strip() for line in text.splitlines() if "float" in line]
    assert len(floats) == 1, floats
    assert 'T.q_multiply_shift_per_axis(T.Cast("float32", ' in floats[0]
    assert floats[0].endswith('T.reinterpret("float32", E[v_i1]))') and floats[0].count("float") == 2, floats


@pytest.mark.parametrize("op", ["conv", "depthwise", "head", "add", "maxpool", "resize", "concat"])
@pytest.mark.parametrize("tie", [False, True])
def test_each_op_equals_the_simulator(op, tie, host_compile):
    sim = _graph(op, tie)
    vm = host_compile({"main": sim.graph})
    x = np.random.default_rng(5).integers(-128, 128, size=(2, 4, 7, 6), dtype=np.int8)
    want = sim.run(x)
    got = vm["main"](tvm.runtime.tensor(x))
    for (_name, w), g in zip(want.items(), got, strict=True):
        assert g.numpy().dtype == w.dtype
        assert np.array_equal(g.numpy(), w), f"{op}: {np.count_nonzero(g.numpy() != w)} elements differ"
