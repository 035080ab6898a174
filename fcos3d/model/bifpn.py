"""BiFPN neck with plain-sum fusion ("bifpn_sum", HAT's int8-friendly variant of EfficientDet's BiFPN).

Inputs: the backbone features; outputs: num_outs maps of out_channels at out_strides (8..128).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fcos3d.errors import Fcos3dError

from .layers import Add, ConvBNAct, ResizeNearest, SeparableConvBNAct

__all__ = ["BiFPN"]


class BiFPNLayer(nn.Module):
    """One bidirectional fusion over L levels (finest first), all with C channels.

    top-down:   td[L-1] = P[L-1];  td[i] = conv(P[i] + up(td[i+1]))                  i = L-2 .. 0
    bottom-up:  out[0] = td[0];    out[i] = conv(P[i] + td[i] + down(out[i-1]))       i = 1 .. L-2
                                   out[L-1] = conv(P[L-1] + down(out[L-2]))
    Sums are plain (no learned weights: EfficientDet's fast normalised fusion needs a division that
    int8 does badly); up = nearest x2, down = max pool 3x3 s2 (keeps the input scale in int8);
    conv = separable dw3x3 -> pw1x1 -> BN -> ReLU.
    """

    def __init__(
        self, num_levels: int, channels: int, activation: str = "relu", bn_eps: float = 1e-5, bn_momentum: float = 0.1
    ):
        super().__init__()
        L = num_levels
        conv = dict(act=activation, bn_eps=bn_eps, bn_momentum=bn_momentum)
        # td_convs[i] makes td[i] for i = 0 .. L-2; bu_convs[i - 1] makes out[i] for i = 1 .. L-1.
        self.td_convs = nn.ModuleList(SeparableConvBNAct(channels, channels, **conv) for _ in range(L - 1))
        self.bu_convs = nn.ModuleList(SeparableConvBNAct(channels, channels, **conv) for _ in range(L - 1))
        self.ups = nn.ModuleList(ResizeNearest() for _ in range(L - 1))
        self.downs = nn.ModuleList(nn.MaxPool2d(3, 2, 1) for _ in range(L - 1))
        self.td_adds = nn.ModuleList(Add() for _ in range(L - 1))
        self.bu_adds = nn.ModuleList(Add() for _ in range(L - 1))
        self.bu_td_adds = nn.ModuleList(Add() for _ in range(L - 2))  # the third input, middle levels only

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:  # L x (N, C, H_i, W_i)
        L = len(feats)
        td = [None] * L
        td[L - 1] = feats[L - 1]
        for i in range(L - 2, -1, -1):
            up = self.ups[i](td[i + 1], feats[i])  # (N, C, H_i, W_i)
            td[i] = self.td_convs[i](self.td_adds[i](feats[i], up))
        out = [None] * L
        out[0] = td[0]
        for i in range(1, L):
            down = self.downs[i - 1](out[i - 1])  # (N, C, ceil(H_{i-1} / 2), ...) == (N, C, H_i, W_i)
            s = self.bu_adds[i - 1](feats[i], down)
            if i < L - 1:
                s = self.bu_td_adds[i - 1](s, td[i])
            out[i] = self.bu_convs[i - 1](s)
        return out


class BiFPN(nn.Module):
    """BiFPN neck.

    Args:
        in_strides: strides of the backbone features passed in (all of them; only those in
            out_strides are used).
        out_strides: strides of the outputs, each twice the previous; those above the largest used
            input stride are made by downsampling (P6 = maxpool(conv1x1-BN(C_last)), P7 = maxpool(P6)).
        in_channels: channels of the backbone features, one per in_stride.
        out_channels: channels of every output.
        num_outs: number of outputs (== len(out_strides)).
        stack: number of BiFPN layers.
        fusion: "bifpn_sum" only (plain sums).
        activation: after each fusion's BN ("relu", as HAT).

    forward(feats: list of (N, in_channels[i], H/in_strides[i], W/in_strides[i])) ->
    list of num_outs tensors (N, out_channels, ceil(H / out_strides[j]), ceil(W / out_strides[j])),
    given a backbone that rounds odd sizes up (stride-2 convs with k // 2 padding do).
    """

    def __init__(
        self,
        in_strides: Sequence[int] = (2, 4, 8, 16, 32),
        out_strides: Sequence[int] = (8, 16, 32, 64, 128),
        in_channels: Sequence[int] = (16, 24, 40, 112, 320),
        out_channels: int = 64,
        num_outs: int = 5,
        stack: int = 3,
        fusion: str = "bifpn_sum",
        activation: str = "relu",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        in_strides, out_strides, in_channels = list(in_strides), list(out_strides), list(in_channels)
        if fusion != "bifpn_sum":
            raise Fcos3dError(f"BiFPN fusion={fusion!r} is not supported: use 'bifpn_sum' (plain sums, int8 friendly)")
        if len(in_strides) != len(in_channels):
            raise Fcos3dError(
                f"BiFPN in_strides {in_strides} and in_channels {in_channels} differ in length: "
                f"give one channel count per stride"
            )
        if num_outs != len(out_strides):
            raise Fcos3dError(f"BiFPN num_outs={num_outs} but out_strides has {len(out_strides)}: make them agree")
        if any(b != 2 * a for a, b in zip(out_strides, out_strides[1:])):
            raise Fcos3dError(f"BiFPN out_strides {out_strides} must double at each level")
        if stack < 1:
            raise Fcos3dError(f"BiFPN stack={stack}: use at least 1 layer")
        used = [s for s in out_strides if s in in_strides]
        if not used or used != out_strides[: len(used)]:
            raise Fcos3dError(f"BiFPN out_strides {out_strides} must start with strides of in_strides {in_strides}")
        self.in_strides, self.out_strides = in_strides, out_strides
        self.in_indices = [in_strides.index(s) for s in used]  # which backbone features are used
        self.num_extra = num_outs - len(used)
        bn = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)

        # Laterals: 1x1 conv + BN (no activation) to out_channels for each used input.
        self.laterals = nn.ModuleList(
            ConvBNAct(in_channels[i], out_channels, 1, act=None, **bn) for i in self.in_indices
        )
        # Extra levels: channel-matching 1x1 conv + BN on the last used input, then max pools.
        self.extra_conv = (
            ConvBNAct(in_channels[self.in_indices[-1]], out_channels, 1, act=None, **bn) if self.num_extra > 0 else None
        )
        self.extra_pools = nn.ModuleList(nn.MaxPool2d(3, 2, 1) for _ in range(self.num_extra))
        self.layers = nn.ModuleList(BiFPNLayer(num_outs, out_channels, activation, **bn) for _ in range(stack))
        self.out_channels = out_channels
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        used = [feats[i] for i in self.in_indices]
        p = [lat(x) for lat, x in zip(self.laterals, used)]  # (N, C, H/8, W/8), (N, C, H/16, ...), (N, C, H/32, ...)
        if self.num_extra:
            x = self.extra_conv(used[-1])  # (N, C, H/32, W/32)
            for pool in self.extra_pools:
                x = pool(x)  # (N, C, H/64, W/64), then (N, C, H/128, W/128)
                p.append(x)
        for layer in self.layers:
            p = layer(p)
        return p
