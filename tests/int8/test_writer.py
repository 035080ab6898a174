"""fcos3d/int8/writer.py: an IntGraph written as QDQ ONNX reads back (reader.py) as the same ops, exactly.

Round trips of the hand-built graphs of tests/runtime/qdq_graphs.py (every op, float and int8 inputs, resize by
scales and by sizes, int8 and dequantised outputs) and of a traced int model with ``like`` resizes.
"""

from __future__ import annotations

import dataclasses
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from qdq_graphs import QDQGraphBuilder  # noqa: E402

from fcos3d.int8.ops import Concat, Conv, IntGraph, ResizeNearest, infer_shapes  # noqa: E402
from fcos3d.int8.reader import parse_qdq  # noqa: E402
from fcos3d.int8.writer import write_qdq  # noqa: E402


def _same(a, b) -> bool:
    """Field by field, arrays by value and dtype."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    if dataclasses.is_dataclass(a):
        return all(_same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _every_op_graph(float_input: bool) -> IntGraph:
    b = QDQGraphBuilder(seed=5)
    x = b.input((1, 3, 9, 12), float_input=float_input)
    y = b.conv(x, 8, 3, 2, relu=True)  # (1, 8, 5, 6)
    d = b.conv(y, 8, 3, groups=8, bias=False)
    a = b.add(y, d, relu=True)
    u = b.resize(a, 2)  # (1, 8, 10, 12): scales
    v = b.resize(a, sizes=(7, 9), coordinate_mode="half_pixel", nearest_mode="round_prefer_ceil")
    m = b.maxpool(u, 3, 2, 1)  # (1, 8, 5, 6)
    c = b.concat([m, y], out_scale=0.05)  # a rescaled input
    p = b.maxpool(v, 2, 2, 0, passthrough=True)
    b.output(c)
    b.output(p, dequantized=True)
    b.conv(c, 5, 1, pad=0, int32_output=True)
    return parse_qdq(b.build())


@pytest.mark.parametrize("float_input", [False, True])
def test_reader_writer_round_trip_is_exact(float_input):
    graph = _every_op_graph(float_input)
    assert {type(op) for op in graph.ops} >= {Conv, ResizeNearest, Concat}
    again = parse_qdq(write_qdq(graph))
    assert _same(again, graph)


def test_written_graph_runs_equal_in_the_simulator():
    from fcos3d.runtime.reference.simulator import Simulator

    graph = _every_op_graph(False)
    x = np.random.default_rng(0).integers(-128, 128, size=(1, 3, 9, 12), dtype=np.int8)
    want, got = Simulator(graph).run(x), Simulator(write_qdq(graph)).run(x)
    assert want.keys() == got.keys() and all(np.array_equal(want[k], got[k]) for k in want)


def test_like_resizes_are_written_as_scales_or_sizes():
    """A ``like`` resize (the traced int model's) becomes scales (1, 1, 2, 2) when it doubles, else sizes;
    every form picks the same source pixels."""
    import fcos3d.int8.fixedpoint as fx
    from fcos3d.int8.ops import GraphInput, GraphOutput

    w = np.ones((4, 4, 1, 1), np.int8)
    m, s = fx.conv_multipliers(1 / 128, np.full(4, 0.01), 1 / 64)

    def conv(name, src, strides):
        return Conv(
            name,
            src,
            name,
            w,
            np.zeros(4, np.int32),
            strides,
            (0, 0, 0, 0),
            1,
            False,
            1 / 128,
            np.full(4, 0.01),
            1 / 64,
            m,
            s,
        )

    ops = (conv("half", "x", (2, 2)), ResizeNearest("up", "half", "up", None, None, like="x"))
    image = GraphInput("x", "x", 1 / 128, False, (1, 4, None, None))
    out = GraphOutput("up", "up", "int8", np.array([1 / 64]))
    graph = IntGraph((image,), ops, (out,), {"x": 1 / 128, "half": 1 / 64, "up": 1 / 64})
    for hw, scales in (((6, 8), (Fraction(2), Fraction(2))), ((5, 7), None)):
        back = parse_qdq(write_qdq(graph, (1, 4, *hw))).ops[1]
        assert back.scales == scales and back.sizes == (None if scales else (1, 4, *hw))
        shapes = infer_shapes(graph, {"x": (1, 4, *hw)})
        assert shapes["up"] == (1, 4, *hw)
        for a, b in zip(back.index_maps(shapes["half"]), ops[1].index_maps(shapes["half"], shapes["x"])):
            assert np.array_equal(a, b)


def test_zero_points_round_trip_and_clip_bounds_are_refused():
    """A uint8 graph with zero points (tests/int8/ort_ops.py) writes back as int8 QDQ with the int8 zero points:
    the same ops and constants, the same simulator outputs."""
    from ort_ops import OP_CASES, as_int8, make_case, random_feeds

    from fcos3d.runtime.reference.simulator import Simulator

    for name in ("conv3x3_s2_relu", "add", "concat", "maxpool_ceil"):
        case = next(c for c in OP_CASES if c.name == name)
        model = make_case(case, "uint8", seed=3)
        graph = parse_qdq(model)
        again = parse_qdq(write_qdq(graph))
        assert len(again.ops) == len(graph.ops) == 1
        op, op2 = graph.ops[0], again.ops[0]
        fields = [
            f.name for f in dataclasses.fields(op) if f.name not in ("name", "input", "output", "inputs", "a", "b")
        ]
        assert all(_same(getattr(op, f), getattr(op2, f)) for f in fields), name
        feeds = random_feeds(model, seed=1)
        want = Simulator(graph).run(feeds)
        got = Simulator(again).run({i2.name: as_int8(feeds[i.name]) for i, i2 in zip(graph.inputs, again.inputs)})
        assert all(np.array_equal(a, b) for a, b in zip(want.values(), got.values())), name
    conv = make_case(next(c for c in OP_CASES if c.name == "conv_clip"), "int8", seed=3)
    with pytest.raises(ValueError, match="Clip bounds"):
        write_qdq(parse_qdq(conv))
