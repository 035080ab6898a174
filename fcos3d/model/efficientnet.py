"""EfficientNet backbone with the B0 block layout, returning the features at strides 2, 4, 8, 16, 32.

HAT's choice for int8 is the default: no squeeze-excitation, ReLU. EfficientNet-Lite0 is the same
layout with ReLU6 and no SE, so its ImageNet weights load fully (checkpoint.lite0_key_mapping).

Differences between the variants, for the record:
- B0: SE (ratio 0.25) in every block, Swish. Lite0: no SE, ReLU6, stem (32) and head (1280) never
  rescaled and the first/last stage repeats never rescaled (this only matters for lite1-4; at
  width = depth = 1.0 B0 and Lite0 have identical convs). We never use Swish (int8 unfriendly).
- Both were trained in TensorFlow with "SAME" padding; ``padding="tf_same"`` reproduces it exactly,
  ``padding="symmetric"`` (default) is PyTorch's k // 2 padding (one Conv op per layer, HAT's layout).
- BN eps 1e-3 as in TensorFlow: the pretrained running variances were computed with it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fcos3d.errors import Fcos3dError

from .layers import Add, ConvBNAct, make_activation

__all__ = ["EfficientNet", "B0_STAGES", "MODEL_SCALES"]

# One row per stage: (repeats, kernel, stride, expand ratio, in channels, out channels).
B0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# Stages whose outputs are returned: strides 2, 4, 8, 16, 32.
FEATURE_STAGES = (0, 1, 2, 4, 6)

# model_type -> (width coefficient, depth coefficient, lite). Lite models keep stem/head and the
# first/last stage repeats unscaled.
MODEL_SCALES = {
    "b0": (1.0, 1.0, False),
    "b1": (1.0, 1.1, False),
    "b2": (1.1, 1.2, False),
    "b3": (1.2, 1.4, False),
    "b4": (1.4, 1.8, False),
    "lite0": (1.0, 1.0, True),
    "lite1": (1.0, 1.1, True),
    "lite2": (1.1, 1.2, True),
    "lite3": (1.2, 1.4, True),
    "lite4": (1.4, 1.8, True),
}


def _round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by ``width`` and round to a multiple of 8, never more than 10 % down."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


class SqueezeExcite(nn.Module):
    """Channel gating: global average -> 1x1 reduce -> act -> 1x1 expand -> sigmoid -> scale.

    Only built with use_se_block=True; it is what makes B0 collapse under int8 (notes/int8.md).
    """

    def __init__(self, channels: int, squeezed: int, activation: str):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.act = make_activation(activation)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))


class MBConv(nn.Module):
    """Inverted residual: expand 1x1 -> depthwise kxk -> (SE) -> project 1x1 (linear), + input.

    The residual exists when stride is 1 and in == out channels; drop-connect (stochastic depth)
    drops the whole residual branch per sample during training only.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        stride: int,
        expand_ratio: int,
        use_se: bool,
        activation: str,
        padding: str,
        bn_eps: float,
        bn_momentum: float,
        drop_connect_rate: float = 0.0,
    ):
        super().__init__()
        mid = in_ch * expand_ratio
        bn = dict(bn_eps=bn_eps, bn_momentum=bn_momentum, padding=padding)
        self.expand = ConvBNAct(in_ch, mid, 1, act=activation, **bn) if expand_ratio != 1 else None
        self.dw = ConvBNAct(mid, mid, kernel_size, stride, groups=mid, act=activation, **bn)
        self.se = SqueezeExcite(mid, max(1, int(in_ch * 0.25)), activation) if use_se else None
        self.project = ConvBNAct(mid, out_ch, 1, act=None, **bn)
        self.use_residual = stride == 1 and in_ch == out_ch
        self.add = Add() if self.use_residual else None  # a module, so int8 gives the residual sum its own quantiser
        self.drop_connect_rate = drop_connect_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, Cin, H, W)
        y = self.expand(x) if self.expand is not None else x  # (N, Cin * e, H, W)
        y = self.dw(y)  # (N, Cin * e, H / s, W / s)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)  # (N, Cout, H / s, W / s)
        if not self.use_residual:
            return y
        if self.training and self.drop_connect_rate > 0.0:
            keep = 1.0 - self.drop_connect_rate
            mask = torch.rand((y.shape[0], 1, 1, 1), dtype=y.dtype, device=y.device) < keep
            y = y * mask / keep
        return self.add(y, x)


