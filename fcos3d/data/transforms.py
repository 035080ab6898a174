"""Sample transforms for mono-3D data (resize with intrinsics, pad, to tensor, normalise) and collate_fn.

Each transform is a frozen dataclass validated when created; calling it returns a new sample dict and
never changes its input. Sample keys: fcos3d.data.dataset.record_to_sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..errors import Fcos3dError
from .record import ANN_FIELDS
from .resize import keep_ratio_size, pad_image, resize_image, scale_intrinsics

__all__ = ["Resize3D", "Pad", "ToTensor", "Normalize", "collate_fn", "unbatch_anns"]


def _size_pair(cls: str, field: str, value) -> tuple[int, int]:
    """A (width, height) pair of positive ints, or an Fcos3dError naming the field."""
    try:
        w, h = value
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in (w, h))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise Fcos3dError(f"{cls}.{field}={value!r}: give (width, height) as two positive ints, e.g. (896, 512)")
    return int(w), int(h)


def _numpy_image(sample: dict, cls: str) -> np.ndarray:
    img = sample["img"]
    if not isinstance(img, np.ndarray) or img.ndim != 3:
        raise Fcos3dError(f"{cls} needs the (H, W, 3) numpy image of the dataset: put it before ToTensor")
    return img


@dataclass(frozen=True)
class Resize3D:
    """Resize the image and keep the 3D geometry consistent with it.

    keep_ratio: one scale s = min(W / w, H / h) so the image fits in img_scale = (W, H); else exactly
    (W, H). The first two rows of the intrinsics, bboxes2d and centers2d are scaled by the per-axis
    factors actually applied (new size / old size, after rounding), so K @ centers3d still projects
    onto centers2d; depths and 3D boxes are unchanged. scale_factor (2,) [sx, sy] accumulates.
    """

    img_scale: tuple[int, int]
    keep_ratio: bool = True

    def __post_init__(self):
        object.__setattr__(self, "img_scale", _size_pair("Resize3D", "img_scale", self.img_scale))
        if not isinstance(self.keep_ratio, bool):
            raise Fcos3dError(f"Resize3D.keep_ratio={self.keep_ratio!r}: use True or False")

    def __call__(self, sample: dict) -> dict:
        img = _numpy_image(sample, "Resize3D")
        h, w = img.shape[:2]
        new_w, new_h = keep_ratio_size(w, h, self.img_scale, self.keep_ratio)
        sx, sy = new_w / w, new_h / h
        out = dict(sample)
        out["img"] = resize_image(img, new_w, new_h)  # (new_h, new_w, 3)
        out["cam_intrinsic"] = scale_intrinsics(sample["cam_intrinsic"], sx, sy)  # (3, 3) copy
        anns = dict(sample["anns"])
        anns["bboxes2d"] = (anns["bboxes2d"] * np.array([sx, sy, sx, sy], dtype=np.float32)).astype(
            np.float32
        )  # (N, 4)
        anns["centers2d"] = (anns["centers2d"] * np.array([sx, sy], dtype=np.float32)).astype(np.float32)  # (N, 2)
        out["anns"] = anns
        out["img_shape"] = out["pad_shape"] = (new_h, new_w)
        out["scale_factor"] = np.asarray(sample.get("scale_factor", np.ones(2)), dtype=np.float64) * np.array([sx, sy])
        return out


@dataclass(frozen=True)
class Pad:
    """Zero-pad the image at the bottom and right (pixel coordinates and intrinsics stay valid).

    Exactly one of: divisor (pad each side up to a multiple of it) or size = (W, H) (pad to exactly
    that; the image must fit). Records pad_shape (H, W); img_shape keeps the unpadded size.
    """

    divisor: int | None = None
    size: tuple[int, int] | None = None

    def __post_init__(self):
        if (self.divisor is None) == (self.size is None):
            raise Fcos3dError(
                f"Pad(divisor={self.divisor!r}, size={self.size!r}): give exactly one, e.g. Pad(divisor=32) or Pad(size=(896, 512))"
            )
        if self.divisor is not None and (
            not isinstance(self.divisor, int) or isinstance(self.divisor, bool) or self.divisor < 1
        ):
            raise Fcos3dError(
                f"Pad.divisor={self.divisor!r}: use a positive int such as 32 (the largest feature stride)"
            )
        if self.size is not None:
            object.__setattr__(self, "size", _size_pair("Pad", "size", self.size))

    def __call__(self, sample: dict) -> dict:
        img = _numpy_image(sample, "Pad")
        h, w = img.shape[:2]
        if self.divisor is not None:
            ph, pw = math.ceil(h / self.divisor) * self.divisor, math.ceil(w / self.divisor) * self.divisor
        else:
            pw, ph = self.size
            if w > pw or h > ph:
                raise Fcos3dError(
                    f"Pad(size={self.size}): the image is {w}x{h}, larger than that: resize first (Resize3D(img_scale={self.size}))"
                )
        out = dict(sample)
        out["img"] = pad_image(img, pw, ph)  # (ph, pw, 3)
        out["pad_shape"] = (ph, pw)
        return out


@dataclass(frozen=True)
class ToTensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 tensor; to_yuv first converts to YUV444 (BT.601, as
    cv2.COLOR_RGB2YUV), the input format HAT feeds the chip."""

    to_yuv: bool = False

    def __post_init__(self):
        if not isinstance(self.to_yuv, bool):
            raise Fcos3dError(f"ToTensor.to_yuv={self.to_yuv!r}: use True or False")

    def __call__(self, sample: dict) -> dict:
        img = _numpy_image(sample, "ToTensor")
        if self.to_yuv:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2YUV)
        out = dict(sample)
        out["img"] = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()  # (3, H, W)
        return out


