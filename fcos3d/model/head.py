"""FCOS3D head, the HAT way: separable convs shared across levels, a BatchNorm of its own per level.

No GroupNorm, no DCN, no per-level Scale: every conv is dw3x3 -> pw1x1 (-> BN -> ReLU), and the
outputs are the raw prediction convs (int32 on the board; exp/sigmoid/decode run on the host).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from fcos3d.boxes.decode import HEAD_OUTPUTS
from fcos3d.errors import Fcos3dError

from .layers import SeparableConv, SeparableConvBNAct

__all__ = ["FCOS3DHead"]

REG_NAMES = ("offset", "depth", "size", "rot", "velo")


def _branch(in_ch: int, channels: Sequence[int], bn: dict) -> tuple[nn.Sequential, int]:
    """Stacked separable conv-BN-ReLU layers of the given widths; returns (module, out channels)."""
    layers = []
    for ch in channels:
        layers.append(SeparableConvBNAct(in_ch, ch, **bn))
        in_ch = ch
    return nn.Sequential(*layers), in_ch


class HeadLevel(nn.Module):
    """The whole head for one pyramid level; levels > 0 share every conv Parameter with level 0."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int,
        stacked_convs: int,
        group_reg_dims: Sequence[int],
        cls_branch: Sequence[int],
        reg_branch: Sequence[Sequence[int]],
        dir_branch: Sequence[int] | None,
        attr_branch: Sequence[int] | None,
        num_attrs: int,
        centerness_branch: Sequence[int],
        num_dir_bins: int,
        bn: dict,
        dir_feature: str = "reg",
    ):
        super().__init__()
        self.dir_feature = dir_feature
        self.cls_convs, _ = _branch(in_channels, [feat_channels] * stacked_convs, bn)
        self.reg_convs, _ = _branch(in_channels, [feat_channels] * stacked_convs, bn)
        self.cls_prev, ch = _branch(feat_channels, cls_branch, bn)
        self.cls_out = SeparableConv(ch, num_classes)
        self.reg_prevs = nn.ModuleList()
        self.reg_outs = nn.ModuleList()
        for dims, widths in zip(group_reg_dims, reg_branch):
            prev, ch = _branch(feat_channels, widths, bn)
            self.reg_prevs.append(prev)
            self.reg_outs.append(SeparableConv(ch, dims))
        self.dir_prev = self.dir_out = None
        if dir_branch is not None:
            self.dir_prev, ch = _branch(feat_channels, dir_branch, bn)
            self.dir_out = SeparableConv(ch, num_dir_bins)
        self.attr_prev = self.attr_out = None
        if attr_branch is not None:
            self.attr_prev, ch = _branch(feat_channels, attr_branch, bn)
            self.attr_out = SeparableConv(ch, num_attrs)
        self.ctr_prev, ch = _branch(feat_channels, centerness_branch, bn)
        self.ctr_out = SeparableConv(ch, 1)

    def forward(self, x: torch.Tensor, reg_names: Sequence[str]) -> dict[str, torch.Tensor]:  # (N, Cin, H, W)
        cls_feat = self.cls_convs(x)  # (N, F, H, W)
        reg_feat = self.reg_convs(x)  # (N, F, H, W)
        out = {"cls_score": self.cls_out(self.cls_prev(cls_feat))}  # (N, num_classes, H, W)
        for name, prev, conv in zip(reg_names, self.reg_prevs, self.reg_outs):
            out[name] = conv(prev(reg_feat))  # (N, dims, H, W)
        if self.dir_out is not None:
            feat = cls_feat if self.dir_feature == "cls" else reg_feat
            out["dir_cls"] = self.dir_out(self.dir_prev(feat))  # (N, 2, H, W)
        if self.attr_out is not None:
            out["attr"] = self.attr_out(self.attr_prev(cls_feat))  # (N, num_attrs, H, W): from the class feature
        out["centerness"] = self.ctr_out(self.ctr_prev(reg_feat))  # (N, 1, H, W): on the regression feature
        return out


