"""Synthetic camera-frame annotations for the model tests: a few boxes seen by a pinhole camera."""

from types import SimpleNamespace

import numpy as np
import pytest

from fcos3d.boxes.geometry import camera_box_corners, project_points


def make_intrinsic(width: int, height: int, focal: float = 200.0) -> np.ndarray:
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def make_anns(rng: np.random.Generator, K: np.ndarray, width: int, height: int, n: int = 6) -> dict:
    """n boxes with well separated projected centres; every field as in fcos3d/data/record.py."""
    us = np.linspace(0.12, 0.88, n) * width + rng.uniform(-4, 4, n)
    vs = rng.uniform(0.35, 0.75, n) * height
    zs = rng.uniform(6.0, 45.0, n)
    centers3d = np.stack([(us - K[0, 2]) * zs / K[0, 0], (vs - K[1, 2]) * zs / K[1, 1], zs], axis=1)
    dims = np.stack([rng.uniform(0.5, 2.5, n), rng.uniform(0.5, 5.0, n), rng.uniform(1.0, 3.0, n)], axis=1)
    rot_y = rng.uniform(-np.pi, np.pi, n)
    boxes = []
    for c, d, r in zip(centers3d, dims, rot_y):
        uv, _ = project_points(K, camera_box_corners(c, d, r))
        x1, y1 = np.clip(uv.min(0), 0, [width, height])
        x2, y2 = np.clip(uv.max(0), 0, [width, height])
        boxes.append([x1, y1, x2, y2])
    centers2d, depths = project_points(K, centers3d)
    velo = rng.normal(size=(n, 2))
    velo[0] = np.nan  # an annotation without velocity
    return {
        "bboxes2d": np.asarray(boxes, np.float32),
        "centers2d": centers2d.astype(np.float32),
        "depths": depths.astype(np.float32),
        "centers3d": centers3d.astype(np.float32),
        "dims": dims.astype(np.float32),
        "rot_y": rot_y.astype(np.float32),
        "velo_cam": velo.astype(np.float32),
        "labels": rng.integers(0, 10, n),
        "attr_labels": rng.integers(0, 9, n),
    }


@pytest.fixture
def scene():
    """(anns, K, width, height) of one 320x192 image."""
    width, height = 320, 192
    K = make_intrinsic(width, height)
    return make_anns(np.random.default_rng(0), K, width, height), K, width, height


@pytest.fixture
def synthetic():
    """The generators themselves, for tests that need other image sizes or several images."""
    return SimpleNamespace(make_anns=make_anns, make_intrinsic=make_intrinsic)
