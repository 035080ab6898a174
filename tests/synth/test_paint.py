"""The renderer (fcos3d/synth/paint.py, with models.py): objects are painted where the pinhole projection puts
them, nothing behind the camera is painted, and an object's front and back look different."""

from __future__ import annotations

import numpy as np

from fcos3d.boxes.geometry import box_corners, invert_pose, pose_matrix, project_points, rotmat_to_quat, yaw_to_quat
from fcos3d.synth import paint
from fcos3d.synth.models import build_model
from fcos3d.synth.rig import camera_rotation


def _view(W=320, H=180, f=200.0):
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    R = camera_rotation(0.0, 0.0)
    c2w = pose_matrix([0.0, 0.0, 1.5], rotmat_to_quat(R))
    return paint.CameraView(K, invert_pose(c2w), (W, H)), c2w


def _render_one(cls, attr, centre, yaw, wlh):
    view, c2w = _view()
    bg = np.zeros((180, 320, 3), np.uint8)
    model = build_model(cls, attr, wlh, look=1)
    o2w = pose_matrix(centre, yaw_to_quat(yaw))
    img, vis = paint.render_view(
        view, bg, (np.zeros((0, 4, 3)), np.zeros((0, 3))), [(model, o2w)], np.array([0.0, 0.0, 1.0])
    )
    return img, vis, view, o2w


def test_render_paints_where_the_box_projects():
    wlh = (1.9, 4.5, 1.7)
    img, vis, view, o2w = _render_one("car", "vehicle.moving", [12.0, 1.0, 0.85], 0.7, wlh)
    corners = box_corners(o2w[:3, 3], wlh, o2w[:3, :3])
    uv, depth = project_points(view.K, corners @ view.world_to_cam[:3, :3].T + view.world_to_cam[:3, 3])
    assert (depth > 0).all()
    mask = img.any(axis=2)
    rows, cols = np.nonzero(mask)
    # Top edge and side extent of the painted pixels match the projected box (the shadow is below it).
    assert abs(rows.min() - uv[:, 1].min()) <= 1.5
    upper = mask[: int(uv[:, 1].mean())]
    ucols = np.nonzero(upper.any(axis=0))[0]
    assert ucols.min() >= uv[:, 0].min() - 1.5 and ucols.max() <= uv[:, 0].max() + 1.5
    assert vis[0] == 1.0


def test_render_nothing_behind_the_camera_and_clips_at_the_near_plane():
    img, vis, _, _ = _render_one("bus", "vehicle.moving", [-10.0, 0.0, 1.7], 0.0, (2.9, 11.0, 3.4))
    assert not img.any() and np.isnan(vis[0])
    # A truck just right of the camera (world -y), reaching behind it: clipped, painted on the right only.
    img, vis, _, _ = _render_one("truck", "vehicle.parked", [1.0, -2.5, 1.4], 0.0, (2.5, 8.0, 2.8))
    assert img[:, 300:].all(axis=2).mean() > 0.5 and not img[:, :150].any()


def test_heading_is_visible_front_and_back_differ():
    a, *_ = _render_one("car", "vehicle.moving", [8.0, 0.0, 0.85], np.pi, (1.9, 4.5, 1.7))
    b, *_ = _render_one("car", "vehicle.moving", [8.0, 0.0, 0.85], 0.0, (1.9, 4.5, 1.7))
    assert np.abs(a.astype(int) - b.astype(int)).sum() > 1000  # headlights face us in a, tail lights in b
