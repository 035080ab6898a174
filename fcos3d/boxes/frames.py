"""Boxes between the global frame (nuScenes annotations and results) and one camera's frame.

The way in is what the LMDB packer stores for each camera image; the way out is what every stage's
post-process uses before the nuScenes result JSON. Conventions: fcos3d/boxes/geometry.py.
"""

from __future__ import annotations

import numpy as np

from .geometry import invert_pose, quat_to_rotmat, transform_points

__all__ = ["global_to_camera_T", "camera_to_global_T", "boxes_global_to_camera", "boxes_camera_to_global"]


def camera_to_global_T(cam2ego, ego2global) -> np.ndarray:
    """4x4 transform camera -> global from the two 4x4 poses (camera->ego, ego->global)."""
    return np.asarray(ego2global) @ np.asarray(cam2ego)


def global_to_camera_T(cam2ego, ego2global) -> np.ndarray:
    """4x4 transform global -> camera (the inverse of camera_to_global_T)."""
    return invert_pose(camera_to_global_T(cam2ego, ego2global))


def boxes_global_to_camera(centers, rotations, velocities, cam2ego, ego2global):
    """Global boxes -> camera-frame boxes.

    centers (N, 3) global metres; rotations (N, 4) quaternions [w, x, y, z]; velocities (N, 2) global
    [vx, vy] m/s (NaN allowed). Returns centers_cam (N, 3), rot_y (N,) and velo_cam (N, 2) = the
    velocity's camera [x, z] components (mmdet3d's mono-3D convention).
    """
    T = global_to_camera_T(cam2ego, ego2global)
    R = T[:3, :3]
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 3)
    centers_cam = transform_points(T, centers)
    rot_y = np.empty(len(centers))
    for i, q in enumerate(np.asarray(rotations, dtype=np.float64).reshape(-1, 4)):
        heading = R @ quat_to_rotmat(q)[:, 0]  # the box's length axis in the camera frame
        rot_y[i] = np.arctan2(-heading[2], heading[0])
    v = np.asarray(velocities, dtype=np.float64).reshape(-1, 2)
    v3 = np.concatenate([v, np.zeros((len(v), 1))], axis=1) @ R.T  # (N, 3) in the camera frame
    return centers_cam, rot_y, v3[:, [0, 2]]


def boxes_camera_to_global(centers_cam, rot_y, velo_cam, cam2ego, ego2global):
    """Camera-frame boxes -> global boxes, the inverse of boxes_global_to_camera.

    The heading is taken back through the rotation and kept as a yaw about the global z axis (boxes
    are upright in nuScenes). Returns centers (N, 3), rotations (N, 4) [w, x, y, z], velocities
    (N, 2) global [vx, vy].
    """
    T = camera_to_global_T(cam2ego, ego2global)
    R = T[:3, :3]
    centers_cam = np.asarray(centers_cam, dtype=np.float64).reshape(-1, 3)
    rot_y = np.asarray(rot_y, dtype=np.float64).reshape(-1)
    centers = transform_points(T, centers_cam)
    heading_cam = np.stack([np.cos(rot_y), np.zeros_like(rot_y), -np.sin(rot_y)], axis=1)
    heading = heading_cam @ R.T  # (N, 3) global
    yaw = np.arctan2(heading[:, 1], heading[:, 0])
    rotations = np.stack([np.cos(yaw / 2), np.zeros_like(yaw), np.zeros_like(yaw), np.sin(yaw / 2)], axis=1)
    vc = np.asarray(velo_cam, dtype=np.float64).reshape(-1, 2)
    v3 = np.stack([vc[:, 0], np.zeros(len(vc)), vc[:, 1]], axis=1) @ R.T
    return centers, rotations, v3[:, :2]
