"""Per-point training targets of FCOS3D (the encoding that fcos3d.boxes.decode undoes).

Re-derived from mmdet3d's FCOSMono3DHead.get_targets: levels by the 2D box's regress range, positives
within 1.5 strides of the projected 3D centre, ambiguity to the nearest projected centre.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from fcos3d.boxes.decode import level_points
from fcos3d.data.classes import NO_ATTRIBUTE
from fcos3d.errors import Fcos3dError

__all__ = ["FCOS3DTarget", "INF", "REGRESS_RANGES", "CODE_SIZE", "local_yaw", "direction_bin"]

INF = 1e8
REGRESS_RANGES = ((-1, 48), (48, 96), (96, 192), (192, 384), (384, INF))
# bbox target columns: offset x, offset y, depth, w, l, h, local yaw, vx, vz.
CODE_SIZE = 9


def local_yaw(rot_y: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """rot_y minus the viewing ray's angle atan2(x, z), wrapped to [-pi, pi).

    What the camera sees of an object depends on its heading relative to the ray through it, not on
    rot_y; the decoder adds atan2(x, z) of the decoded centre back.
    """
    a = rot_y - torch.atan2(x, z)
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


def direction_bin(yaw: torch.Tensor, dir_offset: float = math.pi / 4, num_bins: int = 2) -> torch.Tensor:
    """Bin of floor(((yaw - dir_offset) mod 2 pi) / (2 pi / num_bins)): with 2 bins, which half turn.

    The sin-difference loss cannot tell yaw from yaw + pi; the bin can. The offset pi/4 keeps the
    bin boundary away from the common headings 0 and pi/2 (mmdet3d's dir_offset).
    """
    offset = torch.remainder(yaw - dir_offset, 2 * math.pi)
    return torch.clamp(torch.floor(offset / (2 * math.pi / num_bins)).long(), 0, num_bins - 1)


def _as_tensor(value, dtype, device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(value), dtype=dtype, device=device)


class FCOS3DTarget:
    """Targets for every point of every level, for a batch of images.

    Args:
        strides: level strides (the head's).
        regress_ranges: per level (lo, hi) of max(l, t, r, b), the point's distances to the 2D box edges.
        center_sample_radius: positives lie within radius * stride of the projected 3D centre (x and y).
        centerness_alpha: centerness = exp(-alpha * d / (1.414 * stride * radius)), d the pixel distance
            from the point to the projected centre.
        norm_on_bbox: offsets divided by the level stride.
        num_classes: background label = num_classes.
        dir_offset, num_dir_bins: direction classifier encoding (direction_bin).

    __call__(featmap_sizes [(H, W) per level], anns [one dict per image]) -> dict of
        labels      (N, P) int64, background = num_classes
        bbox        (N, P, 9) float32: [(x_p - u) / s, (y_p - v) / s, depth m, w, l, h m, local yaw, vx, vz]
                    (velocity NaN where the annotation has none; the loss masks it)
        centerness  (N, P) float32
        attr_labels (N, P) int64, -1 on background
        dir_labels  (N, P) int64
    P = sum of H * W, levels concatenated, each level row-major. Each ann dict holds the record's
    fields (fcos3d/data/record.py) for that image in network-input pixels: bboxes2d, centers2d,
    depths, centers3d, dims, rot_y, velo_cam, labels, attr_labels (numpy arrays or tensors).
    """

    def __init__(
        self,
        strides: Sequence[int] = (8, 16, 32, 64, 128),
        regress_ranges: Sequence[tuple[float, float]] = REGRESS_RANGES,
        center_sample_radius: float = 1.5,
        centerness_alpha: float = 2.5,
        norm_on_bbox: bool = True,
        num_classes: int = 10,
        dir_offset: float = math.pi / 4,
        num_dir_bins: int = 2,
    ):
        if len(strides) != len(regress_ranges):
            raise Fcos3dError(
                f"FCOS3DTarget has {len(strides)} strides but {len(regress_ranges)} regress_ranges: "
                f"give one (lo, hi) per stride"
            )
        self.strides = tuple(strides)
        self.regress_ranges = tuple(tuple(r) for r in regress_ranges)
        self.center_sample_radius = center_sample_radius
        self.centerness_alpha = centerness_alpha
        self.norm_on_bbox = norm_on_bbox
        self.num_classes = num_classes
        self.dir_offset = dir_offset
        self.num_dir_bins = num_dir_bins

    def points(self, featmap_sizes: Sequence[tuple[int, int]], device=None):
        """points (P, 2) [x, y] pixels, stride (P,), regress range (P, 2), all levels concatenated."""
        pts, strides, ranges = [], [], []
        for (h, w), s, r in zip(featmap_sizes, self.strides, self.regress_ranges):
            p = torch.as_tensor(level_points(h, w, s), dtype=torch.float32, device=device)  # (H*W, 2)
            pts.append(p)
            strides.append(torch.full((len(p),), float(s), device=device))
            ranges.append(torch.tensor(r, dtype=torch.float32, device=device).expand(len(p), 2))
        return torch.cat(pts), torch.cat(strides), torch.cat(ranges)

    @torch.no_grad()
    def __call__(self, featmap_sizes: Sequence[tuple[int, int]], anns: Sequence[Mapping], device=None) -> dict:
        if len(featmap_sizes) != len(self.strides):
            raise ValueError(f"{len(featmap_sizes)} feature maps for {len(self.strides)} strides")
        points, strides, ranges = self.points(featmap_sizes, device)
        per_image = [self._single(a, points, strides, ranges, device) for a in anns]
        return {k: torch.stack([t[k] for t in per_image]) for k in per_image[0]}

    def _single(self, ann: Mapping, points, strides, ranges, device) -> dict:
        P = len(points)
        f32 = torch.float32
        labels_gt = _as_tensor(ann["labels"], torch.long, device).reshape(-1)
        G = len(labels_gt)
        out = {
            "labels": torch.full((P,), self.num_classes, dtype=torch.long, device=device),
            "bbox": torch.zeros((P, CODE_SIZE), dtype=f32, device=device),
            "centerness": torch.zeros((P,), dtype=f32, device=device),
            "attr_labels": torch.full((P,), -1, dtype=torch.long, device=device),
            "dir_labels": torch.zeros((P,), dtype=torch.long, device=device),
        }
        if G == 0:
            return out
        boxes = _as_tensor(ann["bboxes2d"], f32, device).reshape(G, 4)
        centers2d = _as_tensor(ann["centers2d"], f32, device).reshape(G, 2)
        depths = _as_tensor(ann["depths"], f32, device).reshape(G)
        centers3d = _as_tensor(ann["centers3d"], f32, device).reshape(G, 3)
        dims = _as_tensor(ann["dims"], f32, device).reshape(G, 3)
        rot_y = _as_tensor(ann["rot_y"], f32, device).reshape(G)
        velo = _as_tensor(ann["velo_cam"], f32, device).reshape(G, 2)
        attrs = (
            _as_tensor(ann["attr_labels"], torch.long, device).reshape(G)
            if "attr_labels" in ann
            else torch.full((G,), NO_ATTRIBUTE, dtype=torch.long, device=device)
        )

        px, py = points[:, 0:1], points[:, 1:2]  # (P, 1)
        # Level choice by the 2D box: the largest distance from the point to a box edge.
        ltrb = torch.stack([px - boxes[:, 0], py - boxes[:, 1], boxes[:, 2] - px, boxes[:, 3] - py], -1)  # (P, G, 4)
        max_dist = ltrb.max(-1).values  # (P, G)
        in_range = (max_dist >= ranges[:, 0:1]) & (max_dist <= ranges[:, 1:2])
        # Centre sampling around the projected 3D centre (not the 2D box centre, and not clipped to
        # the 2D box: mmdet3d's FCOS3D rule).
        dx, dy = px - centers2d[:, 0], py - centers2d[:, 1]  # (P, G) pixels
        radius = (strides * self.center_sample_radius)[:, None]  # (P, 1)
        in_center = (dx.abs() < radius) & (dy.abs() < radius)
        dist = torch.sqrt(dx * dx + dy * dy)  # (P, G)
        dist = torch.where(in_center & in_range, dist, torch.full_like(dist, INF))
        min_dist, g = dist.min(dim=1)  # (P,) nearest projected centre wins
        pos = min_dist < INF
        if not pos.any():
            return out

        idx = torch.arange(P, device=device)
        offset = torch.stack([dx[idx, g], dy[idx, g]], -1)  # (P, 2) point minus projected centre
        if self.norm_on_bbox:
            offset = offset / strides[:, None]
        yaw = local_yaw(rot_y, centers3d[:, 0], centers3d[:, 2])[g]  # (P,)
        bbox = torch.cat([offset, depths[g, None], dims[g], yaw[:, None], velo[g]], dim=1)  # (P, 9)
        centerness = torch.exp(-self.centerness_alpha * min_dist / (1.414 * strides * self.center_sample_radius))

        out["labels"] = torch.where(pos, labels_gt[g], out["labels"])
        out["bbox"] = torch.where(pos[:, None], bbox, out["bbox"])
        out["centerness"] = torch.where(pos, centerness, out["centerness"])
        out["attr_labels"] = torch.where(pos, attrs[g], out["attr_labels"])
        out["dir_labels"] = torch.where(pos, direction_bin(yaw, self.dir_offset, self.num_dir_bins), out["dir_labels"])
        return out
