"""The exported int8 QDQ ONNX against the torch int model: bit-exact in the simulator, <= 1 LSB in onnxruntime."""

import json

import numpy as np
import onnx
import pytest
from quant_fixtures import INPUT_SHAPE

from fcos3d.runtime.reference.simulator import Simulator


def test_onnx_is_clean_and_described(onnx_path, int_model):
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    assert [o.name for o in model.graph.output] == int_model.output_names
    assert len(model.graph.output) == 45
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT8
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["input_layout"] == "NCHW YUV444 int8 = byte - 128, scale 1/128"
    assert json.loads(meta["strides"]) == [8, 16, 32, 64, 128]
    assert len(json.loads(meta["class_names"])) == 10
    scales = json.loads(meta["output_scales"])
    for name in int_model.output_names:
        np.testing.assert_array_equal(np.array(scales[name]), int_model.output_scales[name])
    ops = {n.op_type for n in model.graph.node}
    assert ops == {"QuantizeLinear", "DequantizeLinear", "Conv", "Relu", "Add", "Resize", "MaxPool"}
    # int8 weights with per-channel scales on axis 0, int32 biases.
    inits = {t.name: t for t in model.graph.initializer}
    weights = [
        n
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] in inits
        and inits[n.input[0]].data_type == onnx.TensorProto.INT8
    ]
    assert weights and all(len(inits[n.input[1]].dims) == 1 for n in weights)
    # onnxsim kept the per-consumer DQs: every DQ output feeds exactly one node.
    consumers = {}
    for n in model.graph.node:
        for t in n.input:
            consumers[t] = consumers.get(t, 0) + 1
    assert all(consumers.get(n.output[0]) == 1 for n in model.graph.node if n.op_type == "DequantizeLinear")
    # Head convs end without Q: each graph output is a Conv output.
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    assert all(producers[o.name] == "Conv" for o in model.graph.output)


def test_simulator_equals_int_model_exactly(onnx_path, int_model, int8_inputs):
    sim = Simulator(str(onnx_path))
    for name in int_model.output_names:
        np.testing.assert_array_equal(sim.output_scales[name], int_model.output_scales[name])
    for x in int8_inputs:
        got = sim.run(x.numpy(), keep_intermediates=True)
        ref = int_model.run(x, keep_intermediates=True)
        mismatches = {n: int((got[n] != ref[n].numpy()).sum()) for n in int_model.output_names}
        assert sum(mismatches.values()) == 0, {k: v for k, v in mismatches.items() if v}
        for n in int_model.output_names:
            assert got[n].dtype == np.int32 and ref[n].dtype.is_floating_point is False


def _ort(path, x):
    model = onnx.load(str(path))
    return _ort_model(model, {model.graph.input[0].name: x})


def _ort_model(model, feeds):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def _cut_graph(path, int_model) -> onnx.ModelProto:
    """The exported graph with every activation DQ reading a graph input of its own (``<tensor>__in``) and
    every Q / head output exposed: one onnxruntime run then computes each op from the int model's inputs."""
    model = onnx.load(str(path))
    g = model.graph
    inits = {t.name for t in g.initializer}
    activations = set(int_model.tensor_scales)
    new_inputs = {}
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.input[0] not in inits and n.input[0] in activations:
            t = n.input[0]
            n.input[0] = f"{t}__in"
            new_inputs[t] = onnx.helper.make_tensor_value_info(f"{t}__in", onnx.TensorProto.INT8, None)
    del g.input[:]
    g.input.extend(new_inputs.values())
    outs = [n.output[0] for n in g.node if n.op_type == "QuantizeLinear"]
    g.output.extend(onnx.helper.make_tensor_value_info(o, onnx.TensorProto.INT8, None) for o in outs)
    return model


def _raw_diff(ort_value, acc, scale):
    raw = np.rint(ort_value.astype(np.float64) / scale.reshape(1, -1, 1, 1)).astype(np.int64)
    return np.abs(raw - acc.astype(np.int64))


def test_onnxruntime_per_op_within_one_lsb(onnx_path, int_model, int8_inputs):
    """docs/int8.md section 5: each op in onnxruntime (float scales, ties to even) is within 1 LSB of the
    integer op, given the same int8 inputs; >= 99.9% of all elements equal (int8 tensors and int32 heads)."""
    cut = _cut_graph(onnx_path, int_model)
    total = equal = 0
    for x in int8_inputs:
        env = {k: v.numpy() for k, v in int_model.run(x, keep_intermediates=True).items()}
        feeds = {i.name: env[i.name[: -len("__in")]] for i in cut.graph.input}
        ort_out = _ort_model(cut, feeds)
        for name, value in ort_out.items():
            if name in int_model.output_scales:
                assert np.abs(env[name]).max() < 2**24, name  # float32 is exact for integers below 2**24
                diff = _raw_diff(value, env[name], int_model.output_scales[name])
            else:
                diff = np.abs(value.astype(np.int64) - env[name].astype(np.int64))
            assert diff.max() <= 1, (name, int(diff.max()))
            total += diff.size
            equal += int((diff == 0).sum())
    assert equal / total >= 0.999, equal / total


def test_onnxruntime_end_to_end(onnx_path, int_model, int8_inputs):
    """The whole graph in onnxruntime vs the int model on the raw int32 outputs.

    A rare 1-LSB flip of onnxruntime's float path (5 in 10**6 elements per op here) propagates through the
    ~60 layers below a head output and is multiplied by a weight there, so end to end the raw outputs are
    not bit for bit equal (measured: 100% and 99.0% equal for the two inputs; a trained model's deeper
    spread makes this fraction meaningless there, see the per-op test for the 1-LSB contract).
    """
    total = equal = 0
    for x in int8_inputs:
        ort_out = _ort(onnx_path, x.numpy())
        ref = int_model.run(x)
        for n in int_model.output_names:
            diff = _raw_diff(ort_out[n], ref[n].numpy(), int_model.output_scales[n])
            total += diff.size
            equal += int((diff == 0).sum())
    assert equal / total >= 0.98, equal / total


def test_export_from_qat_model_equals_int_model(qat_model, int_model, tmp_path):
    from fcos3d.quant.export import export_qdq_onnx

    model = export_qdq_onnx(qat_model, INPUT_SHAPE, tmp_path / "m.onnx", simplify=False)
    assert len(model.graph.node) > 0
    sim = Simulator(model)
    x = np.zeros(INPUT_SHAPE, dtype=np.int8)
    got = sim.run(x)
    import torch

    ref = int_model.run(torch.from_numpy(x))
    for n in int_model.output_names:
        np.testing.assert_array_equal(got[n], ref[n].numpy())


def test_export_onto_a_folder_fails_and_leaves_no_temp_file(int_model, tmp_path):
    from fcos3d.quant.export import export_qdq_onnx

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(IsADirectoryError) as e:
        export_qdq_onnx(int_model, INPUT_SHAPE, out, simplify=False)
    assert e.value.filename == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and list(out.iterdir()) == []
