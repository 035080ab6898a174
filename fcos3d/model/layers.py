"""The few building blocks every part of the model is made of: conv-BN-act, separable conv, add, resize.

Each elementwise add is its own module (``Add``) so that the quantisation room can give every add
point its own observer / requantiser; nothing here is beyond plain conv, BN, ReLU(6), sum, nearest
upsample and max pool (docs: /work/shared/notes/int8.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fcos3d.errors import Fcos3dError

__all__ = [
    "ACTIVATIONS",
    "make_activation",
    "Conv2dSame",
    "ConvBNAct",
    "SeparableConvBNAct",
    "SeparableConv",
    "Add",
    "ResizeNearest",
]

ACTIVATIONS = ("relu", "relu6", None)
PADDINGS = ("symmetric", "tf_same")


def make_activation(name: str | None) -> nn.Module:
    """nn.ReLU for "relu", nn.ReLU6 for "relu6", nn.Identity for None."""
    if name == "relu":
        return nn.ReLU()
    if name == "relu6":
        return nn.ReLU6()
    if name is None:
        return nn.Identity()
    raise Fcos3dError(f"activation={name!r} is not supported: use one of {ACTIVATIONS}")


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding: output ceil(H / stride), extra pad row/col at bottom/right.

    Only needed to reproduce networks trained in TensorFlow (EfficientNet-Lite0's ImageNet weights):
    for an even input and stride 2 a 3x3 kernel pads (0, 1), not PyTorch's symmetric (1, 1), which
    shifts every stride-2 layer by one pixel. Computed from the input size, so any size works.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), reversed(self.dilation)
        ):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]  # F.pad order: (left, right, top, bottom)
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(
    in_ch: int,
    out_ch: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    bias: bool = False,
    padding: str = "symmetric",
) -> nn.Conv2d:
    if padding == "symmetric":
        return nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, groups=groups, bias=bias)
    if padding == "tf_same":
        return Conv2dSame(in_ch, out_ch, kernel_size, stride, 0, groups=groups, bias=bias)
    raise Fcos3dError(f"padding={padding!r} is not supported: use one of {PADDINGS}")


class ConvBNAct(nn.Module):
    """conv (no bias) -> BatchNorm -> activation (None: no activation). Keys: conv.weight, bn.*."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: str | None = "relu",
        padding: str = "symmetric",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        self.conv = _conv(in_ch, out_ch, kernel_size, stride, groups, bias=False, padding=padding)
        self.bn = nn.BatchNorm2d(out_ch, eps=bn_eps, momentum=bn_momentum)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SeparableConvBNAct(nn.Module):
    """Depthwise 3x3 (no bias, no BN) -> pointwise 1x1 -> BN -> activation: HAT's separable conv.

    Keys: dw.weight, pw.conv.weight, pw.bn.*. The depthwise output carries no BN of its own, so a
    BN folds into the pointwise conv only (one conv-BN-act pattern per separable conv).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        act: str | None = "relu",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        self.dw = nn.Conv2d(in_ch, in_ch, kernel_size, 1, kernel_size // 2, groups=in_ch, bias=False)
        self.pw = ConvBNAct(in_ch, out_ch, 1, act=act, bn_eps=bn_eps, bn_momentum=bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class SeparableConv(nn.Module):
    """Depthwise 3x3 -> pointwise 1x1 with bias, no BN, no activation: a raw prediction layer."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3):
        super().__init__()
        self.dw = nn.Conv2d(in_ch, in_ch, kernel_size, 1, kernel_size // 2, groups=in_ch, bias=False)
        self.pw = nn.Conv2d(in_ch, out_ch, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class Add(nn.Module):
    """a + b as a module, so each add point can get its own quantiser later."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class ResizeNearest(nn.Module):
    """Nearest-neighbour upsample of ``x`` to the spatial size of ``like``.

    Exactly x2 when the sizes allow (the usual case, 896x512 input); for odd sizes (a 320x192 input
    gives a 5x3 P6 under a 3x2 P7) the target size is used instead, which picks the same source
    pixels as a x2 upsample followed by a crop (floor(i * in / out) == floor(i / 2) when
    in == ceil(out / 2)).
    """

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        h, w = like.shape[-2:]
        if h == 2 * x.shape[-2] and w == 2 * x.shape[-1]:
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.interpolate(x, size=(int(h), int(w)), mode="nearest")
