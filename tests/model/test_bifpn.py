"""BiFPN: output shapes, plain-sum wiring (every output sees every input), int8-friendly layers only."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fcos3d.errors import Fcos3dError
from fcos3d.model.bifpn import BiFPN
from fcos3d.model.layers import Add, ResizeNearest

torch.set_num_threads(1)

IN_CHANNELS = (16, 24, 40, 112, 320)


def _feats(h, w, n=2, requires_grad=False):
    g = torch.Generator().manual_seed(0)
    return [
        torch.randn(n, c, -(-h // s), -(-w // s), generator=g, requires_grad=requires_grad)
        for c, s in zip(IN_CHANNELS, (2, 4, 8, 16, 32))
    ]


def test_shapes_320x192():
    neck = BiFPN().eval()
    with torch.no_grad():
        outs = neck(_feats(192, 320))
    assert [tuple(o.shape) for o in outs] == [
        (2, 64, 24, 40),
        (2, 64, 12, 20),
        (2, 64, 6, 10),
        (2, 64, 3, 5),
        (2, 64, 2, 3),
    ]


def test_shapes_896x512():
    neck = BiFPN(stack=1).eval()
    with torch.no_grad():
        outs = neck(_feats(512, 896, n=1))
    assert [tuple(o.shape[-2:]) for o in outs] == [(64, 112), (32, 56), (16, 28), (8, 14), (4, 7)]


def test_every_output_depends_on_every_used_input():
    """Top-down then bottom-up: P3's input reaches P7 and P7's reaches P3 within one layer."""
    neck = BiFPN(stack=1).eval()
    feats = _feats(192, 320, n=1, requires_grad=True)
    outs = neck(feats)
    for o in outs:
        grads = torch.autograd.grad(o.sum(), [feats[2], feats[4]], retain_graph=True)
        assert all(g.abs().sum() > 0 for g in grads)
    # the stride 2 and 4 backbone features are not used
    assert torch.autograd.grad(outs[0].sum(), feats[0], allow_unused=True)[0] is None


def test_only_quantisation_friendly_layers():
    neck = BiFPN()
    allowed = (
        BiFPN,
        nn.ModuleList,
        nn.Sequential,
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.ReLU,
        nn.Identity,
        nn.MaxPool2d,
        Add,
        ResizeNearest,
    )
    names = {"ConvBNAct", "SeparableConvBNAct", "BiFPNLayer"}
    for m in neck.modules():
        assert isinstance(m, allowed) or type(m).__name__ in names, type(m)
    # no learned fusion weights: every parameter belongs to a conv or a BN
    owners = {n.rsplit(".", 1)[0] for n, _ in neck.named_parameters()}
    mods = dict(neck.named_modules())
    assert all(isinstance(mods[o], (nn.Conv2d, nn.BatchNorm2d)) for o in owners)


def test_resize_nearest_is_x2_then_crop():
    up = ResizeNearest()
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    like = torch.zeros(1, 1, 3, 5)
    expect = F.interpolate(x, scale_factor=2.0, mode="nearest")[..., :3, :5]
    assert torch.equal(up(x, like), expect)


def test_bad_arguments():
    with pytest.raises(Fcos3dError, match="bifpn_sum"):
        BiFPN(fusion="bifpn_weighted")
    with pytest.raises(Fcos3dError, match="num_outs"):
        BiFPN(num_outs=4)
