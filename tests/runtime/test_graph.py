"""Tests of fcos3d/int8/reader.py: which QDQ patterns parse into which integer ops, and the errors.

Exact checks only: the parsed constants are the stored integers and fixedpoint's (multiplier, shift).
"""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from qdq_graphs import QDQGraphBuilder

from fcos3d.int8 import fixedpoint as fx
from fcos3d.int8.ops import Add, Clip, Concat, Conv, MaxPool, ResizeNearest
from fcos3d.int8.reader import UnsupportedGraphError, parse_qdq


def _every_pattern_graph(float_input: bool = False) -> onnx.ModelProto:
    b = QDQGraphBuilder(seed=3)
    x = b.input((1, 3, 8, 12), float_input=float_input)
    y = b.conv(x, 8, 3, 2, relu=True)  # (1, 8, 4, 6)
    d = b.conv(y, 8, 3, groups=8, bias=False)
    a = b.add(y, d, relu=True)
    u = b.resize(a, 2)  # (1, 8, 8, 12)
    m = b.maxpool(u, 3, 2, 1)  # (1, 8, 4, 6)
    c = b.concat([m, y], out_scale=0.05)
    b.output(c)
    b.conv(c, 5, 1, pad=0, int32_output=True)
    return b.build()


def test_every_pattern_parses_to_its_op():
    g = parse_qdq(_every_pattern_graph())
    assert [type(op) for op in g.ops] == [Conv, Conv, Add, ResizeNearest, MaxPool, Concat, Conv]
    conv, dw, add, up, pool, cat, head = g.ops
    assert conv.strides == (2, 2) and conv.pads == (1, 1, 1, 1) and conv.groups == 1 and conv.relu
    assert dw.groups == 8 and dw.weight.shape == (8, 1, 3, 3) and not dw.relu
    assert np.array_equal(dw.bias, np.zeros(8, np.int32))  # no ONNX bias -> zeros
    assert add.relu and (add.a, add.b) == (conv.output, dw.output)
    assert add.rescale == fx.add_multipliers(add.scale_a, add.scale_b, add.output_scale)
    assert up.scales == (2, 2) and (up.coordinate_mode, up.nearest_mode) == ("asymmetric", "floor")
    assert pool.kernel == (3, 3) and pool.strides == (2, 2) and pool.pads == (1, 1, 1, 1)
    assert cat.inputs == (pool.output, conv.output) and cat.axis == 1
    assert all(r is not None for r in cat.rescales)  # both inputs differ from the 0.05 output scale
    assert head.int32_output and head.multiplier is None
    # Requantisation constants come from fixedpoint, computed from the stored float32 scales.
    m, s = fx.conv_multipliers(conv.input_scale, conv.weight_scale, conv.output_scale)
    assert np.array_equal(conv.multiplier, m) and np.array_equal(conv.shift, s)
    assert conv.input_scale == np.float32(1 / 128)
    # Outputs: the int8 concat, per-tensor scale; the int32 head, per-channel s_in * s_w.
    out8, out32 = g.outputs
    assert out8.dtype == "int8" and out8.scales.shape == (1,) and out8.scales[0] == np.float32(0.05)
    assert out32.dtype == "int32" and np.array_equal(out32.scales, np.float64(head.input_scale) * head.weight_scale)


def test_weights_stored_in_the_onnx_are_the_ops_constants():
    model = _every_pattern_graph()
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    conv = parse_qdq(model).ops[0]
    node = next(n for n in model.graph.node if n.op_type == "Conv")
    dq_w = next(n for n in model.graph.node if n.output[0] == node.input[1])
    dq_b = next(n for n in model.graph.node if n.output[0] == node.input[2])
    assert np.array_equal(conv.weight, inits[dq_w.input[0]]) and conv.weight.dtype == np.int8
    assert np.array_equal(conv.bias, inits[dq_b.input[0]]) and conv.bias.dtype == np.int32
    assert np.array_equal(conv.weight_scale, inits[dq_w.input[1]].astype(np.float64))


def test_float_input_is_quantised_by_its_q():
    g = parse_qdq(_every_pattern_graph(float_input=True))
    (inp,) = g.inputs
    assert inp.float_input and inp.name == "image" and inp.scale == np.float32(1 / 128)
    assert g.ops[0].input == inp.tensor and inp.shape == (1, 3, 8, 12)


