"""Rigid transforms, quaternions, box corners and pinhole projection, in numpy only.

Conventions (the same as the nuScenes devkit, so boxes can round-trip through it):
- a pose is (translation [x, y, z] metres, rotation quaternion [w, x, y, z]) and maps its own frame
  into the parent frame: p_parent = R @ p_local + t;
- a 4x4 homogeneous matrix is used wherever poses are chained;
- box sizes are nuScenes' [width, length, height]; the box's local axes are x = length (heading),
  y = width (left), z = height (up);
- the camera frame is x right, y down, z forward. A camera-frame box is (x, y, z) of its geometric
  centre, dims [w, l, h] and ``rot_y``, the KITTI rotation about the camera y axis: the heading
  (the box's local x axis) points along (cos rot_y, 0, -sin rot_y) in the camera frame.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "quat_to_rotmat",
    "rotmat_to_quat",
    "yaw_to_quat",
    "quat_to_yaw",
    "pose_matrix",
    "invert_pose",
    "transform_points",
    "box_corners",
    "camera_box_corners",
    "project_points",
]


def quat_to_rotmat(q) -> np.ndarray:
    """Rotation matrix (3, 3) of a unit quaternion [w, x, y, z] (normalised here)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotmat_to_quat(R) -> np.ndarray:
    """Unit quaternion [w, x, y, z] with w >= 0 of a rotation matrix (Shepperd's method, stable)."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def yaw_to_quat(yaw: float) -> np.ndarray:
    """Quaternion [w, x, y, z] of a rotation by ``yaw`` radians about the z axis."""
    return np.array([np.cos(yaw / 2.0), 0.0, 0.0, np.sin(yaw / 2.0)])


def quat_to_yaw(q) -> float:
    """Heading angle about z of the rotated x axis (the devkit's ``quaternion_yaw``)."""
    v = quat_to_rotmat(q)[:, 0]
    return float(np.arctan2(v[1], v[0]))


def pose_matrix(translation, rotation) -> np.ndarray:
    """4x4 matrix of a pose: maps points of the pose's frame into its parent frame."""
    T = np.eye(4)
    T[:3, :3] = quat_to_rotmat(rotation)
    T[:3, 3] = np.asarray(translation, dtype=np.float64)
    return T


def invert_pose(T) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (R^T, -R^T t), exact rather than np.linalg.inv."""
    T = np.asarray(T, dtype=np.float64)
    inv = np.eye(4)
    inv[:3, :3] = T[:3, :3].T
    inv[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return inv


def transform_points(T, pts) -> np.ndarray:
    """Apply a 4x4 rigid transform to points (..., 3)."""
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ T[:3, :3].T + T[:3, 3]


# Unit-cube corner signs in the box's local (length, width, height) axes; corners 0-3 are the
# front face (+x), 4-7 the back face, so drawing code can mark the heading.
_CORNER_SIGNS = np.array(
    [
        [1, 1, 1],
        [1, -1, 1],
        [1, -1, -1],
        [1, 1, -1],
        [-1, 1, 1],
        [-1, -1, 1],
        [-1, -1, -1],
        [-1, 1, -1],
    ],
    dtype=np.float64,
)


def box_corners(center, wlh, R) -> np.ndarray:
    """Corners (8, 3) of a box whose local axes (length, width, height) map through R (3, 3)."""
    w, l, h = np.asarray(wlh, dtype=np.float64)
    local = _CORNER_SIGNS * np.array([l, w, h]) / 2.0  # (8, 3) in the box frame
    return local @ np.asarray(R).T + np.asarray(center, dtype=np.float64)


def rot_y_matrix(rot_y: float) -> np.ndarray:
    """Rotation taking a camera-frame box's local axes (length, width, up) into the camera frame.

    Local x (length) -> (cos r, 0, -sin r); local z (up) -> (0, -1, 0); local y = z cross x.
    """
    c, s = np.cos(rot_y), np.sin(rot_y)
    x_axis = np.array([c, 0.0, -s])
    z_axis = np.array([0.0, -1.0, 0.0])
    y_axis = np.cross(z_axis, x_axis)
    return np.stack([x_axis, y_axis, z_axis], axis=1)


def camera_box_corners(center, wlh, rot_y: float) -> np.ndarray:
    """Corners (8, 3) in the camera frame of a camera-frame box (centre, [w, l, h], rot_y)."""
    return box_corners(center, wlh, rot_y_matrix(rot_y))


def project_points(K, pts_cam) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection of camera-frame points (N, 3): pixel coordinates (N, 2) and depths (N,)."""
    pts = np.asarray(pts_cam, dtype=np.float64).reshape(-1, 3)
    depth = pts[:, 2]
    uvw = pts @ np.asarray(K, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = uvw[:, :2] / depth[:, None]
    return uv, depth
