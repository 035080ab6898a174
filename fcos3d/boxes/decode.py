"""Decode FCOS3D's raw head outputs into camera-frame 3D boxes, in numpy only (every stage uses it).

The encoding is defined by fcos3d.model.targets.FCOS3DTarget; tests/boxes/test_decode.py encodes GT
with it and decodes perfect logits back here. Per point (x_p, y_p) of a level with stride s:

    cls_score  (C)  logits; score = sigmoid(cls) * sigmoid(centerness)
    offset     (2)  (x_p - u, y_p - v) / s    (u, v) = projected 3D centre;  u = x_p - offset_x * s
    depth      (1)  log(z)                    z = exp(raw) metres (the loss compares exp(raw) with metres)
    size       (3)  log([w, l, h])            dims = exp(raw) metres, in the record's [w, l, h] order
    rot        (1)  local yaw  a = rot_y - atan2(x, z), known modulo pi (the sin-difference loss)
    velo       (2)  [vx, vz] m/s, camera frame
    dir_cls    (2)  logits of bin floor(((a - dir_offset) mod 2 pi) / pi); fixes a modulo 2 pi
    attr       (A)  logits of the attribute
    centerness (1)  logit of exp(-2.5 * |(x_p, y_p) - (u, v)| / (1.414 * s * 1.5))

Points are the cell centres x_p = j * s + s // 2 (mmdet3d's, = (j + 0.5) s for even strides), in the
pixel frame of the network input: ``cam_intrinsic`` must be the matrix of the resized/padded image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "HEAD_OUTPUTS",
    "output_names",
    "group_outputs",
    "level_points",
    "decode_yaw",
    "decode_level",
    "decode_outputs",
]

# The head's outputs, in the order FCOS3D.forward returns them (each for every level, see output_names).
HEAD_OUTPUTS = ("cls_score", "offset", "depth", "size", "rot", "velo", "dir_cls", "attr", "centerness")
HEAD_CHANNELS = {"offset": 2, "depth": 1, "size": 3, "rot": 1, "velo": 2, "dir_cls": 2, "centerness": 1}


def output_names(strides: Sequence[int], heads: Sequence[str] = HEAD_OUTPUTS) -> list[str]:
    """Flat output names, head-major: cls_score_s8, cls_score_s16, ..., centerness_s128."""
    return [f"{h}_s{s}" for h in heads for s in strides]


def group_outputs(flat: Sequence, strides: Sequence[int], heads: Sequence[str] = HEAD_OUTPUTS) -> dict[str, list]:
    """Flat head-major outputs (the model's forward, an ONNX/board run) -> {head: [one array per level]}."""
    n = len(strides)
    if len(flat) != n * len(heads):
        raise ValueError(f"{len(flat)} outputs for {len(heads)} heads x {n} levels")
    return {h: list(flat[i * n : (i + 1) * n]) for i, h in enumerate(heads)}


def level_points(height: int, width: int, stride: int) -> np.ndarray:
    """Pixel coordinates (H*W, 2) [x, y] of a level's points, row-major like a flattened (H, W) map."""
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64) * stride + stride // 2


def decode_yaw(local_yaw, dir_bin, x, z, dir_offset: float = np.pi / 4) -> np.ndarray:
    """rot_y from the regressed local yaw (known modulo pi), its direction bin, and the centre's x, z.

    The local yaw is put in [dir_offset, dir_offset + pi) and the bin adds pi when it says so; then
    the viewing ray's angle atan2(x, z) turns the local yaw back into the camera-frame rot_y.
    """
    a = np.mod(np.asarray(local_yaw, dtype=np.float64) - dir_offset, np.pi) + dir_offset + np.pi * np.asarray(dir_bin)
    return np.mod(a + np.arctan2(x, z) + np.pi, 2 * np.pi) - np.pi  # in [-pi, pi)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def _chw(a) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise ValueError(f"decode one image at a time: got a batch of {a.shape[0]}")
        a = a[0]
    return a