def test_constant_nodes_and_dq_graph_outputs():
    """Weights given by Constant nodes parse like initializers; a DQ of an int8 tensor can be an output."""
    b = QDQGraphBuilder(seed=1)
    x = b.input((1, 2, 5, 5))
    y = b.conv(x, 4, 3)
    name = b.output(y, dequantized=True)
    model = b.build()
    graph = model.graph
    w_init = next(t for t in graph.initializer if t.name.startswith("w_"))
    graph.node.insert(0, helper.make_node("Constant", [], [w_init.name], value=w_init))
    graph.initializer.remove(w_init)
    onnx.checker.check_model(model)
    g = parse_qdq(model)
    assert len(g.ops) == 1 and g.ops[0].weight.shape == (4, 2, 3, 3)
    (out,) = g.outputs
    assert out.name == name and out.tensor == y.name and out.dtype == "int8" and out.scales[0] == y.scale


def test_passthrough_int8_ops():
    b = QDQGraphBuilder(seed=2)
    x = b.input((1, 2, 4, 4))
    y = b.conv(x, 2, 1, pad=0)
    u = b.resize(y, 2, passthrough=True)
    m = b.maxpool(u, 2, 2, 0, passthrough=True)
    c = b.concat([m, y], passthrough=True)
    b.output(c)
    g = parse_qdq(b.build())
    assert [type(op) for op in g.ops] == [Conv, ResizeNearest, MaxPool, Concat]
    assert g.ops[-1].rescales == (None, None)
    assert g.tensor_scales[c.name] == y.scale


def _with_node(b: QDQGraphBuilder, op_type: str, x, **attrs):
    """DQ(x) -> op_type -> Q(x.scale): a QDQ-wrapped node of any type."""
    from qdq_graphs import QTensor

    y = b.node(op_type, [b.dq(x)], **attrs)[0]
    q = b.q(y, x.scale, x.shape)
    return QTensor(q.name, q.scale, x.shape)


def test_unsupported_ops_are_all_listed_once():
    """One pass: the unsupported op, and a supported op downstream of it with its own (attribute) problem; the
    supported ops downstream that are fine in themselves are not reported."""
    b = QDQGraphBuilder(seed=0)
    x = b.input((1, 4, 4, 4))
    y = b.conv(x, 4, 3)
    s = _with_node(b, "Sin", y)
    z = b.conv(s, 4, 1, pad=0)  # downstream of the Sin: fine in itself, not reported
    flat = b.node("Flatten", [b.dq(z)], axis=1)[0]  # fine in itself
    wname = b.const("gemm_w", np.ones((64, 3), np.float32))
    gemm = b.node("Gemm", [flat, wname])[0]  # its own problem: a float weight (no DQ of int8)
    b.outputs.append(helper.make_tensor_value_info(gemm, TensorProto.FLOAT, [1, 3]))
    with pytest.raises(UnsupportedGraphError) as err:
        parse_qdq(b.build())
    ops = sorted(op for _, op in err.value.nodes)
    assert ops == ["Gemm", "Sin"]
    for name, op in err.value.nodes:
        assert name in str(err.value) and op in str(err.value)
    assert "weight" in dict((op, why) for _, op, why in err.value.problems)["Gemm"]


def test_standalone_relu_is_a_clip_and_requant_without_op_is_reported():
    b = QDQGraphBuilder(seed=0)
    x = b.input((1, 2, 4, 4))
    b.output(_with_node(b, "Relu", x))  # DQ -> Relu -> Q with no Conv/Add: a Clip op (lo = z = 0)
    b.output(b.q(b.dq(x), 0.5, x.shape))  # DQ -> Q: a scale change that is no supported op
    with pytest.raises(UnsupportedGraphError) as err:
        parse_qdq(b.build())
    assert sorted(op for _, op in err.value.nodes) == ["QuantizeLinear"]
    b = QDQGraphBuilder(seed=0)
    x = b.input((1, 2, 4, 4))
    b.output(_with_node(b, "Relu", x))
    (clip,) = parse_qdq(b.build()).ops
    assert isinstance(clip, Clip) and (clip.lo, clip.hi, clip.rescale) == (0, 127, None)


def _conv_model(**change) -> onnx.ModelProto:
    """A one-conv graph, then ``change`` applied: node attributes or initializer replacements."""
    b = QDQGraphBuilder(seed=5)
    x = b.input((1, 2, 6, 6))
    b.output(b.conv(x, 4, 3))
    model = b.build()
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    for key, value in change.items():
        if key.startswith("init:"):
            prefix = key[5:]
            t = next(t for t in model.graph.initializer if re.fullmatch(rf"{prefix}_\d+", t.name))
            t.CopyFrom(numpy_helper.from_array(value, t.name))
        else:
            for attr in [a for a in conv.attribute if a.name == key]:
                conv.attribute.remove(attr)
            conv.attribute.append(helper.make_attribute(key, value))
    return model


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strides": [0, 1]}, "strides"),
        ({"init:b_scale": np.full(4, 0.3, np.float32)}, "bias scale"),
        ({"init:w_zp": np.ones(4, np.int8)}, "zero point"),
        ({"init:b": np.full(4, 2**31 - 1, np.int32)}, "accumulator bound"),
        ({"init:w": np.zeros((4, 2, 3, 3), np.int16)}, "int8"),
    ],
)
def test_bad_conv_is_reported_with_reason(change, message):
    with pytest.raises(UnsupportedGraphError) as err:
        parse_qdq(_conv_model(**change))
    assert [op for _, op in err.value.nodes] == ["Conv"]
    assert message in err.value.problems[0][2]


