"""The reader's front end (fcos3d/int8/frontend.py, fold.py, qoperator.py): QOperator -> QDQ, input shapes, folded
shape subgraphs. Exact checks, and the QOperator ops against onnxruntime running them directly (<= 1 LSB, each
difference a rounding tie of ORT's own float value, as in test_ort_ops.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ort_ops import TIE_RTOL, as_int8, ort_run, random_feeds, with_float_outputs  # noqa: E402

from fcos3d.int8.fold import fold_shape_subgraphs  # noqa: E402
from fcos3d.int8.frontend import InputShapeError, parse_input_shape, prepare, set_input_shapes  # noqa: E402
from fcos3d.int8.ops import Conv, Reshape, ResizeNearest  # noqa: E402
from fcos3d.int8.qoperator import rewrite_qoperators  # noqa: E402
from fcos3d.int8.reader import UnsupportedGraphError, parse_qdq  # noqa: E402

MS = "com.microsoft"


def _model(nodes, inputs, outputs, inits, opsets=(("", 17),)) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "m", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 8
    return model


def _c(name, value):
    return numpy_helper.from_array(np.asarray(value), name)


# -- shape subgraphs ----------------------------------------------------------------------------------------------


def _shape_graph(batch) -> onnx.ModelProto:
    """int8 x (batch, 2, 4, 4) -> Conv -> Resize(sizes = Shape(x)[0:2] ++ (8, 8)) -> Reshape(Shape[0], -1)."""
    rng = np.random.default_rng(0)
    s, z = np.float32(0.05), np.int8(0)
    inits = [
        _c("s", s),
        _c("z", z),
        _c("w", rng.integers(-127, 128, (2, 2, 1, 1)).astype(np.int8)),
        _c("ws", np.full(2, 0.01, np.float32)),
        _c("wz", np.zeros(2, np.int8)),
        _c("so", np.float32(0.1)),
        _c("i0", np.array([0], np.int64)),
        _c("i2", np.array([2], np.int64)),
        _c("hw", np.array([8, 8], np.int64)),
        _c("minus1", np.array([-1], np.int64)),
        _c("zero", np.array(0, np.int64)),
        _c("ax0", np.array([0], np.int64)),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"]),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=0),
        helper.make_node("Conv", ["xf", "wf"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("QuantizeLinear", ["c", "so", "z"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "so", "z"], ["cf"]),
        helper.make_node("Shape", ["cf"], ["shape"]),
        helper.make_node("Slice", ["shape", "i0", "i2"], ["nc"]),
        helper.make_node("Concat", ["nc", "hw"], ["sizes"], axis=0),
        helper.make_node(
            "Resize", ["cf", "", "", "sizes"], ["up"], mode="nearest", coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        ),
        helper.make_node("QuantizeLinear", ["up", "so", "z"], ["upq"]),
        helper.make_node("DequantizeLinear", ["upq", "so", "z"], ["upf"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["upf", "flat_shape"], ["flat"]),
        helper.make_node("QuantizeLinear", ["flat", "so", "z"], ["y"]),
    ]  # fmt: skip
    x = helper.make_tensor_value_info("x", TensorProto.INT8, [batch, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.INT8, None)
    model = _model(nodes, [x], [y], inits)
    return model


def test_shape_subgraphs_fold_to_the_constants_the_parser_reads():
    model = _shape_graph(1)
    folded = fold_shape_subgraphs(model)
    assert not any(n.op_type in ("Shape", "Slice", "Gather", "Unsqueeze") for n in folded.graph.node)
    inits = {t.name: numpy_helper.to_array(t) for t in folded.graph.initializer}
    assert inits["sizes"].tolist() == [1, 2, 8, 8] and inits["flat_shape"].tolist() == [1, -1]
    g = parse_qdq(model)
    assert [type(op) for op in g.ops] == [Conv, ResizeNearest, Reshape]
    assert g.ops[1].sizes == (1, 2, 8, 8) and g.ops[2].param == (1, -1)
    assert model.graph.node[5].op_type == "Shape"  # the caller's model is not changed


def test_a_symbolic_batch_needs_the_input_shape():
    model = _shape_graph("N")
    with pytest.raises(UnsupportedGraphError) as err:
        parse_qdq(model)
    assert {op for _, op in err.value.nodes} == {"Shape"}  # one problem: the nodes after it are not its fault
    assert "--input-shape" in err.value.problems[0][2]
    g = parse_qdq(model, {"x": (1, 2, 4, 4)})
    assert g.inputs[0].shape == (1, 2, 4, 4) and g.ops[1].sizes == (1, 2, 8, 8)


def test_input_shape_errors_name_the_input_and_the_problem():
    model = _shape_graph("N")
    with pytest.raises(InputShapeError, match="no input 'image'; its inputs are \\['x'\\]"):
        prepare(model, {"image": (1, 2, 4, 4)})
    with pytest.raises(InputShapeError, match="rank 4"):
        set_input_shapes(model, {"x": (1, 2, 4)})
    with pytest.raises(InputShapeError, match="dim 1 of input 'x' is fixed to 2"):
        set_input_shapes(model, {"x": (1, 3, 4, 4)})
    assert parse_input_shape("input=1,3,32,32") == ("input", (1, 3, 32, 32))
    for bad in ("input", "input=", "=1,2", "input=1,x", "input=0,3"):
        with pytest.raises(ValueError, match="NAME=D0,D1"):
            parse_input_shape(bad)


# -- QOperator ----------------------------------------------------------------------------------------------------


def _qop_model(kind: str) -> onnx.ModelProto:
    """One QOperator node on uint8 graph inputs with zero points, as quantize_static writes them."""
    rng = np.random.default_rng(7)
    u8 = lambda name, v: _c(name, np.uint8(v))  # noqa: E731
    inits = [_c("sa", np.float32(0.03)), u8("za", 131), _c("sb", np.float32(0.02)), u8("zb", 120)]
    inits += [_c("sy", np.float32(0.05)), u8("zy", 128)]
    a = helper.make_tensor_value_info("a", TensorProto.UINT8, [1, 4, 6, 6])
    inputs, outs = [a], ["y"]
    if kind == "QLinearConv":
        inits += [
            _c("w", rng.integers(-127, 128, (8, 4, 3, 3)).astype(np.int8)),
            _c("ws", rng.uniform(0.002, 0.01, 8).astype(np.float32)),
            _c("wz", np.zeros(8, np.int8)),
            _c("b", rng.integers(-2000, 2000, 8).astype(np.int32)),
        ]
        node = helper.make_node(
            "QLinearConv", ["a", "sa", "za", "w", "ws", "wz", "sy", "zy", "b"], outs, name="qconv", pads=[1] * 4,
            kernel_shape=[3, 3],
        )  # fmt: skip
    elif kind == "QLinearAdd":
        inputs.append(helper.make_tensor_value_info("b", TensorProto.UINT8, [1, 4, 6, 6]))
        node = helper.make_node("QLinearAdd", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], outs, domain=MS)
    elif kind == "QLinearConcat":
        inputs.append(helper.make_tensor_value_info("b", TensorProto.UINT8, [1, 4, 6, 6]))
        node = helper.make_node(
            "QLinearConcat", ["sy", "zy", "a", "sa", "za", "b", "sb", "zb"], outs, axis=1, domain=MS
        )
    elif kind == "QLinearGlobalAveragePool":
        node = helper.make_node(
            "QLinearGlobalAveragePool", ["a", "sa", "za", "sy", "zy"], outs, channels_last=0, domain=MS
        )
    elif kind == "QLinearAveragePool":
        node = helper.make_node(
            "QLinearAveragePool", ["a", "sa", "za", "sy", "zy"], outs, kernel_shape=[3, 3], strides=[2, 2],
            pads=[1] * 4, domain=MS,
        )  # fmt: skip
    elif kind == "QGemm":
        a = helper.make_tensor_value_info("a", TensorProto.UINT8, [2, 16])
        inputs = [a]
        s_w = rng.uniform(0.002, 0.01, 8).astype(np.float32)
        inits += [
            _c("w", rng.integers(-127, 128, (8, 16)).astype(np.int8)),
            _c("ws", s_w),
            _c("wz", np.zeros(8, np.int8)),
            _c("b", rng.integers(-2000, 2000, 8).astype(np.int32)),
        ]
        node = helper.make_node("QGemm", ["a", "sa", "za", "w", "ws", "wz", "b", "sy", "zy"], outs, transB=1, domain=MS)
    else:  # QLinearMatMul of two activations
        a = helper.make_tensor_value_info("a", TensorProto.UINT8, [1, 6, 8])
        inputs = [a, helper.make_tensor_value_info("b", TensorProto.UINT8, [1, 8, 5])]
        node = helper.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], outs)
    y = helper.make_tensor_value_info("y", TensorProto.UINT8, None)
    model = _model([node], inputs, [y], inits, opsets=(("", 17), (MS, 1)))
    return onnx.shape_inference.infer_shapes(model)


QOPS = ("QLinearConv", "QLinearAdd", "QLinearConcat", "QLinearGlobalAveragePool", "QLinearAveragePool", "QGemm",
        "QLinearMatMul")  # fmt: skip


@pytest.mark.parametrize("kind", QOPS)
def test_qoperator_node_becomes_dq_op_q_and_matches_onnxruntime(kind):
    from fcos3d.runtime.reference.simulator import Simulator

    model = _qop_model(kind)
    rewritten = rewrite_qoperators(model)
    types = [n.op_type for n in rewritten.graph.node]
    assert types[-1] == "QuantizeLinear" and all(n.domain == "" for n in rewritten.graph.node)
    assert "DequantizeLinear" in types and not any(t.startswith("QLinear") or t == "QGemm" for t in types)
    sim = Simulator(model)
    assert sim.graph.inputs[0].onnx_dtype == "uint8" and sim.graph.outputs[0].onnx_dtype == "uint8"
    for seed in range(3):
        feeds = random_feeds(model, seed)
        want = as_int8(ort_run(model, feeds)["y"]).astype(np.int32)  # ORT's own QOperator kernel
        got = sim.run(feeds)["y"].astype(np.int32)
        floats = ort_run(with_float_outputs(rewritten), feeds)  # the same op's float value before its Q
        y_float = next(n.input[0] for n in rewritten.graph.node if n.op_type == "QuantizeLinear")
        v = floats[y_float].astype(np.float64) / 0.05
        diff = np.abs(want - got)
        near_tie = np.abs(v - np.floor(v) - 0.5) <= TIE_RTOL * np.maximum(1.0, np.abs(v)) + 2e-5
        assert diff.max() <= 1 and np.all(near_tie[diff == 1]), (kind, seed, int(diff.sum()))


def test_a_qoperator_bias_without_constant_scales_is_left_for_the_parser_to_report():
    model = _qop_model("QLinearConv")
    model.graph.initializer.remove(next(t for t in model.graph.initializer if t.name == "sa"))
    model.graph.input.append(helper.make_tensor_value_info("sa", TensorProto.FLOAT, []))
    assert rewrite_qoperators(model).graph.node[0].op_type == "QLinearConv"
