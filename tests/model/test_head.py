"""FCOS3DHead: output shapes, conv weights shared across levels with a BN per level, HAT's layer set."""

import torch
from torch import nn

from fcos3d.model.head import FCOS3DHead

torch.set_num_threads(1)

SIZES = [(24, 40), (12, 20), (6, 10), (3, 5), (2, 3)]  # neck outputs of a 320x192 input


def _feats(n=2, c=64):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, c, h, w, generator=g) for h, w in SIZES]


def test_shapes_320x192():
    head = FCOS3DHead().eval()
    with torch.no_grad():
        out = head(_feats())
    channels = {
        "cls_score": 10,
        "offset": 2,
        "depth": 1,
        "size": 3,
        "rot": 1,
        "velo": 2,
        "dir_cls": 2,
        "attr": 9,
        "centerness": 1,
    }
    assert list(out) == list(channels)
    for name, c in channels.items():
        assert [tuple(t.shape) for t in out[name]] == [(2, c, h, w) for h, w in SIZES], name


def test_optional_outputs():
    head = FCOS3DHead(
        pred_attrs=False,
        pred_velo=False,
        use_direction_classifier=False,
        group_reg_dims=(2, 1, 3, 1),
        reg_branch=((256,),) * 4,
    )
    assert head.output_heads == ("cls_score", "offset", "depth", "size", "rot", "centerness")


def test_conv_weights_shared_bn_per_level():
    head = FCOS3DHead()
    l0 = dict(head.levels[0].named_modules())
    for level in head.levels[1:]:
        for name, m in level.named_modules():
            if isinstance(m, nn.Conv2d):
                assert m.weight is l0[name].weight, name
                assert (m.bias is None and l0[name].bias is None) or m.bias is l0[name].bias
            elif isinstance(m, nn.BatchNorm2d):
                assert m.weight is not l0[name].weight and m.running_mean is not l0[name].running_mean
    # unique parameters = level 0's convs + one set of BNs per level
    conv_params = sum(p.numel() for m in head.levels[0].modules() if isinstance(m, nn.Conv2d) for p in m.parameters())
    bn_params = sum(p.numel() for m in head.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    assert sum(p.numel() for p in head.parameters()) == conv_params + bn_params
    # training statistics are gathered per level
    head.train()
    head(_feats())
    bn = [lv.cls_convs[0].pw.bn.running_mean for lv in head.levels]
    assert not torch.allclose(bn[0], bn[1])
    # one optimiser step moves the shared weight for every level at once
    opt = torch.optim.SGD(head.parameters(), lr=1.0)
    head(_feats())["cls_score"][3].sum().backward()
    opt.step()
    assert head.levels[0].cls_out.pw.weight is head.levels[4].cls_out.pw.weight


def test_hat_layer_set():
    """Every conv is a depthwise 3x3 or a pointwise 1x1; no GroupNorm, no Scale, no DCN."""
    head = FCOS3DHead()
    for m in head.modules():
        assert not isinstance(m, nn.GroupNorm)
        if isinstance(m, nn.Conv2d):
            dw = m.groups == m.in_channels == m.out_channels and m.kernel_size == (3, 3)
            pw = m.kernel_size == (1, 1) and m.groups == 1
            assert dw or pw, m
    assert all(isinstance(p, nn.Parameter) and p.dim() in (1, 4) for p in head.parameters())


def test_class_prior_init():
    head = FCOS3DHead().eval()
    with torch.no_grad():
        out = head(_feats())
    p = torch.sigmoid(torch.cat([t.flatten() for t in out["cls_score"]]))
    assert abs(p.mean().item() - 0.01) < 0.003