def test_uint8_quantize_is_an_int8_tensor_with_zero_point_minus_128():
    """A Q without a zero point outputs uint8 with zero point 0: the int8 tensor q - 128, zero point -128."""
    model = _conv_model()
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    del q.input[2]  # no zero point: QuantizeLinear outputs uint8
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.UINT8
    g = parse_qdq(model)
    (conv,) = g.ops
    assert conv.output_zero_point == -128 and conv.output_bounds == (-128, 127)
    (out,) = g.outputs
    assert (out.zero_point, out.onnx_dtype, out.dtype) == (-128, "uint8", "int8")


def test_int16_zero_point_is_reported():
    model = _conv_model()
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    zp = next(t for t in model.graph.initializer if t.name == q.input[2])
    zp.CopyFrom(numpy_helper.from_array(np.array(0, np.int16), zp.name))
    with pytest.raises(UnsupportedGraphError, match="int8 or uint8"):
        parse_qdq(model)


def test_scale_changing_resize_and_pool_options_are_reported():
    b = QDQGraphBuilder(seed=0)
    x = b.input((1, 2, 4, 4))
    up = b.node(
        "Resize",
        [b.dq(x), "", b.const("scales", np.array([1, 1, 2, 2], np.float32))],
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )[0]
    b.output(b.q(up, 0.25, (1, 2, 8, 8)))  # another scale than the input's 1/128
    lin = b.node("Resize", [b.dq(x), "", b.const("scales", np.array([1, 1, 2, 2], np.float32))], mode="linear")[0]
    b.output(b.q(lin, x.scale, (1, 2, 8, 8)))
    pool = b.node("MaxPool", [b.dq(x)], kernel_shape=[2, 2], strides=[2, 2], storage_order=1)[0]
    b.output(b.q(pool, x.scale, (1, 2, 2, 2)))
    with pytest.raises(UnsupportedGraphError) as err:
        parse_qdq(b.build())
    reasons = [why for _, _, why in err.value.problems]
    # the linear Resize is supported since docs/int8.md 8.8 (its own requantisation): no problem of its own
    assert [op for _, op in err.value.nodes] == ["Resize", "MaxPool"]
    assert "keep the scale" in reasons[0] and "storage_order" in reasons[1]


def test_a_graph_input_with_two_zero_points_is_one_problem_naming_them():
    b = QDQGraphBuilder(seed=1)
    x = b.input((1, 2, 4, 4))
    b.output(b.conv(x, 2))
    b.output(b.conv(x, 2))
    model = b.build()
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == "image"][1]
    zp = next(t for t in model.graph.initializer if t.name == dq.input[2])
    zp.CopyFrom(numpy_helper.from_array(np.array(5, np.int8), zp.name))
    with pytest.raises(UnsupportedGraphError) as err:
        parse_qdq(model)
    assert err.value.nodes == [("image", "graph input")]
    assert "zero point 0" in str(err.value) and "zero point 5" in str(err.value)


def test_a_uint8_graph_input_is_its_int8_form():
    """A uint8 input with zero point 131 is the int8 tensor u8 - 128 with zero point 3; a uint8 array given to
    the simulator is converted, so both forms give the same outputs."""
    from fcos3d.runtime.reference.simulator import Simulator

    b = QDQGraphBuilder(seed=1)
    x = b.input((1, 2, 4, 4))
    b.output(b.conv(x, 2))
    model = b.build()
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.UINT8
    dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == "image")
    zp = next(t for t in model.graph.initializer if t.name == dq.input[2])
    zp.CopyFrom(numpy_helper.from_array(np.array(131, np.uint8), zp.name))
    sim = Simulator(model)
    (inp,) = sim.graph.inputs
    assert (inp.zero_point, inp.onnx_dtype) == (3, "uint8") and sim.graph.ops[0].input_zero_point == 3
    u8 = np.random.default_rng(0).integers(0, 256, (1, 2, 4, 4)).astype(np.uint8)
    via_u8, via_i8 = sim.run(u8), sim.run((u8.astype(np.int16) - 128).astype(np.int8))
    assert all(np.array_equal(via_u8[k], via_i8[k]) for k in via_u8)