def decode_level(
    raw: Mapping[str, np.ndarray], stride: int, cam_intrinsic, nms_pre: int = 100, dir_offset: float = np.pi / 4
) -> dict[str, np.ndarray]:
    """Decode one level of one image: the nms_pre points with the best max-class score.

    raw: {head: (C, H, W) or (1, C, H, W)} with at least cls_score, offset, depth, size, rot, centerness.
    Returns per kept point (K <= nms_pre): class_scores (K, C) = sigmoid(cls) * sigmoid(centerness),
    centers2d (K, 2), centers3d (K, 3), dims (K, 3) [w, l, h], rot_y (K,), velo_cam (K, 2) (NaN without
    a velo head), attr_labels (K,) (-1 without an attribute head).
    """
    cls = _chw(raw["cls_score"]).astype(np.float64)
    C, H, W = cls.shape
    flat = {k: _chw(v).reshape(v.shape[-3], H * W).T.astype(np.float64) for k, v in raw.items()}  # (H*W, C_k)
    scores = _sigmoid(flat["cls_score"]) * _sigmoid(flat["centerness"])  # (H*W, C)
    points = level_points(H, W, stride)  # (H*W, 2)
    keep = np.arange(H * W)
    if 0 < nms_pre < H * W:
        best = scores.max(axis=1)
        keep = np.argpartition(-best, nms_pre - 1)[:nms_pre]
    pick = {k: v[keep] for k, v in flat.items()}

    centers2d = points[keep] - pick["offset"] * stride  # (K, 2) projected centres, input pixels
    depth = np.exp(pick["depth"][:, 0])  # (K,)
    K = np.asarray(cam_intrinsic, dtype=np.float64)[:3, :3]
    uvd = np.concatenate([centers2d * depth[:, None], depth[:, None]], axis=1)  # (K, 3) = K @ xyz
    centers3d = np.linalg.solve(K, uvd.T).T  # (K, 3)
    dims = np.exp(pick["size"])  # (K, 3)
    dir_bin = pick["dir_cls"].argmax(axis=1) if "dir_cls" in pick else np.zeros(len(keep), dtype=np.int64)
    rot_y = decode_yaw(pick["rot"][:, 0], dir_bin, centers3d[:, 0], centers3d[:, 2], dir_offset)
    velo = pick["velo"] if "velo" in pick else np.full((len(keep), 2), np.nan)
    attr = pick["attr"].argmax(axis=1) if "attr" in pick else np.full(len(keep), -1, dtype=np.int64)
    return {
        "class_scores": scores[keep],
        "centers2d": centers2d,
        "centers3d": centers3d,
        "dims": dims,
        "rot_y": rot_y,
        "velo_cam": velo,
        "attr_labels": attr.astype(np.int64),
    }


def decode_outputs(
    raw: Mapping[str, Sequence[np.ndarray]],
    strides: Sequence[int],
    cam_intrinsic,
    score_thr: float = 0.05,
    nms_pre: int = 100,
    dir_offset: float = np.pi / 4,
    multi_label: bool = True,
) -> dict[str, np.ndarray]:
    """Decode all levels of one image into candidate boxes (before NMS), best score first.

    raw: {head: [one (C, H, W) or (1, C, H, W) array per level]} (group_outputs makes it from the
    flat outputs). Per level the nms_pre best points are decoded; a candidate is a (point, class)
    pair whose score passes score_thr (multi_label, mmdet3d's rule: one point may give a car and a
    truck) or only each point's best class (multi_label=False).

    Returns centers3d (M, 3), dims (M, 3) [w, l, h], rot_y (M,), velo_cam (M, 2), scores (M,),
    labels (M,), attr_labels (M,), centers2d (M, 2): camera frame of cam_intrinsic, sorted by score.
    """
    heads = [h for h in HEAD_OUTPUTS if h in raw]
    levels = []
    for i, stride in enumerate(strides):
        levels.append(decode_level({h: raw[h][i] for h in heads}, stride, cam_intrinsic, nms_pre, dir_offset))
    cat = {k: np.concatenate([lv[k] for lv in levels]) for k in levels[0]}
    scores = cat.pop("class_scores")  # (P, C)
    if multi_label:
        point, label = np.nonzero(scores > score_thr)
    else:
        label = scores.argmax(axis=1)
        point = np.nonzero(scores[np.arange(len(scores)), label] > score_thr)[0]
        label = label[point]
    s = scores[point, label]
    order = np.argsort(-s, kind="stable")
    point, label = point[order], label[order]
    out = {k: v[point] for k, v in cat.items()}
    out["scores"] = s[order]
    out["labels"] = label.astype(np.int64)
    return out
