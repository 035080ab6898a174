"""The host post-process of one camera image, shared by every stage and the board runtime (numpy only).

raw head outputs -> decode (fcos3d.boxes.decode) -> per-image rotated BEV NMS in the camera frame ->
camera-frame boxes; then camera -> global for the per-sample merge (fcos3d.boxes.results).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .decode import decode_outputs
from .nms import multiclass_rotated_nms
from .results import GlobalBoxes, camera_boxes_to_global

__all__ = ["PostProcess", "camera_bev"]


def camera_bev(centers3d, dims, rot_y) -> np.ndarray:
    """BEV boxes (N, 5) of camera-frame boxes in the (x, z) ground plane, right-handed seen from above.

    The heading (cos r, 0, -sin r) has the angle -r in that plane.
    """
    c = np.asarray(centers3d, dtype=np.float64).reshape(-1, 3)
    d = np.asarray(dims, dtype=np.float64).reshape(-1, 3)
    return np.stack([c[:, 0], c[:, 2], d[:, 0], d[:, 1], -np.asarray(rot_y, dtype=np.float64).reshape(-1)], axis=1)


@dataclass(frozen=True)
class PostProcess:
    """HAT's FCOS3D post-process settings (mmdet3d uses nms_pre 1000, nms_thr 0.8, max_per_img 200).

    score_thr: candidates scoring below are dropped; nms_pre: best points kept per level;
    nms_thr: per-class rotated BEV IoU threshold within one image; max_per_img: boxes kept per image.
    """

    score_thr: float = 0.05
    nms_pre: int = 100
    nms_thr: float = 0.3
    max_per_img: int = 100

    def __post_init__(self):
        if not 0 <= self.score_thr < 1:
            raise ValueError(f"PostProcess.score_thr={self.score_thr}: use a value in [0, 1)")
        if not 0 < self.nms_thr <= 1:
            raise ValueError(f"PostProcess.nms_thr={self.nms_thr}: use a value in (0, 1]")
        if self.nms_pre < 1 or self.max_per_img < 1:
            raise ValueError("PostProcess.nms_pre and max_per_img must be positive")

    def image_boxes(self, raw: Mapping[str, Sequence[np.ndarray]], strides: Sequence[int], cam_intrinsic) -> dict:
        """Camera-frame boxes of one image: decode, then per-class rotated NMS; best score first.

        raw: {head: [(C, H, W) per level]}; cam_intrinsic: the matrix of the network input image.
        """
        cand = decode_outputs(raw, strides, cam_intrinsic, score_thr=self.score_thr, nms_pre=self.nms_pre)
        if len(cand["scores"]) == 0:
            return cand
        keep = multiclass_rotated_nms(
            camera_bev(cand["centers3d"], cand["dims"], cand["rot_y"]),
            cand["scores"],
            cand["labels"],
            self.nms_thr,
            self.max_per_img,
        )
        return {k: v[keep] for k, v in cand.items()}

    def image_to_global(self, boxes: dict, cam2ego, ego2global, class_range=None) -> GlobalBoxes:
        """The boxes of image_boxes in the global frame (attributes -1 become the "no attribute" index later)."""
        return camera_boxes_to_global(
            boxes["centers3d"],
            boxes["dims"],
            boxes["rot_y"],
            boxes["velo_cam"],
            boxes["scores"],
            boxes["labels"],
            boxes["attr_labels"],
            cam2ego,
            ego2global,
            class_range=class_range,
        )
