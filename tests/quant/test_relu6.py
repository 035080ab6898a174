"""A ReLU6 backbone (Lite0's own activation) through calibration, QAT, the int model and the exported ONNX.

ReLU6 has no op of its own in the integer graph: it is ReLU plus the int8 saturation at 127, which is only
ReLU6 while the layer's output range is at most 6 (docs/int8.md). Min-max calibration of a bounded activation
gives exactly that range where a layer saturates, so the clamp at 127 and ReLU6's clamp at 6 coincide.
"""

import copy

import numpy as np
import pytest
import torch
from quant_fixtures import INPUT_SHAPE, calibrate, images, tiny_float_model

from fcos3d.errors import Fcos3dError
from fcos3d.int8.ops import Conv as IntConv
from fcos3d.quant.convert import Float2QAT
from fcos3d.quant.intmodel import QAT2Quantize
from fcos3d.quant.qat import QConv2d


@pytest.fixture(scope="module")
def relu6_qat():
    float_model = tiny_float_model(seed=3, activation="relu6")
    with torch.no_grad():  # the random BN leaves activations small: make the stem and first block reach 6
        float_model.backbone.stem.bn.weight.mul_(8.0)
        float_model.backbone.stages[0][0].dw.bn.weight.mul_(8.0)
    return Float2QAT()(calibrate(float_model, seed=200)).eval()


@pytest.fixture(scope="module")
def relu6_int(relu6_qat):
    return QAT2Quantize(INPUT_SHAPE)(relu6_qat)


def test_relu6_layers_saturate_at_six_and_match_the_int_model(relu6_qat, relu6_int):
    from fcos3d.quant.report import qat_int_lsb

    convs = [m for m in relu6_qat.modules() if isinstance(m, QConv2d) and m.act == "relu6"]
    assert len(convs) > 20  # stem, expand and depthwise convs of every block
    ranges = torch.stack([m.act_observer.scale() * 127 for m in convs]).flatten()
    assert float(ranges.max()) <= 6.0 * (1 + 2**-20)
    saturated = [m for m in convs if abs(float(m.act_observer.scale()) * 127 - 6.0) < 1e-5]
    assert saturated, "no ReLU6 layer reached 6: the test would not see the clamp"

    int_model = relu6_int
    rows = qat_int_lsb(relu6_qat, int_model, [images(1, seed=41), images(1, seed=42)])
    int8 = [r for r in rows if r["kind"] != "head"]
    assert sum(r["differ"] for r in int8) == 0, [r for r in int8 if r["differ"]][:3]
    # In the int model a saturated layer's ReLU6 is the clamp at 127: some of its outputs sit there.
    names = {m.qname for m in saturated}
    ops = [op for op in int_model.ops if isinstance(op, IntConv) and op.name in names]
    assert ops and all(op.relu for op in ops)
    outs = int_model.run(torch.round(images(1, seed=43) * 128).to(torch.int8), keep_intermediates=True)
    assert any(int((outs[op.output] == 127).sum()) > 0 for op in ops)


def test_relu6_exports_and_simulates_exactly(relu6_int, tmp_path):
    from fcos3d.quant.export import export_qdq_onnx
    from fcos3d.runtime.reference.simulator import Simulator

    int_model = relu6_int
    path = tmp_path / "relu6.onnx"
    export_qdq_onnx(int_model, INPUT_SHAPE, path)
    x = torch.round(images(1, seed=44) * 128).to(torch.int8)
    got = Simulator(str(path)).run(x.numpy())
    ref = int_model.run(x)
    for n in int_model.output_names:
        np.testing.assert_array_equal(got[n], ref[n].numpy())


def test_relu6_with_a_range_beyond_six_is_refused(relu6_qat):
    q = copy.deepcopy(relu6_qat)
    stem = q.model.backbone.stem
    with torch.no_grad():
        stem.act_observer.max_val.fill_(10.0)
        stem.act_observer.min_val.fill_(0.0)
    with pytest.raises(Fcos3dError, match="ReLU6 is exported as ReLU"):
        QAT2Quantize(INPUT_SHAPE)(q)
