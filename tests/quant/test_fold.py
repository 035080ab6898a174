"""BN folding: the folded conv equals conv + BN in eval mode, with each BN's own eps, per head level."""

import copy

import torch
from quant_fixtures import images
from torch import nn

from fcos3d.model.layers import ConvBNAct
from fcos3d.quant.convert import Float2Calibration
from fcos3d.quant.fold import fold_conv_bn
from fcos3d.quant.qat import QConv2d, set_quant_state


def test_fold_equals_conv_bn_with_its_eps():
    torch.manual_seed(0)
    for eps in (1e-3, 1e-5, 0.1):
        m = ConvBNAct(4, 6, 3, stride=2, act=None, bn_eps=eps).eval()
        m.bn.running_mean.uniform_(-1, 1)
        m.bn.running_var.uniform_(0.01, 2)  # small variances: eps matters
        m.bn.weight.data.uniform_(0.5, 2)
        m.bn.bias.data.uniform_(-1, 1)
        x = torch.randn(2, 4, 9, 11)
        w, b = fold_conv_bn(m.conv, m.bn)
        y = nn.functional.conv2d(x, w, b, 2, 1)
        torch.testing.assert_close(y, m(x), atol=1e-5, rtol=1e-5)


def test_converted_model_without_fake_quant_equals_float_model(float_model):
    q = set_quant_state(Float2Calibration()(copy.deepcopy(float_model)), observe=False, fake_quant=False).eval()
    x = images(2, seed=3)
    with torch.no_grad():
        ref, got = float_model(x), q(x)
    for a, b in zip(ref, got):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    # No BN, no plain conv left: every conv is a QConv2d.
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Conv2d)) for m in q.modules())


def test_tied_head_convs_fold_into_per_level_weights(float_model):
    levels = float_model.head.levels
    assert levels[1].cls_convs[0].pw.conv.weight is levels[0].cls_convs[0].pw.conv.weight  # tied in float
    q = Float2Calibration()(copy.deepcopy(float_model))
    qlevels = q.model.head.levels
    w0, w1 = qlevels[0].cls_convs[0].pw.weight, qlevels[1].cls_convs[0].pw.weight
    assert isinstance(qlevels[0].cls_convs[0].pw, QConv2d)
    assert w0 is not w1 and not torch.equal(w0, w1)  # each level folded its own BN
    # The unfolded depthwise convs (no BN) are equal copies, still separate parameters.
    assert torch.equal(qlevels[0].cls_convs[0].dw.weight, qlevels[1].cls_convs[0].dw.weight)
