"""check_onnx: checker, opset, every unsupported node in one error, onnxsim keeps the Q/DQ pattern."""

from __future__ import annotations

import onnx
import pytest
from qdq_graphs import QDQGraphBuilder

from fcos3d.compiler.check import InvalidModelError, UnsupportedGraphError, check_onnx


def test_supported_graph_parses_and_keeps_integer_constants():
    b = QDQGraphBuilder(seed=1)
    x = b.input((1, 3, 6, 6))
    b.output(b.conv(x, 4))
    model = b.build()
    checked = check_onnx(model)
    assert checked.opset == 17 and len(checked.sha256) == 64
    assert [type(op).__name__ for op in checked.graph.ops] == ["Conv"]
    assert checked.graph.ops[0].weight.dtype.name == "int8"  # onnxsim did not fold DQ(weight) to float


def test_external_data_model_compiles_from_any_folder(tmp_path, monkeypatch):
    """Weights in a file beside the model (onnx external data) are found from another working folder."""
    b = QDQGraphBuilder(seed=2)
    x = b.input((1, 3, 6, 6))
    b.output(b.conv(x, 4))
    model = b.build()
    want = check_onnx(model).graph.ops[0]
    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save_model(model, folder / "m.onnx", save_as_external_data=True, location="m.weights", size_threshold=0)
    assert (folder / "m.weights").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    got = check_onnx(folder / "m.onnx").graph.ops[0]
    assert (got.weight == want.weight).all() and (got.bias == want.bias).all()


def test_every_unsupported_node_in_one_error():
    b = QDQGraphBuilder(seed=1)
    x = b.input((1, 2, 4, 4))
    y = b.conv(x, 2)
    t = b.node("Sin", [b.dq(y)], prefix="bad_sin")[0]
    s = b.node("Cos", [b.dq(y)], prefix="bad_cos")[0]
    for name in (t, s):
        b.outputs.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [1, 2, 4, 4]))
    with pytest.raises(UnsupportedGraphError) as info:
        check_onnx(b.build())
    names = {n for n, _ in info.value.nodes}
    assert any("bad_sin" in n for n in names) and any("bad_cos" in n for n in names)


def test_old_opset_is_refused():
    b = QDQGraphBuilder(seed=1, opset=12)
    x = b.input((1, 2, 4, 4))
    b.output(b.maxpool(x))
    with pytest.raises(InvalidModelError, match="opset 12"):
        check_onnx(b.build(check=False))


def _symbolic_model() -> onnx.ModelProto:
    b = QDQGraphBuilder(seed=2)
    x = b.input((1, 3, 6, 6))
    b.output(b.conv(x, 4))
    model = b.build()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    return model


def test_a_symbolic_input_dim_is_one_error_naming_the_input_and_the_fix():
    from fcos3d.compiler.check import InputShapeError

    with pytest.raises(InputShapeError) as info:
        check_onnx(_symbolic_model())
    assert "'image'" in str(info.value) and "--input-shape image=1,3,6,6" in str(info.value)
    checked = check_onnx(_symbolic_model(), input_shapes={"image": (1, 3, 6, 6)})
    assert checked.graph.inputs[0].shape == (1, 3, 6, 6)