class FCOS3DHead(nn.Module):
    """FCOS3D head.

    Args:
        num_classes, in_channels, feat_channels: class count, neck channels, tower width.
        stacked_convs: separable conv-BN-ReLU layers in each of the cls and reg towers.
        strides: one per input level (only their count matters here; kept for the model/target).
        group_reg_dims: channels of offset, depth, size, rot, velo (the last only when pred_velo).
        cls_branch, reg_branch, dir_branch, attr_branch, centerness_branch: widths of the extra
            separable layers before each prediction conv (reg_branch: one tuple per reg group).
        pred_attrs / num_attrs, pred_velo, use_direction_classifier / num_dir_bins: optional outputs.
        prior_prob: initial foreground probability of the class logits (bias -log((1 - p) / p)).
        depth_bias_init, size_bias_init: optional initial biases of the depth (1) and size (3) outputs,
            log of a typical depth / [w, l, h] in metres. HAT and mmdet3d start at 0 (1 m), which costs
            many early steps of a short training run; None keeps their behaviour.
        bn_eps, bn_momentum: BatchNorm settings.
        dir_feature: the tower the direction classifier reads, "reg" (HAT, mmdet3d) or "cls".

    forward(feats: list of (N, in_channels, H_i, W_i)) -> {name: [one raw tensor per level]}, names in
    HEAD_OUTPUTS order among: cls_score (N, num_classes, H, W), offset (N, 2), depth (N, 1), size
    (N, 3), rot (N, 1), velo (N, 2), dir_cls (N, 2), attr (N, num_attrs), centerness (N, 1).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 64,
        feat_channels: int = 256,
        stacked_convs: int = 2,
        strides: Sequence[int] = (8, 16, 32, 64, 128),
        group_reg_dims: Sequence[int] = (2, 1, 3, 1, 2),
        cls_branch: Sequence[int] = (256,),
        reg_branch: Sequence[Sequence[int]] = ((256,), (256,), (256,), (256,), ()),
        pred_attrs: bool = True,
        num_attrs: int = 9,
        pred_velo: bool = True,
        use_direction_classifier: bool = True,
        num_dir_bins: int = 2,
        dir_branch: Sequence[int] = (256,),
        attr_branch: Sequence[int] = (256,),
        centerness_branch: Sequence[int] = (64,),
        prior_prob: float = 0.01,
        depth_bias_init: float | None = None,
        size_bias_init: Sequence[float] | None = None,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        dir_feature: str = "reg",
    ):
        super().__init__()
        if dir_feature not in ("reg", "cls"):
            raise Fcos3dError(f"FCOS3DHead dir_feature {dir_feature!r}: use 'reg' (HAT, mmdet3d) or 'cls'")
        group_reg_dims = tuple(group_reg_dims)
        n_reg = 5 if pred_velo else 4
        if len(group_reg_dims) != n_reg or len(reg_branch) != n_reg:
            raise Fcos3dError(
                f"FCOS3DHead group_reg_dims {group_reg_dims} / reg_branch ({len(reg_branch)} entries) need {n_reg} "
                f"groups ({', '.join(REG_NAMES[:n_reg])}) with pred_velo={pred_velo}"
            )
        if group_reg_dims[:4] != (2, 1, 3, 1) or (pred_velo and group_reg_dims[4] != 2):
            raise Fcos3dError(f"FCOS3DHead group_reg_dims {group_reg_dims}: the decoder reads (2, 1, 3, 1, 2)")
        self.num_classes = num_classes
        self.strides = tuple(strides)
        self.reg_names = REG_NAMES[:n_reg]
        absent = {"velo": not pred_velo, "dir_cls": not use_direction_classifier, "attr": not pred_attrs}
        self.output_heads = tuple(h for h in HEAD_OUTPUTS if not absent.get(h, False))
        bn = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
        args = (
            num_classes,
            in_channels,
            feat_channels,
            stacked_convs,
            group_reg_dims,
            cls_branch,
            reg_branch,
            dir_branch if use_direction_classifier else None,
            attr_branch if pred_attrs else None,
            num_attrs,
            centerness_branch,
            num_dir_bins,
            bn,
            dir_feature,
        )
        self.levels = nn.ModuleList(HeadLevel(*args) for _ in self.strides)
        self._init_weights(prior_prob)
        reg_outs = dict(zip(self.reg_names, self.levels[0].reg_outs))
        with torch.no_grad():
            if depth_bias_init is not None:
                reg_outs["depth"].pw.bias.fill_(float(depth_bias_init))
            if size_bias_init is not None:
                reg_outs["size"].pw.bias.copy_(torch.as_tensor(size_bias_init, dtype=torch.float32))
        for level in self.levels[1:]:
            _tie_convs(level, self.levels[0])

    def _init_weights(self, prior_prob: float):
        for m in self.levels[0].modules():
            if isinstance(m, nn.Conv2d):
                if m.groups > 1:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")  # depthwise
                else:
                    nn.init.normal_(m.weight, std=0.01)  # pointwise, as mmdet's heads
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # Start every point at foreground probability prior_prob: the focal loss is then not swamped
        # by the ~10^4 easy negatives in the first steps.
        nn.init.constant_(self.levels[0].cls_out.pw.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, feats: Sequence[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        if len(feats) != len(self.levels):
            raise ValueError(f"FCOS3DHead got {len(feats)} feature maps for {len(self.levels)} levels")
        out = {h: [] for h in self.output_heads}
        for level, x in zip(self.levels, feats):
            for name, t in level(x, self.reg_names).items():
                out[name].append(t)
        return out


def _tie_convs(dst: nn.Module, src: nn.Module) -> None:
    """Make every conv of ``dst`` use the very Parameter objects of the matching conv in ``src``.

    Each level keeps its own modules (so its BN, and later its quantisers, stay per level), but a
    gradient step updates one set of conv weights shared by all levels.
    """
    for (name, d), (_, s) in zip(dst.named_modules(), src.named_modules()):
        if isinstance(d, nn.Conv2d):
            if not isinstance(s, nn.Conv2d) or d.weight.shape != s.weight.shape:
                raise RuntimeError(f"head levels differ at {name}")
            d.weight = s.weight
            if d.bias is not None:
                d.bias = s.bias
