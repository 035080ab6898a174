"""The sensor rig: nuScenes' six cameras and LIDAR_TOP with per-log calibration, which box centres the cameras
see (annotation) and the lidar sweep whose points in each box give num_lidar_pts."""

from __future__ import annotations

import numpy as np

from ..boxes.geometry import invert_pose, pose_matrix, rotmat_to_quat, yaw_to_quat
from ..data.classes import CAMERAS

# The nuScenes rig: position in the ego frame (x forward, y left, z up; metres), yaw (degrees, + = left)
# and fx at 1600x900. The side cameras look 55 / 110 degrees out; CAM_BACK has the wide lens.
CAMERA_RIG = {
    "CAM_FRONT": ((1.70, 0.016, 1.51), 0.0, 1266.4),
    "CAM_FRONT_RIGHT": ((1.55, -0.493, 1.50), -55.0, 1260.8),
    "CAM_FRONT_LEFT": ((1.52, 0.495, 1.51), 55.0, 1272.6),
    "CAM_BACK": ((0.03, 0.003, 1.58), 180.0, 809.2),
    "CAM_BACK_LEFT": ((1.04, 0.485, 1.59), 110.0, 1256.7),
    "CAM_BACK_RIGHT": ((1.01, -0.481, 1.56), -110.0, 1259.5),
}
LIDAR_POSE = ((0.943, 0.0, 1.84), -90.0)  # LIDAR_TOP: x right, y forward in the sensor frame
N_GROUND_RETURNS = 1200


def camera_rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Camera -> ego rotation for a camera looking at yaw (left of forward) and pitched down, no roll.

    Columns are the camera axes in the ego frame: x right, y down, z forward.
    """
    psi, p = np.radians(yaw_deg), np.radians(pitch_deg)
    z = np.array([np.cos(psi) * np.cos(p), np.sin(psi) * np.cos(p), -np.sin(p)])
    x = np.array([np.sin(psi), -np.cos(psi), 0.0])
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def make_calibration(rng, image_size) -> dict:
    """Per-log calibration: the nuScenes rig with small per-log differences; intrinsics scaled to image_size."""
    W, H = image_size
    sx, sy = W / 1600.0, H / 900.0
    cams = {}
    for name in CAMERAS:
        pos, yaw, fx = CAMERA_RIG[name]
        pos = np.asarray(pos) + rng.normal(0, 0.01, 3)
        R = camera_rotation(yaw + rng.normal(0, 0.3), 0.6 + rng.normal(0, 0.3))
        f = fx * (1 + rng.normal(0, 0.004))
        K = np.array(
            [[f * sx, 0, (800 + rng.normal(0, 8)) * sx], [0, f * sy, (480 + rng.normal(0, 10)) * sy], [0, 0, 1.0]]
        )
        cams[name] = {
            "translation": pos,
            "rotation": rotmat_to_quat(R),
            "K": K,
            "cam2ego": pose_matrix(pos, rotmat_to_quat(R)),
        }
    pos, yaw = LIDAR_POSE
    q = yaw_to_quat(np.radians(yaw))
    cams["LIDAR_TOP"] = {
        "translation": np.asarray(pos, dtype=np.float64),
        "rotation": q,
        "K": None,
        "cam2ego": pose_matrix(pos, q),
    }
    return cams


def visible_in_camera(centres: np.ndarray, ego2global, calib, image_size) -> np.ndarray:
    """(N,) bool: the centre projects inside at least one camera image, in front of it."""
    W, H = image_size
    seen = np.zeros(len(centres), dtype=bool)
    for name in CAMERAS:
        T = invert_pose(ego2global @ calib[name]["cam2ego"])
        pc = centres @ T[:3, :3].T + T[:3, 3]
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = pc @ calib[name]["K"].T
            u, v = uv[:, 0] / z, uv[:, 1] / z
        seen |= (z > 0.5) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    return seen


def lidar_points(rng, boxes, ego2global, lidar2ego):
    """A small LIDAR_TOP sweep (M, 5) float32 [x, y, z, intensity, ring] in the sensor frame.

    Ground returns around the car plus returns on the faces of each box that face the sensor, with a
    density that falls with distance; returns how many points fell in each box (num_lidar_pts).
    """
    lidar2global = ego2global @ lidar2ego
    sensor = lidar2global[:3, 3]
    pts = [_box_returns(rng, sensor, centre, yaw, wlh) for centre, yaw, wlh in boxes]
    counts = [len(p) for p in pts]
    ground = _ground_returns(rng, ego2global, N_GROUND_RETURNS)
    allpts = np.concatenate(pts + [ground]) if pts else ground
    g2l = invert_pose(lidar2global)
    local = allpts @ g2l[:3, :3].T + g2l[:3, 3]
    intensity = np.concatenate([rng.uniform(15, 100, sum(counts)), rng.uniform(1, 12, N_GROUND_RETURNS)])
    elev = np.degrees(np.arctan2(local[:, 2], np.linalg.norm(local[:, :2], axis=1)))
    ring = np.clip(np.round((elev + 30.67) / 1.33), 0, 31)  # 32 beams from -30.67 to +10.67 degrees
    out = np.concatenate([local, intensity[:, None], ring[:, None]], axis=1).astype(np.float32)
    return out, counts


def _box_returns(rng, sensor, centre, yaw, wlh) -> np.ndarray:
    """Global points (n, 3) on the faces of a box that face the sensor, more of them when it is near."""
    w, l, h = wlh
    dist = max(np.linalg.norm(centre[:2] - sensor[:2]), 1.0)
    n = int(np.clip(round(2500.0 * (l * h + w * h) / dist**2), 3, 400))
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    local_sensor = R.T @ (sensor - centre)
    half = np.array([l, w, h]) / 2
    # Faces towards the sensor, weighted by area; points 2 cm inside so they count as in the box.
    faces, areas = [], []
    for a in range(3):
        for sign in (1.0, -1.0):
            if sign * local_sensor[a] > half[a]:
                faces.append((a, sign))
                others = [k for k in range(3) if k != a]
                areas.append(4 * half[others[0]] * half[others[1]])
    if not faces:
        faces, areas = [(2, 1.0)], [1.0]
    pick = rng.choice(len(faces), size=n, p=np.asarray(areas) / sum(areas))
    local = rng.uniform(-1, 1, (n, 3)) * (half - 0.02)
    for k, (a, sign) in enumerate(faces):
        local[pick == k, a] = sign * (half[a] - 0.02)
    return local @ R.T + centre


def _ground_returns(rng, ego2global, n: int) -> np.ndarray:
    """Global points (n, 3) on the ground around the ego, denser near it."""
    r = np.exp(rng.uniform(np.log(2.5), np.log(60.0), n))
    th = rng.uniform(-np.pi, np.pi, n)
    # A little below z = 0, where the boxes' bottoms are, so that no ground return counts as inside a box.
    ground_ego = np.stack([r * np.cos(th), r * np.sin(th), np.full(n, -0.03)], axis=1)
    return ground_ego @ ego2global[:3, :3].T + ego2global[:3, 3]
