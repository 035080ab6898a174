"""A 3D box seen by a pinhole camera: its edges clipped at a near plane, and its clipped 2D image box.

Used by the LMDB packer (the 2D box of each mono annotation) and by the drawing code. Numpy only.
"""

from __future__ import annotations

import numpy as np

from .geometry import project_points

__all__ = ["BOX_EDGES", "NEAR_PLANE", "clip_segments_to_depth", "convex_hull", "image_bbox_of_corners"]

# The 12 edges of a box as pairs of corner indices (corner order of geometry.box_corners: 0-3 front
# face, 4-7 back face, corner i and i + 4 on the same side).
BOX_EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4], [0, 4], [1, 5], [2, 6], [3, 7]])

# Depth (metres) in front of the camera below which geometry is cut away before projecting: points at
# or behind the camera have no image, and the devkit's box_in_image uses the same 0.1 m.
NEAR_PLANE = 0.1


def clip_segments_to_depth(p0, p1, near: float = NEAR_PLANE):
    """Cut camera-frame segments (N, 3) -> (N, 3) to the half-space z >= near.

    Returns (q0, q1, keep): the clipped end points (N, 3) and a bool mask (N,) of segments that keep
    any length in front of the plane (entries where keep is False are meaningless).
    """
    p0 = np.asarray(p0, dtype=np.float64).reshape(-1, 3)
    p1 = np.asarray(p1, dtype=np.float64).reshape(-1, 3)
    z0, z1 = p0[:, 2], p1[:, 2]
    keep = (z0 >= near) | (z1 >= near)
    with np.errstate(divide="ignore", invalid="ignore"):  # segments parallel to the plane: unused NaN/inf
        t = (near - z0) / (z1 - z0)  # where the segment crosses the plane, 0 at p0, 1 at p1
        hit = p0 + t[:, None] * (p1 - p0)
    q0 = np.where((z0 < near)[:, None], hit, p0)
    q1 = np.where((z1 < near)[:, None], hit, p1)
    return q0, q1, keep


def convex_hull(pts) -> np.ndarray:
    """Convex hull (M, 2) of 2D points (N, 2), counter-clockwise, by Andrew's monotone chain."""
    pts = np.unique(np.asarray(pts, dtype=np.float64).reshape(-1, 2), axis=0)  # sorted by x, then y
    if len(pts) < 3:
        return pts

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in pts[::-1]:
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def _clip_polygon(poly: np.ndarray, axis: int, bound: float, keep_below: bool) -> np.ndarray:
    """One Sutherland-Hodgman step: the part of a convex polygon (M, 2) on one side of x|y = bound."""
    if len(poly) == 0:
        return poly
    out = []
    inside = (poly[:, axis] <= bound) if keep_below else (poly[:, axis] >= bound)
    for i in range(len(poly)):
        a, b = poly[i], poly[(i + 1) % len(poly)]
        a_in, b_in = inside[i], inside[(i + 1) % len(poly)]
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (bound - a[axis]) / (b[axis] - a[axis])
            out.append(a + t * (b - a))
    return np.array(out).reshape(-1, 2)


def image_bbox_of_corners(corners_cam, K, img_w: int, img_h: int, near: float = NEAR_PLANE):
    """The 2D box [x1, y1, x2, y2] of a 3D box's image, clipped to the image; None if it misses it.

    corners_cam (8, 3) in the camera frame (geometry.box_corners order). The box is first cut at the
    near plane (corners behind it are replaced by the points where the edges cross it), so a box that
    reaches behind the camera still covers the part of the image it really covers; mmdetection3d's
    converter drops such corners instead, which shrinks the 2D box of close objects. The projected
    hull is then intersected with the image rectangle [0, img_w] x [0, img_h]; a box whose hull only
    touches the image border (zero area) counts as missing it, as in that converter.
    """
    corners = np.asarray(corners_cam, dtype=np.float64).reshape(8, 3)
    q0, q1, keep = clip_segments_to_depth(corners[BOX_EDGES[:, 0]], corners[BOX_EDGES[:, 1]], near)
    if not keep.any():
        return None
    pts = np.concatenate([q0[keep], q1[keep]])  # (2K, 3) vertices of the clipped box
    uv, _ = project_points(K, pts)
    poly = convex_hull(uv)
    if len(poly) < 3:
        return None
    for axis, bound, below in ((0, 0.0, False), (0, float(img_w), True), (1, 0.0, False), (1, float(img_h), True)):
        poly = _clip_polygon(poly, axis, bound, below)
    if len(poly) < 3:
        return None
    x, y = poly[:, 0], poly[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))  # shoelace formula
    if area <= 0.0:
        return None
    bbox = np.concatenate([poly.min(axis=0), poly.max(axis=0)])
    # The clip's arithmetic can leave a vertex a rounding error outside the image (e.g. -7e-15).
    return np.clip(bbox, 0.0, [img_w, img_h, img_w, img_h])
