"""The 2D image box of a 3D box (near-plane cut, hull, clip to the image) against dense point sampling."""

import numpy as np

from fcos3d.boxes.geometry import box_corners, camera_box_corners, project_points, quat_to_rotmat
from fcos3d.boxes.image_box import clip_segments_to_depth, convex_hull, image_bbox_of_corners

K = np.array([[400.0, 0.0, 320.0], [0.0, 400.0, 180.0], [0.0, 0.0, 1.0]])
W, H = 640, 360


def _dense_bbox(center, wlh, R, near=0.1):
    """bbox of the projections of a dense grid of points inside the box, in front of the near plane
    and inside the image: the independent answer."""
    t = np.linspace(-0.5, 0.5, 41)
    g = np.stack(np.meshgrid(t, t, t, indexing="ij"), axis=-1).reshape(-1, 3)  # (41^3, 3) unit cube
    w, l, h = wlh
    pts = (g * np.array([l, w, h])) @ R.T + np.asarray(center)
    pts = pts[pts[:, 2] >= near]
    uv, _ = project_points(K, pts)
    uv = uv[(uv[:, 0] >= 0) & (uv[:, 0] <= W) & (uv[:, 1] >= 0) & (uv[:, 1] <= H)]
    return np.concatenate([uv.min(0), uv.max(0)]) if len(uv) else None


def test_box_fully_in_view_is_the_corner_bbox():
    corners = camera_box_corners([1.0, 0.5, 12.0], [1.9, 4.5, 1.6], 0.4)
    uv, _ = project_points(K, corners)
    np.testing.assert_allclose(image_bbox_of_corners(corners, K, W, H), np.r_[uv.min(0), uv.max(0)], atol=1e-9)


def test_clipped_boxes_match_dense_sampling():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(60):
        center = np.r_[rng.uniform(-8, 8), rng.uniform(-1, 2), rng.uniform(-1, 15)]
        wlh = rng.uniform(0.5, 5.0, size=3)
        q = rng.normal(size=4)
        R = quat_to_rotmat(q / np.linalg.norm(q))
        got = image_bbox_of_corners(box_corners(center, wlh, R), K, W, H)
        want = _dense_bbox(center, wlh, R)
        if want is None or np.any(want[2:] - want[:2] < 2.0):  # grid too coarse for slivers: skip
            continue
        assert got is not None
        # The dense grid lies inside the exact region, so it can only be smaller, by a grid step at most.
        assert np.all(got[:2] <= want[:2] + 1e-6) and np.all(got[2:] >= want[2:] - 1e-6)
        # ... and not by much: a grid step projects to up to ~10 px for boxes close to the camera.
        np.testing.assert_array_less(np.abs(got - want), np.full(4, 12.0))
        checked += 1
    assert checked >= 20


def test_box_behind_or_beside_the_camera_misses():
    assert image_bbox_of_corners(camera_box_corners([0.0, 0.0, -5.0], [2, 4, 1.5], 0.0), K, W, H) is None
    # Far to the right, outside the field of view (x / z = 3 > (640 - 320) / 400).
    assert image_bbox_of_corners(camera_box_corners([30.0, 0.0, 10.0], [2, 4, 1.5], 0.0), K, W, H) is None


def test_box_reaching_behind_the_camera_reaches_the_image_border():
    # A long box beside the camera, from 2 m behind to 8 m ahead: its near end leaves the image bottom-left.
    corners = camera_box_corners([-2.0, 1.0, 3.0], [2.0, 10.0, 1.5], np.pi / 2)
    bbox = image_bbox_of_corners(corners, K, W, H)
    assert bbox is not None and bbox[0] == 0.0 and bbox[3] == H


def test_clip_segments_and_hull():
    q0, q1, keep = clip_segments_to_depth([[0, 0, -1.0], [0, 0, -2.0]], [[0, 0, 3.0], [1, 0, -1.0]], near=1.0)
    assert keep.tolist() == [True, False]
    np.testing.assert_allclose(q0[0], [0, 0, 1.0])
    np.testing.assert_allclose(q1[0], [0, 0, 3.0])
    pts = np.array([[0, 0], [2, 0], [2, 2], [0, 2], [1, 1], [0.5, 1.5]], dtype=float)
    hull = convex_hull(pts)
    assert sorted(map(tuple, hull)) == [(0, 0), (0, 2), (2, 0), (2, 2)]
