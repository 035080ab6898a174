"""Rotated bird's-eye-view IoU and greedy NMS in vectorised numpy (no shapely, no torch).

Used by every stage's host post-process (per image) and by the cross-camera merge before the result JSON.

A BEV box is a row (cx, cy, w, l, yaw): the centre in a right-handed ground plane (x, y) in metres, the
nuScenes width ``w`` (extent along the box's local y axis) and length ``l`` (extent along its local x axis,
the heading), and ``yaw``, the heading's angle from the +x axis, counter-clockwise, in radians. In the
nuScenes global or ego frame that is (x, y, size[0], size[1], yaw about z); see ``bev_boxes``.

The intersection of two rotated rectangles is found by Sutherland-Hodgman clipping of one rectangle by
the four edges of the other, run for many pairs at once on padded vertex arrays, then the shoelace area.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bev_boxes", "bev_corners", "bev_iou", "bev_iou_aligned", "rotated_nms", "multiclass_rotated_nms"]

# Pairs of boxes handled at once: bounds the working memory to a few tens of MB.
_PAIR_CHUNK = 65536


def bev_boxes(centers, dims, yaws) -> np.ndarray:
    """BEV boxes (N, 5) from 3D boxes in an upright frame: centres (N, 3), dims [w, l, h] (N, 3), yaws (N,)."""
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 3)
    dims = np.asarray(dims, dtype=np.float64).reshape(-1, 3)
    yaws = np.asarray(yaws, dtype=np.float64).reshape(-1)
    return np.stack([centers[:, 0], centers[:, 1], dims[:, 0], dims[:, 1], yaws], axis=1)


def _check_boxes(boxes, name: str) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 5:
        raise ValueError(f"{name} must have shape (N, 5) = (cx, cy, w, l, yaw), got {boxes.shape}")
    if not np.all(np.isfinite(boxes)):
        raise ValueError(f"{name} holds NaN or inf: filter non-finite boxes before the IoU")
    if np.any(boxes[:, 2:4] < 0):
        raise ValueError(f"{name} has a negative width or length")
    return boxes


def bev_corners(boxes) -> np.ndarray:
    """Corners (N, 4, 2) of BEV boxes (N, 5), counter-clockwise, starting at the front-left corner."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    # Local (along heading, along left) corner coordinates, counter-clockwise.
    half_l, half_w = boxes[:, 3:4] / 2.0, boxes[:, 2:3] / 2.0  # (N, 1)
    lx = np.concatenate([half_l, -half_l, -half_l, half_l], axis=1)  # (N, 4)
    ly = np.concatenate([half_w, half_w, -half_w, -half_w], axis=1)  # (N, 4)
    c, s = np.cos(boxes[:, 4:5]), np.sin(boxes[:, 4:5])
    x = boxes[:, 0:1] + c * lx - s * ly
    y = boxes[:, 1:2] + s * lx + c * ly
    return np.stack([x, y], axis=2)


def _clip_by_edge(poly, count, start, end):
    """One Sutherland-Hodgman step for P polygons at once: keep the part left of the edge start -> end.

    poly (P, K, 2) with the first ``count`` (P,) vertices valid; start, end (P, 2). Returns the clipped
    polygons (P, K', 2) and their vertex counts, K' the largest count.
    """
    P, K, _ = poly.shape
    idx = np.arange(K)
    valid = idx[None, :] < count[:, None]  # (P, K)
    nxt_idx = np.where(idx[None, :] + 1 < count[:, None], idx[None, :] + 1, 0)  # (P, K) cyclic successor
    nxt = np.take_along_axis(poly, nxt_idx[:, :, None], axis=1)  # (P, K, 2)
    e = (end - start)[:, None, :]  # (P, 1, 2)
    rel_c = poly - start[:, None, :]
    rel_n = nxt - start[:, None, :]
    # Signed distance (times |e|) to the edge line; >= 0 is inside for a counter-clockwise clip polygon.
    dc = e[..., 0] * rel_c[..., 1] - e[..., 1] * rel_c[..., 0]  # (P, K)
    dn = e[..., 0] * rel_n[..., 1] - e[..., 1] * rel_n[..., 0]
    in_c, in_n = dc >= 0, dn >= 0
    emit_vertex = valid & in_c
    emit_cross = valid & (in_c != in_n)
    # dc and dn have opposite inside-ness wherever emit_cross holds, so dc - dn is non-zero there
    # and t lies in [0, 1].
    denom = np.where(emit_cross, dc - dn, 1.0)
    t = np.where(emit_cross, dc / denom, 0.0)[..., None]
    cross_pt = poly + t * (nxt - poly)
    # Each input vertex emits (itself if inside, then the crossing of its outgoing edge): the SH order.
    out = np.stack([poly, cross_pt], axis=2).reshape(P, 2 * K, 2)
    emit = np.stack([emit_vertex, emit_cross], axis=2).reshape(P, 2 * K)
    order = np.argsort(~emit, axis=1, kind="stable")  # emitted vertices first, in order
    new_count = emit.sum(axis=1)
    # Trim the padding to the largest count actually reached (8 for two rectangles, barring round-off).
    k_new = max(int(new_count.max(initial=0)), 1)
    out = np.take_along_axis(out, order[:, :k_new, None], axis=1)
    return out, new_count


def _polygon_area(poly, count) -> np.ndarray:
    """Shoelace area (P,) of the first ``count`` vertices of each polygon in poly (P, K, 2)."""
    P, K, _ = poly.shape
    idx = np.arange(K)
    valid = idx[None, :] < count[:, None]
    nxt_idx = np.where(idx[None, :] + 1 < count[:, None], idx[None, :] + 1, 0)
    nxt = np.take_along_axis(poly, nxt_idx[:, :, None], axis=1)
    cross = poly[..., 0] * nxt[..., 1] - poly[..., 1] * nxt[..., 0]  # (P, K)
    return 0.5 * np.abs(np.sum(np.where(valid, cross, 0.0), axis=1))


