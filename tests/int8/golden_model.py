"""The golden's model: an FCOS3D with a five-level MBConv backbone, a BiFPN neck and the FCOS3D head, all narrow.

The tests' tiny model (tests/quant) keeps the full EfficientNet-b0 backbone (a 3.8 MB ONNX); this one has the
same integer ops (conv, depthwise, residual and BiFPN adds, nearest resizes, max pools, int32 heads) in ~0.1 MB.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "quant"))

from quant_fixtures import calibrate  # noqa: E402

# Not a multiple of 128: levels of 6x10, 3x5, 2x3, 1x2 and 1x1, so the neck resizes by x2 and to odd sizes.
GOLDEN_SHAPE = (1, 3, 48, 80)  # (N, 3, H, W)


class TinyBackbone(nn.Module):
    """stem (stride 2) then one MBConv per stride 4..32 plus a residual MBConv: C2..C6 (N, c, H/2**k, W/2**k)."""

    def __init__(self, channels=(8, 8, 16, 16, 24)):
        super().__init__()
        from fcos3d.model.efficientnet import MBConv
        from fcos3d.model.layers import ConvBNAct

        self.stem = ConvBNAct(3, channels[0], 3, 2)
        blocks = []
        for cin, cout in zip(channels[:-1], channels[1:]):
            blocks.append(
                nn.Sequential(
                    MBConv(cin, cout, 3, 2, 2, False, "relu", "symmetric", 1e-3, 0.1),
                    MBConv(cout, cout, 3, 1, 2, False, "relu", "symmetric", 1e-3, 0.1),
                )
            )
        self.stages = nn.ModuleList(blocks)
        self.out_channels = list(channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # (N, 3, H, W)
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        return feats


def golden_float_model(seed: int = 0) -> nn.Module:
    """The float model, seeded, with random BN statistics (so folding matters) and trained-scale head weights."""
    from fcos3d.model.bifpn import BiFPN
    from fcos3d.model.fcos3d import FCOS3D
    from fcos3d.model.head import FCOS3DHead

    torch.manual_seed(seed)
    feat = 8
    model = FCOS3D(
        backbone=TinyBackbone(),
        neck=BiFPN(in_channels=(8, 8, 16, 16, 24), out_channels=8, stack=1),
        head=FCOS3DHead(
            in_channels=8,
            feat_channels=feat,
            cls_branch=(feat,),
            reg_branch=((feat,),) * 4 + ((),),
            dir_branch=(feat,),
            attr_branch=(feat,),
            centerness_branch=(feat,),
            depth_bias_init=3.0,
            size_bias_init=(0.5, 1.2, 0.5),
        ),
    )
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_((torch.rand(c, generator=g) - 0.5) * 0.4)
        for m in model.head.modules():
            if isinstance(m, nn.Conv2d) and m.groups == 1 and m.bias is not None:
                m.weight.normal_(0.0, 0.2, generator=g)
                m.bias.uniform_(-1.0, 1.0, generator=g)
    return model.eval()


def golden_int_model():
    """Calibrated as the quant tests (quant_fixtures.calibrate, seed 100), QAT-converted, traced at GOLDEN_SHAPE."""
    from fcos3d.quant.convert import Float2QAT
    from fcos3d.quant.intmodel import QAT2Quantize

    qat = Float2QAT()(calibrate(golden_float_model(), seed=100)).eval()
    return QAT2Quantize(GOLDEN_SHAPE)(qat)