def _channel_values(field: str, value) -> tuple[float, float, float]:
    try:
        vals = [float(value)] * 3 if np.isscalar(value) else [float(v) for v in value]
    except (TypeError, ValueError):
        vals = []
    if len(vals) != 3 or not all(np.isfinite(vals)):
        raise Fcos3dError(f"Normalize.{field}={value!r}: give one number or three (per channel), e.g. 128.0")
    return tuple(vals)


@dataclass(frozen=True)
class Normalize:
    """(img - mean) / std per channel on the (3, H, W) float tensor made by ToTensor."""

    mean: float | tuple[float, float, float]
    std: float | tuple[float, float, float]

    def __post_init__(self):
        object.__setattr__(self, "mean", _channel_values("mean", self.mean))
        std = _channel_values("std", self.std)
        if min(std) <= 0:
            raise Fcos3dError(f"Normalize.std={self.std!r}: every std must be > 0")
        object.__setattr__(self, "std", std)

    def __call__(self, sample: dict) -> dict:
        img = sample["img"]
        if not isinstance(img, torch.Tensor) or img.ndim != 3 or img.shape[0] != 3:
            raise Fcos3dError("Normalize needs the (3, H, W) tensor made by ToTensor: put it after ToTensor")
        mean = torch.tensor(self.mean, dtype=img.dtype).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=img.dtype).view(3, 1, 1)
        out = dict(sample)
        out["img"] = (img - mean) / std
        return out


_MATRICES = {"cam_intrinsic": torch.float32, "cam2ego": torch.float64, "ego2global": torch.float64}


def collate_fn(batch: list[dict]) -> dict:
    """Batch samples for a DataLoader.

    img -> (B, 3, H, W) tensor (every image must have the same size: use Pad(size=...)).
    cam_intrinsic -> (B, 3, 3) float32; cam2ego, ego2global -> (B, 4, 4) float64 (global coordinates
    need the precision). anns -> dict of per-sample lists: each ANN_FIELDS array becomes a tensor
    ((N_i, ...) per sample), instance_tokens/ann_tokens stay lists of str. Every other key (metas:
    sample_token, cam, img_shape, ori_shape, pad_shape, scale_factor, ...) -> a list of B values.
    """
    if not batch:
        raise ValueError("collate_fn got an empty batch")
    imgs = [s["img"] for s in batch]
    if not all(isinstance(t, torch.Tensor) for t in imgs):
        raise Fcos3dError("collate_fn needs tensor images: end the transforms with ToTensor()")
    shapes = sorted({tuple(t.shape) for t in imgs})
    if len(shapes) > 1:
        raise Fcos3dError(
            f"images of a batch differ in size {shapes}: add Pad(size=(W, H)) after Resize3D so all are the same"
        )
    out = {"img": torch.stack(imgs)}  # (B, 3, H, W)
    for key, dtype in _MATRICES.items():
        out[key] = torch.as_tensor(np.stack([np.asarray(s[key]) for s in batch]), dtype=dtype)  # (B, 3|4, 3|4)
    anns = {name: [torch.from_numpy(np.asarray(s["anns"][name])) for s in batch] for name in ANN_FIELDS}
    for name in ("instance_tokens", "ann_tokens"):
        anns[name] = [list(s["anns"].get(name, [])) for s in batch]
    out["anns"] = anns
    for key in batch[0]:
        if key not in out:
            out[key] = [s[key] for s in batch]
    return out


def unbatch_anns(batch: dict) -> list[dict]:
    """The batch's annotations as one dict per image (the form fcos3d.model.targets takes)."""
    anns = batch["anns"]
    n = len(anns["labels"])
    return [{name: values[i] for name, values in anns.items()} for i in range(n)]