def _pair_intersection(a, b) -> np.ndarray:
    """Intersection areas (P,) of BEV box pairs a[i], b[i] (P, 5 each)."""
    # Work relative to a's centre: global coordinates (~1e3 m) would cost digits in the cross products.
    origin = a[:, :2].copy()
    a = a.copy()
    b = b.copy()
    a[:, :2] -= origin
    b[:, :2] -= origin
    poly = bev_corners(a)  # (P, 4, 2), subject polygon
    clip = bev_corners(b)  # (P, 4, 2), clip polygon (convex, counter-clockwise)
    count = np.full(len(a), 4)
    for k in range(4):
        poly, count = _clip_by_edge(poly, count, clip[:, k], clip[:, (k + 1) % 4])
    return _polygon_area(poly, count)


def bev_iou_aligned(boxes_a, boxes_b) -> np.ndarray:
    """IoU (P,) of the pairs boxes_a[i], boxes_b[i] (P, 5 each); 0 where the union is empty."""
    a = _check_boxes(boxes_a, "boxes_a")
    b = _check_boxes(boxes_b, "boxes_b")
    if a.shape != b.shape:
        raise ValueError(f"boxes_a {a.shape} and boxes_b {b.shape} must pair up row for row")
    iou = np.zeros(len(a))
    # Boxes whose circumscribed circles do not meet cannot intersect: skip the clipping for them.
    ra = 0.5 * np.hypot(a[:, 2], a[:, 3])
    rb = 0.5 * np.hypot(b[:, 2], b[:, 3])
    d2 = np.sum((a[:, :2] - b[:, :2]) ** 2, axis=1)
    cand = np.flatnonzero(d2 <= (ra + rb) ** 2)
    for lo in range(0, len(cand), _PAIR_CHUNK):
        sel = cand[lo : lo + _PAIR_CHUNK]
        inter = _pair_intersection(a[sel], b[sel])
        union = a[sel, 2] * a[sel, 3] + b[sel, 2] * b[sel, 3] - inter
        iou[sel] = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou


def bev_iou(boxes_a, boxes_b) -> np.ndarray:
    """Rotated BEV IoU matrix (N, M) between boxes_a (N, 5) and boxes_b (M, 5)."""
    a = _check_boxes(boxes_a, "boxes_a")
    b = _check_boxes(boxes_b, "boxes_b")
    n, m = len(a), len(b)
    iou = np.zeros((n, m))
    if n == 0 or m == 0:
        return iou
    # Blocks of rows keep the (rows * M) pair arrays bounded however large N and M are.
    rows = max(1, _PAIR_CHUNK // m)
    for lo in range(0, n, rows):
        blk = a[lo : lo + rows]
        ia, ib = np.meshgrid(np.arange(len(blk)), np.arange(m), indexing="ij")  # (rows, M) each
        iou[lo : lo + rows] = bev_iou_aligned(blk[ia.ravel()], b[ib.ravel()]).reshape(len(blk), m)
    return iou


def rotated_nms(boxes_bev, scores, iou_threshold: float, max_out: int | None = None) -> np.ndarray:
    """Greedy rotated BEV NMS: indices (K,) of the kept boxes, highest score first.

    Boxes and scores are sorted together by descending score (sorting only one of them was mmdet3d
    issue #1483); equal scores keep their input order (a stable sort), so the result is deterministic.
    A box is suppressed by a kept box of higher rank when their IoU is strictly above iou_threshold.
    """
    boxes = _check_boxes(boxes_bev, "boxes_bev")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    if max_out is not None and max_out <= 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]  # (N, 5), descending score
    radius = 0.5 * np.hypot(b[:, 2], b[:, 3])
    suppressed = np.zeros(len(b), dtype=bool)
    keep = []
    for i in range(len(b)):
        if suppressed[i]:
            continue
        keep.append(i)
        if max_out is not None and len(keep) >= max_out:
            break
        rest = i + 1 + np.flatnonzero(~suppressed[i + 1 :])
        # Only boxes whose circumscribed circles meet box i's can overlap it.
        d2 = np.sum((b[rest, :2] - b[i, :2]) ** 2, axis=1)
        near = rest[d2 <= (radius[rest] + radius[i]) ** 2]
        if len(near):
            iou = bev_iou_aligned(np.broadcast_to(b[i], (len(near), 5)), b[near])
            suppressed[near[iou > iou_threshold]] = True
    return order[np.asarray(keep, dtype=np.int64)]


def multiclass_rotated_nms(boxes_bev, scores, labels, iou_threshold: float, max_out: int | None = None) -> np.ndarray:
    """Rotated BEV NMS run separately per label: kept indices (K,), highest score first, at most max_out.

    Boxes of different labels never suppress each other. Equal scores keep input order.
    """
    boxes = _check_boxes(boxes_bev, "boxes_bev")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if not (len(boxes) == len(scores) == len(labels)):
        raise ValueError(f"{len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels must match")
    kept = [np.zeros(0, dtype=np.int64)]
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        kept.append(idx[rotated_nms(boxes[idx], scores[idx], iou_threshold, max_out)])
    kept = np.concatenate(kept)
    # Merge the classes by descending score, ties by input index (lexsort's last key is the primary one).
    kept = kept[np.lexsort((kept, -scores[kept]))]
    return kept if max_out is None else kept[:max_out]
