"""Geometry and frame conversions: exact inverses and the camera conventions of fcos3d/boxes."""

import numpy as np

from fcos3d.boxes.frames import boxes_camera_to_global, boxes_global_to_camera
from fcos3d.boxes.geometry import (
    camera_box_corners,
    invert_pose,
    pose_matrix,
    project_points,
    quat_to_rotmat,
    rotmat_to_quat,
    yaw_to_quat,
)


def _random_quat(rng):
    q = rng.normal(size=4)
    return q / np.linalg.norm(q)


def test_quaternion_roundtrip():
    rng = np.random.default_rng(0)
    for _ in range(200):
        q = _random_quat(rng)
        q = q if q[0] >= 0 else -q
        np.testing.assert_allclose(rotmat_to_quat(quat_to_rotmat(q)), q, atol=1e-12)


def test_invert_pose():
    rng = np.random.default_rng(1)
    T = pose_matrix(rng.normal(size=3), _random_quat(rng))
    np.testing.assert_allclose(invert_pose(T) @ T, np.eye(4), atol=1e-12)


def test_camera_box_heading_convention():
    # rot_y = 0: length along camera +x; the front face (corners 0-3) has the larger x.
    c = camera_box_corners([0, 0, 10], [2.0, 4.0, 1.5], 0.0)
    assert np.allclose(c[:4, 0], 2.0) and np.allclose(c[4:, 0], -2.0)
    # rot_y = pi/2: heading along camera -z (towards the camera).
    c = camera_box_corners([0, 0, 10], [2.0, 4.0, 1.5], np.pi / 2)
    assert np.allclose(c[:4, 2], 8.0)
    # "up" is camera -y: corners 0, 1, 4, 5 are the top face.
    assert np.allclose(c[[0, 1, 4, 5], 1], -0.75)


def test_global_camera_roundtrip():
    rng = np.random.default_rng(2)
    # A level camera looking along ego +x, as nuScenes' CAM_FRONT (z forward, x right, y down).
    cam_rot = rotmat_to_quat(np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=float))
    cam2ego = pose_matrix([1.7, 0.0, 1.5], cam_rot)
    ego2global = pose_matrix([400.0, 1100.0, 0.0], yaw_to_quat(0.7))
    centers = rng.uniform(-30, 30, size=(20, 3))
    yaws = rng.uniform(-np.pi, np.pi, size=20)
    rots = np.stack([yaw_to_quat(y) for y in yaws])
    velos = rng.normal(size=(20, 2))
    cc, ry, vc = boxes_global_to_camera(centers, rots, velos, cam2ego, ego2global)
    c2, r2, v2 = boxes_camera_to_global(cc, ry, vc, cam2ego, ego2global)
    np.testing.assert_allclose(c2, centers, atol=1e-9)
    np.testing.assert_allclose(v2, velos, atol=1e-9)
    # Same rotation up to the quaternion's sign.
    dots = np.abs(np.sum(r2 * rots, axis=1))
    np.testing.assert_allclose(dots, 1.0, atol=1e-9)


def test_project_points():
    K = np.array([[1000.0, 0, 800], [0, 1000.0, 450], [0, 0, 1]])
    uv, d = project_points(K, [[1.0, 0.5, 10.0]])
    np.testing.assert_allclose(uv, [[900.0, 500.0]])
    np.testing.assert_allclose(d, [10.0])
