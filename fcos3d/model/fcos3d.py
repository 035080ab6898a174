"""FCOS3D: backbone -> neck -> head, returning the raw head tensors as one flat, named tuple.

The graph ends at the raw prediction convs (what export and the board see); training adds
``loss(raw, anns)`` through FCOS3DTarget and FCOS3DLoss; decoding is numpy (fcos3d.boxes.decode).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from fcos3d.boxes.decode import group_outputs, output_names
from fcos3d.errors import Fcos3dError

from .losses import FCOS3DLoss
from .targets import FCOS3DTarget

__all__ = ["FCOS3D"]


class FCOS3D(nn.Module):
    """Monocular 3D detector.

    Args:
        backbone: img (N, 3, H, W) -> list of features (EfficientNet).
        neck: features -> list of L maps (BiFPN).
        head: maps -> {name: [L raw tensors]} (FCOS3DHead).
        target: FCOS3DTarget (default: one with the head's strides and classes).
        loss: FCOS3DLoss (default: one with the head's classes).

    forward(img) -> tuple of L * len(output_heads) tensors, head-major, named by ``output_names``:
        cls_score_s8 .. cls_score_s128, offset_s8 .., depth_s8 .., size_s8 .., rot_s8 .., velo_s8 ..,
        dir_cls_s8 .., attr_s8 .., centerness_s8 .. centerness_s128
    (heads the head was built without are left out). Shapes per level: (N, C_head, H/s, W/s) with
    C = 10, 2, 1, 3, 1, 2, 2, 9, 1 for the default head. ``group(flat)`` gives {head: [per level]}.
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        target: FCOS3DTarget | None = None,
        loss: FCOS3DLoss | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.strides = tuple(head.strides)
        self.output_heads = tuple(head.output_heads)
        self.output_names = output_names(self.strides, self.output_heads)
        self.target = target if target is not None else FCOS3DTarget(strides=self.strides, num_classes=head.num_classes)
        self.loss_fn = loss if loss is not None else FCOS3DLoss(num_classes=head.num_classes)
        if tuple(self.target.strides) != self.strides:
            raise Fcos3dError(
                f"FCOS3D target strides {self.target.strides} differ from the head's {self.strides}: "
                f"build FCOS3DTarget with strides={self.strides}"
            )

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, ...]:  # (N, 3, H, W)
        out = self.head(self.neck(self.backbone(img)))
        return tuple(t for h in self.output_heads for t in out[h])

    def group(self, flat: Sequence[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        """Flat forward outputs -> {head: [one tensor per level]}."""
        return group_outputs(flat, self.strides, self.output_heads)

    def loss(
        self, raw: Sequence[torch.Tensor] | Mapping[str, Sequence[torch.Tensor]], anns: Sequence[Mapping]
    ) -> dict[str, torch.Tensor]:
        """Named losses of the raw outputs (flat tuple or grouped) against per-image annotations.

        anns: one dict per image of the record's annotation fields in network-input pixels
        (fcos3d/model/targets.py lists them).
        """
        grouped = raw if isinstance(raw, Mapping) else self.group(raw)
        sizes = [tuple(t.shape[-2:]) for t in grouped["cls_score"]]
        targets = self.target(sizes, anns, device=grouped["cls_score"][0].device)
        return self.loss_fn(grouped, targets)
