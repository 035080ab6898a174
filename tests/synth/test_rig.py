"""The sensor rig (fcos3d/synth/rig.py): camera rotations, intrinsics scaled to the image size, and lidar
sweeps whose per-box counts are the points inside each box."""

from __future__ import annotations

import numpy as np

from fcos3d.data.classes import CAMERAS
from fcos3d.synth.rig import camera_rotation, lidar_points, make_calibration


def test_camera_rotation_looks_along_yaw_pitched_down_without_roll():
    R = camera_rotation(55.0, 2.0)
    assert np.allclose(R.T @ R, np.eye(3)) and np.isclose(np.linalg.det(R), 1.0)
    forward, right = R[:, 2], R[:, 0]
    assert np.isclose(np.degrees(np.arctan2(forward[1], forward[0])), 55.0)
    assert np.isclose(np.degrees(np.arcsin(-forward[2])), 2.0)
    assert right[2] == 0.0


def test_calibration_scales_intrinsics_to_the_image():
    full = make_calibration(np.random.default_rng(0), (1600, 900))
    half = make_calibration(np.random.default_rng(0), (800, 450))
    for ch in CAMERAS:
        assert np.allclose(half[ch]["K"][:2], full[ch]["K"][:2] / 2)
        assert np.allclose(half[ch]["cam2ego"], full[ch]["cam2ego"])
    assert full["LIDAR_TOP"]["K"] is None


def test_lidar_counts_are_the_points_in_each_box():
    lidar2ego = make_calibration(np.random.default_rng(0), (800, 450))["LIDAR_TOP"]["cam2ego"]
    boxes = [(np.array([10.0, 2.0, 0.85]), 0.3, (1.9, 4.5, 1.7)), (np.array([-6.0, -3.0, 0.9]), 1.2, (0.6, 0.7, 1.8))]
    pts, counts = lidar_points(np.random.default_rng(0), boxes, np.eye(4), lidar2ego)  # the ego at the origin
    assert pts.dtype == np.float32 and pts.shape == (sum(counts) + 1200, 5)
    assert ((pts[:, 4] >= 0) & (pts[:, 4] <= 31)).all()
    ego = pts[:, :3].astype(np.float64) @ lidar2ego[:3, :3].T + lidar2ego[:3, 3]
    for (centre, yaw, (w, l, h)), n in zip(boxes, counts):
        c, s = np.cos(yaw), np.sin(yaw)
        local = (ego - centre) @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        assert n >= 3 and (np.abs(local) <= [l / 2, w / 2, h / 2]).all(axis=1).sum() == n
