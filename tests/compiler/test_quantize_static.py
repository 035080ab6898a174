"""A QDQ model made by onnxruntime's quantize_static (not FCOS3D, not our exporter) compiles bit-exactly.

The float CNN is built with onnx.helper (strided conv, depthwise conv, 1x1 conv, add skip, max pool, nearest
upsample, 1x1 conv); quantize_static makes symmetric int8 QDQ with per-channel weights and int32 biases
(scale s_in * s_w, which parse_qdq accepts as is).

With ActivationSymmetric, quantize_static keeps a Relu as its own ``Q(s) -> DQ(s) -> Relu -> Q(s)`` after the
Conv; parse_qdq folds that chain into the Conv as a fused Relu (the same integers), so both variants are tested.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fcos3d.runtime.execute import load_artifact
from fcos3d.runtime.reference.simulator import Simulator

SHAPE = (1, 3, 16, 16)


def _float_cnn(rng, relu: bool = False) -> onnx.ModelProto:
    def w(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    inits = [
        w("w1", (8, 3, 3, 3)),
        w("b1", (8,)),
        w("w2", (8, 1, 3, 3)),
        w("b2", (8,)),
        w("w3", (8, 8, 1, 1)),
        w("b3", (8,)),
        w("w4", (4, 8, 1, 1)),
        w("b4", (4,)),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "up"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1] * 4, strides=[2, 2]),
        *([helper.make_node("Relu", ["c1"], ["r1"])] if relu else []),
        helper.make_node("Conv", [r1 := "r1" if relu else "c1", "w2", "b2"], ["c2"], pads=[1] * 4, group=8),
        *([helper.make_node("Relu", ["c2"], ["r2"])] if relu else []),
        helper.make_node("Conv", ["r2" if relu else "c2", "w3", "b3"], ["c3"]),
        helper.make_node("Add", ["c3", r1], ["s"]),
        helper.make_node("MaxPool", ["s"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node(
            "Resize",
            ["p", "", "up"],
            ["u"],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        ),
        helper.make_node("Conv", ["u", "w4", "b4"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 4, 8, 8))],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _quantize(folder, relu: bool):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(0)
    float_path, qdq_path = folder / "float.onnx", folder / "qdq.onnx"
    onnx.save(_float_cnn(rng, relu), float_path)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": rng.uniform(-1, 1, SHAPE).astype(np.float32)} for _ in range(8)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(
        str(float_path),
        str(qdq_path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    return qdq_path


@pytest.fixture(scope="module", params=[False, True], ids=["no_relu", "relu"])
def qdq_model(request, tmp_path_factory):
    return _quantize(tmp_path_factory.mktemp("ort_qdq"), relu=request.param)


def test_quantize_static_model_compiles_bit_exact(qdq_model, tmp_path):
    from fcos3d.compiler.build import compile_onnx

    result = compile_onnx(qdq_model, "host", tmp_path / "art")
    sim = Simulator(qdq_model)
    art = load_artifact(tmp_path / "art")
    assert art.output_names == sim.output_names
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.integers(-128, 128, size=SHAPE, dtype=np.int8)
        want, got = sim.run(x), art.run(x)
        for name in want:
            assert got[name].dtype == want[name].dtype
            assert np.array_equal(got[name], want[name]), f"{name}: {np.count_nonzero(got[name] != want[name])} differ"
    assert result.meta["inputs"][0]["dtype"] == "int8"
