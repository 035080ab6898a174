"""The model input made the on-board way, without torch: JPEG bytes -> RGB -> keep-ratio resize -> pad -> YUV444 -> int8.

Equal, pixel for pixel, to the dataset pipeline Resize3D -> Pad(size) -> ToTensor(to_yuv=True) -> Normalize(128, 128)
followed by the simulator's quantize_input (s = 1/128): both use fcos3d.data.resize for the geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fcos3d.data.resize import keep_ratio_size, pad_image, resize_image, scale_intrinsics
from fcos3d.errors import Fcos3dError

__all__ = ["PreparedInput", "prepare_image", "prepare_jpeg", "input_size_from_meta"]


@dataclass(frozen=True)
class PreparedInput:
    """x: (1, 3, H, W) int8 YUV444 (byte - 128); cam_intrinsic: (3, 3) float64 for the resized image;
    ori_shape / img_shape / pad_shape: (h, w) before resize, after resize, after pad; scale_factor: [sx, sy]."""

    x: np.ndarray
    cam_intrinsic: np.ndarray
    ori_shape: tuple[int, int]
    img_shape: tuple[int, int]
    pad_shape: tuple[int, int]
    scale_factor: np.ndarray


def input_size_from_meta(meta: dict, name: str | None = None) -> tuple[int, int]:
    """The (W, H) of an artifact's (N, 3, H, W) image input, read from meta.json's inputs."""
    inputs = meta["inputs"]
    spec = inputs[0] if name is None else next((i for i in inputs if i["name"] == name), None)
    if spec is None or len(spec["shape"]) != 4 or spec["shape"][1] != 3:
        raise Fcos3dError(f"meta.json: no (N, 3, H, W) image input {name or ''}; recompile with fcos3d-compile")
    return int(spec["shape"][3]), int(spec["shape"][2])


def prepare_image(
    rgb: np.ndarray, cam_intrinsic, input_size: tuple[int, int], keep_ratio: bool = True
) -> PreparedInput:
    """(h, w, 3) uint8 RGB + intrinsics -> the int8 model input of size input_size = (W, H) and scaled intrinsics."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise Fcos3dError(
            f"prepare_image needs an (h, w, 3) uint8 RGB image, got {getattr(rgb, 'dtype', type(rgb))} "
            f"{getattr(rgb, 'shape', '')}"
        )
    h, w = rgb.shape[:2]
    W, H = input_size
    new_w, new_h = keep_ratio_size(w, h, (W, H), keep_ratio)
    img = pad_image(resize_image(rgb, new_w, new_h), W, H)  # (H, W, 3)
    yuv = cv2.cvtColor(img, cv2.COLOR_RGB2YUV)  # YUV444, BT.601 as cv2 computes it (what ToTensor(to_yuv) does)
    # int8 = byte - 128: Normalize(128, 128) then quantize at s = 1/128 is exactly this, no rounding.
    x = (yuv.astype(np.int16) - 128).astype(np.int8).transpose(2, 0, 1)[None]  # (1, 3, H, W)
    sx, sy = new_w / w, new_h / h
    return PreparedInput(
        x=np.ascontiguousarray(x),
        cam_intrinsic=scale_intrinsics(cam_intrinsic, sx, sy),
        ori_shape=(h, w),
        img_shape=(new_h, new_w),
        pad_shape=(H, W),
        scale_factor=np.array([sx, sy]),
    )


def prepare_jpeg(jpeg: bytes, cam_intrinsic, input_size: tuple[int, int], keep_ratio: bool = True) -> PreparedInput:
    """The original JPEG file's bytes -> ``prepare_image`` (decoded as the dataset decodes: cv2, BGR -> RGB)."""
    try:
        bgr = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    except (TypeError, ValueError, cv2.error):  # not bytes, or empty
        bgr = None
    if bgr is None:
        raise Fcos3dError("prepare_jpeg: the bytes do not decode as an image: pass the original JPEG file's content")
    return prepare_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), cam_intrinsic, input_size, keep_ratio)