class EfficientNet(nn.Module):
    """EfficientNet feature extractor.

    Args:
        model_type: "b0".."b4" or "lite0".."lite4" (width/depth scaling; "lite" fixes stem and head).
        use_se_block: squeeze-excitation in every block (B0's own; off for int8, as HAT).
        activation: "relu" (HAT) or "relu6" (Lite0's own).
        include_top: add the 1x1 head conv (1280), global pool and classifier; forward then returns
            logits (N, num_classes) instead of the feature list.
        num_classes: classifier outputs when include_top.
        padding: "symmetric" (PyTorch k // 2) or "tf_same" (TensorFlow SAME, reproduces Lite0 exactly).
        drop_connect_rate: stochastic-depth rate of the last block (scaled linearly from 0 over blocks).
        bn_eps, bn_momentum: BatchNorm settings (eps 1e-3 as the pretrained weights).

    forward(img (N, 3, H, W)) -> [C2 (N, 16, H/2, W/2), C3 (N, 24, H/4), C4 (N, 40, H/8),
    C5 (N, 112, H/16), C6 (N, 320, H/32)] for b0 (channels in ``out_channels``, strides in
    ``out_strides``; odd sizes round up at each stride-2 layer).
    """

    def __init__(
        self,
        model_type: str = "b0",
        use_se_block: bool = False,
        activation: str = "relu",
        include_top: bool = False,
        num_classes: int = 1000,
        padding: str = "symmetric",
        drop_connect_rate: float = 0.0,
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        if model_type not in MODEL_SCALES:
            raise Fcos3dError(f"EfficientNet model_type={model_type!r} is unknown: use one of {sorted(MODEL_SCALES)}")
        width, depth, lite = MODEL_SCALES[model_type]
        bn = dict(bn_eps=bn_eps, bn_momentum=bn_momentum, padding=padding)
        stem_ch = 32 if lite else _round_channels(32, width)
        self.stem = ConvBNAct(3, stem_ch, 3, 2, act=activation, **bn)  # (N, 32, H/2, W/2)

        rows = []
        for i, (repeats, k, s, e, cin, cout) in enumerate(B0_STAGES):
            fixed = lite and i in (0, len(B0_STAGES) - 1)
            repeats = repeats if fixed else int(math.ceil(depth * repeats))
            cin = stem_ch if i == 0 else _round_channels(cin, width)
            rows.append((repeats, k, s, e, cin, _round_channels(cout, width)))
        num_blocks = sum(r[0] for r in rows)

        self.stages = nn.ModuleList()
        block_idx = 0
        for repeats, k, s, e, cin, cout in rows:
            blocks = []
            for j in range(repeats):
                blocks.append(
                    MBConv(
                        cin if j == 0 else cout,
                        cout,
                        k,
                        s if j == 0 else 1,
                        e,
                        use_se_block,
                        activation,
                        padding,
                        bn_eps,
                        bn_momentum,
                        drop_connect_rate * block_idx / num_blocks,
                    )
                )
                block_idx += 1
            self.stages.append(nn.Sequential(*blocks))

        self.out_channels = [rows[i][5] for i in FEATURE_STAGES]
        self.out_strides = [2, 4, 8, 16, 32]
        self.include_top = include_top
        if include_top:
            head_ch = 1280 if lite else _round_channels(1280, width)
            self.head = ConvBNAct(rows[-1][5], head_ch, 1, act=activation, **bn)
            self.fc = nn.Linear(head_ch, num_classes)
        self._init_weights()

    def _init_weights(self):
        # Kaiming (fan out) as the reference EfficientNet; only matters when training from scratch.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor):  # (N, 3, H, W)
        x = self.stem(x)  # (N, 32, H/2, W/2)
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in FEATURE_STAGES:
                feats.append(x)
        if not self.include_top:
            return feats
        x = self.head(x).mean(dim=(2, 3))  # (N, 1280)
        return self.fc(x)  # (N, num_classes); dropout left to the caller: this is a backbone
