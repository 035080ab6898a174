"""Single-image inference (HAT's infer): one camera JPEG -> a stage's model -> 3D boxes and a picture.

The image goes through the config's val transforms; the boxes come back through the shared numpy
post-process, in the camera frame, and are drawn on the original image with fcos3d.data.show.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from ..boxes.decode import group_outputs
from ..boxes.geometry import project_points
from ..boxes.postprocess import PostProcess
from ..data.devkit import find_image_info
from ..data.mono import mono_annotations
from ..data.show import show_detections
from ..errors import Fcos3dError
from .config import build
from .stages import load_stage_model


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise Fcos3dError(f"{path}: not a readable image; pass a JPEG or PNG file")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)  # (H, W, 3) RGB


def _intrinsics(text: str) -> np.ndarray:
    try:
        fx, fy, cx, cy = (float(v) for v in text.split(","))
    except ValueError:
        raise Fcos3dError(
            f"--intrinsics {text!r}: give fx,fy,cx,cy in pixels, e.g. 1266.4,1266.4,816.3,491.5"
        ) from None
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)


def _as_drawable(boxes: dict, K: np.ndarray) -> dict:
    """Camera-frame boxes -> the annotation fields the picture code draws (in the original image's pixels)."""
    uv, _ = project_points(K, boxes["centers3d"])  # (N, 2)
    return {
        "labels": boxes["labels"],
        "centers3d": boxes["centers3d"],
        "dims": boxes["dims"],
        "rot_y": boxes["rot_y"],
        "centers2d": uv,
        "bboxes2d": np.concatenate([uv, uv], axis=1),
        "depths": boxes["centers3d"][:, 2],
        **({"scores": boxes["scores"]} if "scores" in boxes else {}),
    }


@torch.no_grad()
def infer_image(
    cfg: dict,
    image: str | Path,
    *,
    stage: str = "float",
    score_th: float = 0.3,
    save_path: str | Path,
    with_gt: bool = False,
    version: str = "v1.0-mini",
    intrinsics: str | None = None,
    ckpt: str | Path | None = None,
) -> dict:
    """Predict one image and draw it; returns the camera-frame boxes and the picture's path.

    The intrinsics come from --intrinsics, or from the devkit when the image lies in a nuScenes dataroot
    (which also gives the ground truth drawn with ``with_gt``).
    """
    image = Path(image)
    rgb = _read_rgb(image)
    info = None
    if intrinsics:
        K = _intrinsics(intrinsics)
    else:
        info = find_image_info(image, version)
        K = info["cam_intrinsic"]
    if with_gt and info is None:
        info = find_image_info(image, version)

    transforms = build(cfg["val_data_loader"]["dataset"]["transforms"], "val_data_loader.dataset.transforms")
    sample = {
        "img": rgb,
        "cam_intrinsic": K,
        "img_shape": rgb.shape[:2],
        "ori_shape": rgb.shape[:2],
        "anns": {
            k: np.zeros((0,) + s, dtype=np.float32)
            for k, s in (
                ("bboxes2d", (4,)),
                ("centers2d", (2,)),
                ("depths", ()),
                ("centers3d", (3,)),
                ("dims", (3,)),
                ("rot_y", ()),
                ("velo_cam", (2,)),
            )
        }
        | {"labels": np.zeros(0, np.int64), "attr_labels": np.zeros(0, np.int64)},
    }
    for t in transforms:
        sample = t(sample)
    model = load_stage_model(cfg, stage, ckpt)
    flat = [t[0].float().numpy() for t in model(sample["img"][None])]
    post = build(cfg["post_process"], "post_process") if "post_process" in cfg else PostProcess()
    post = PostProcess(score_thr=score_th, nms_pre=post.nms_pre, nms_thr=post.nms_thr, max_per_img=post.max_per_img)
    boxes = post.image_boxes(group_outputs(flat, model.strides), model.strides, sample["cam_intrinsic"])
    gt = _as_drawable(mono_annotations(info), K) if with_gt else None
    path = show_detections(rgb, K, _as_drawable(boxes, K), save_path, gt=gt, title=f"{image.name}  {stage}")
    return {"boxes": boxes, "path": path}
