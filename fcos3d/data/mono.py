"""Mono-3D annotations of one camera image, and the LMDB record built from them (no devkit needed).

The one place that turns an image info (fcos3d.data.devkit.split_image_infos) into the record of
fcos3d/data/record.py; the packer and NuscenesMonoFromImage both call build_record, so the LMDB and
the JPEG folder give identical samples.
"""

from __future__ import annotations

import numpy as np

from ..boxes.frames import boxes_global_to_camera, global_to_camera_T
from ..boxes.geometry import box_corners, project_points, quat_to_rotmat
from ..boxes.image_box import image_bbox_of_corners
from .record import ANN_FIELDS, RECORD_FORMAT

__all__ = ["mono_annotations", "build_record"]


def mono_annotations(info: dict) -> dict:
    """The camera-frame annotations of the boxes one camera image sees (record.ANN_FIELDS + tokens).

    As mmdetection3d's nuScenes mono converter: global box -> ego -> camera; keep boxes whose centre
    is in front of the camera (depth > 0) and whose projected hull meets the real image; the 2D box
    is that hull clipped to the image (see boxes.image_box for the near-plane cut), centers2d the
    projection of the 3D centre, velocity the global [vx, vy] in the camera's [x, z].
    """
    b = info["boxes"]
    K = np.asarray(info["cam_intrinsic"], dtype=np.float64)  # (3, 3)
    img_h, img_w = info["img_shape"]
    centers_cam, rot_y, velo_cam = boxes_global_to_camera(
        b["centers"], b["rotations"], b["velocities"], info["cam2ego"], info["ego2global"]
    )  # (N, 3), (N,), (N, 2)
    R_g2c = global_to_camera_T(info["cam2ego"], info["ego2global"])[:3, :3]
    keep, bboxes = [], []
    for i in np.flatnonzero(centers_cam[:, 2] > 0):
        # Corners with the box's full rotation in the camera frame (the camera is not exactly level,
        # so this is not only rot_y), as the devkit draws them.
        corners = box_corners(centers_cam[i], b["wlh"][i], R_g2c @ quat_to_rotmat(b["rotations"][i]))  # (8, 3)
        bbox = image_bbox_of_corners(corners, K, img_w, img_h)
        if bbox is not None:
            keep.append(i)
            bboxes.append(bbox)
    keep = np.asarray(keep, dtype=np.int64)
    centers2d, depths = project_points(K, centers_cam[keep])  # (M, 2), (M,)
    fields = {
        "bboxes2d": np.asarray(bboxes).reshape(-1, 4),
        "centers2d": centers2d,
        "depths": depths,
        "centers3d": centers_cam[keep],
        "dims": b["wlh"][keep],
        "rot_y": rot_y[keep],
        "velo_cam": velo_cam[keep],
        "labels": b["labels"][keep],
        "attr_labels": b["attr_labels"][keep],
    }
    anns = {name: np.asarray(fields[name], dtype=dtype).reshape(shape) for name, (dtype, shape) in ANN_FIELDS.items()}
    anns["instance_tokens"] = [b["instance_tokens"][i] for i in keep]
    anns["ann_tokens"] = [b["ann_tokens"][i] for i in keep]
    return anns


def build_record(info: dict, img_bytes: bytes) -> dict:
    """The record of fcos3d/data/record.py for one camera image (anns as arrays of the contract's dtypes)."""
    return {
        "format": RECORD_FORMAT,
        "img": img_bytes,
        "img_shape": [int(v) for v in info["img_shape"]],
        "file_name": info["file_name"],
        "sample_token": info["sample_token"],
        "sample_data_token": info["sample_data_token"],
        "cam": info["cam"],
        "timestamp": int(info["timestamp"]),
        "cam_intrinsic": np.asarray(info["cam_intrinsic"], dtype=np.float64),
        "cam2ego": np.asarray(info["cam2ego"], dtype=np.float64),
        "ego2global": np.asarray(info["ego2global"], dtype=np.float64),
        "anns": mono_annotations(info),
    }
