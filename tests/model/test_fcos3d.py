"""FCOS3D: the flat named output order, and a tiny model overfits one fixed synthetic batch."""

import numpy as np
import torch

from fcos3d.boxes.decode import HEAD_OUTPUTS
from fcos3d.model.bifpn import BiFPN
from fcos3d.model.efficientnet import EfficientNet
from fcos3d.model.fcos3d import FCOS3D
from fcos3d.model.head import FCOS3DHead

torch.set_num_threads(1)


def _tiny():
    head = FCOS3DHead(
        in_channels=32,
        feat_channels=32,
        stacked_convs=1,
        cls_branch=(32,),
        reg_branch=((32,),) * 4 + ((),),
        dir_branch=(32,),
        attr_branch=(32,),
        centerness_branch=(16,),
    )
    return FCOS3D(EfficientNet(), BiFPN(out_channels=32, stack=1), head)


def test_flat_output_order_320x192():
    model = FCOS3D(EfficientNet(), BiFPN(), FCOS3DHead()).eval()
    with torch.no_grad():
        flat = model(torch.zeros(1, 3, 192, 320))
    assert isinstance(flat, tuple) and len(flat) == 45 == len(model.output_names)
    assert model.output_names[:6] == [
        "cls_score_s8",
        "cls_score_s16",
        "cls_score_s32",
        "cls_score_s64",
        "cls_score_s128",
        "offset_s8",
    ]
    assert model.output_names[-1] == "centerness_s128"
    grouped = model.group(flat)
    assert list(grouped) == list(HEAD_OUTPUTS)
    sizes = [(24, 40), (12, 20), (6, 10), (3, 5), (2, 3)]
    channels = dict(zip(HEAD_OUTPUTS, (10, 2, 1, 3, 1, 2, 2, 9, 1)))
    for (
        name,
        t,
    ) in zip(model.output_names, flat):
        head, stride = name.rsplit("_s", 1)
        level = (8, 16, 32, 64, 128).index(int(stride))
        assert tuple(t.shape) == (1, channels[head], *sizes[level]), name
        assert t is grouped[head][level]


def test_overfits_one_batch(synthetic):
    torch.manual_seed(0)
    width, height = 192, 128
    K = synthetic.make_intrinsic(width, height, 120.0)
    anns = [synthetic.make_anns(np.random.default_rng(s), K, width, height, n=4) for s in range(2)]
    model = _tiny()
    img = torch.randn(2, 3, height, width)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    totals = []
    for _ in range(20):
        losses = model.loss(model(img), anns)
        total = sum(losses.values())
        assert all(torch.isfinite(v) for v in losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(total.item())
    assert totals[-1] < 0.6 * totals[0], totals
    assert min(totals[-5:]) < min(totals[:5])
