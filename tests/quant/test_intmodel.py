"""The integer model's constants: int8 weights in [-127, 127], int32 biases that fit, widened scales where needed."""

import copy

import numpy as np
import torch
from quant_fixtures import INPUT_SHAPE, images

from fcos3d.int8.ops import Conv as IntConv
from fcos3d.quant.intmodel import QAT2Quantize
from fcos3d.runtime.reference.simulator import Simulator


def test_constants_are_in_range(int_model):
    convs = [op for op in int_model.ops if isinstance(op, IntConv)]
    assert convs and all(op.weight.dtype == np.int8 and int(abs(op.weight).max()) <= 127 for op in convs)
    assert all(op.bias.dtype == np.int32 for op in convs)
    heads = [op for op in convs if op.output_scale is None]
    assert len(heads) == 45 and all(not op.relu for op in heads)
    assert int_model.widened_weight_scales == []


def test_tiny_weights_with_a_large_bias_widen_that_channel(qat_model, tmp_path):
    """A prediction conv whose weights are ~0 but whose bias is large (an untrained class prior) would need
    an int32 bias beyond 2**31 at s_in * s_w: the quantiser widens s_w there and stays exact."""
    from fcos3d.quant.export import export_qdq_onnx

    q = copy.deepcopy(qat_model)
    pw = q.model.head.levels[0].cls_out.pw
    with torch.no_grad():
        pw.weight.mul_(1e-7)
        pw.bias.fill_(-4.6)
        pw.weight_observer.initialized.fill_(False)  # re-observe the new weights
    int_model = QAT2Quantize(INPUT_SHAPE)(q)
    assert int_model.widened_weight_scales == [pw.qname]
    op = next(o for o in int_model.ops if o.name == pw.qname)
    assert int(abs(op.bias).max()) <= 2**30
    path = tmp_path / "wide.onnx"
    export_qdq_onnx(int_model, INPUT_SHAPE, path, simplify=False)
    x = torch.round(images(1, seed=5) * 128).to(torch.int8)
    got = Simulator(str(path)).run(x.numpy())
    ref = int_model.run(x)
    for n in int_model.output_names:
        np.testing.assert_array_equal(got[n], ref[n].numpy())
    # The widened channel still carries the bias: the float output is ~ -4.6 everywhere.
    value = ref["cls_score_s8"].double() * torch.from_numpy(int_model.output_scales["cls_score_s8"]).reshape(
        1, -1, 1, 1
    )
    torch.testing.assert_close(value, torch.full_like(value, -4.6), atol=1e-3, rtol=0)
