"""The image geometry of the input pipeline in numpy + cv2 only: keep-ratio size, resize, pad, intrinsics.

Shared by the torch transforms (data/transforms.py) and the torch-free board runtime (runtime/preprocess.py),
so that training, validation and the board prepare pixels with one rule and one rounding.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["keep_ratio_size", "resize_image", "pad_image", "scale_intrinsics"]


def keep_ratio_size(w: int, h: int, img_scale: tuple[int, int], keep_ratio: bool = True) -> tuple[int, int]:
    """(new_w, new_h) of a w x h image resized into img_scale = (W, H).

    keep_ratio: one scale s = min(W / w, H / h), each side rounded with Python's round (half to even),
    at least 1 pixel; else exactly (W, H).
    """
    W, H = img_scale
    if not keep_ratio:
        return int(W), int(H)
    s = min(W / w, H / h)
    return max(1, int(round(w * s))), max(1, int(round(h * s)))


def resize_image(img: np.ndarray, new_w: int, new_h: int) -> np.ndarray:
    """(h, w, C) uint8 -> (new_h, new_w, C), bilinear (cv2.INTER_LINEAR, cv2's fixed-point path for uint8)."""
    return cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


def pad_image(img: np.ndarray, pad_w: int, pad_h: int) -> np.ndarray:
    """Zero rows at the bottom and zero columns at the right up to (pad_h, pad_w): pixel coordinates and the
    intrinsics stay valid. The image must fit."""
    h, w = img.shape[:2]
    return cv2.copyMakeBorder(img, 0, pad_h - h, 0, pad_w - w, cv2.BORDER_CONSTANT, value=(0, 0, 0))


def scale_intrinsics(K, sx: float, sy: float) -> np.ndarray:
    """A float64 copy of the (3, 3) intrinsics with the first row times sx and the second times sy."""
    K = np.array(K, dtype=np.float64)
    K[0] *= sx
    K[1] *= sy
    return K
