"""decode.py undoes FCOS3DTarget: perfect logits made from encoded GT decode back to the GT boxes."""

import math

import numpy as np
import pytest
import torch

from fcos3d.boxes.decode import (
    HEAD_OUTPUTS,
    decode_outputs,
    decode_yaw,
    group_outputs,
    level_points,
    output_names,
)
from fcos3d.boxes.geometry import camera_box_corners, project_points
from fcos3d.model.targets import FCOS3DTarget

torch.set_num_threads(1)

STRIDES = (8, 16, 32, 64, 128)
WIDTH, HEIGHT = 320, 192
SIZES = [(-(-HEIGHT // s), -(-WIDTH // s)) for s in STRIDES]
BIG = 20.0  # logit magnitude of a "certain" class / bin


def _scene(seed, K, n=6):
    """n boxes with separated projected centres inside the image, every annotation field filled."""
    rng = np.random.default_rng(seed)
    uv = np.stack([np.linspace(0.1, 0.9, n) * WIDTH, rng.uniform(0.3, 0.8, n) * HEIGHT], 1)
    z = rng.uniform(4.0, 60.0, n)
    centers3d = np.linalg.solve(K, (np.concatenate([uv, np.ones((n, 1))], 1) * z[:, None]).T).T
    dims = rng.uniform([0.4, 0.4, 0.8], [3.0, 12.0, 4.0], (n, 3))
    rot_y = rng.uniform(-np.pi, np.pi, n)
    boxes = []
    for c, d, r in zip(centers3d, dims, rot_y):
        corners, _ = project_points(K, camera_box_corners(c, d, r))
        boxes.append(
            np.concatenate([np.clip(corners.min(0), 0, [WIDTH, HEIGHT]), np.clip(corners.max(0), 0, [WIDTH, HEIGHT])])
        )
    velo = rng.normal(size=(n, 2))
    velo[1] = np.nan
    return {
        "bboxes2d": np.asarray(boxes, np.float32),
        "centers2d": uv.astype(np.float32),
        "depths": z.astype(np.float32),
        "centers3d": centers3d.astype(np.float32),
        "dims": dims.astype(np.float32),
        "rot_y": rot_y.astype(np.float32),
        "velo_cam": velo.astype(np.float32),
        "labels": rng.integers(0, 10, n),
        "attr_labels": rng.integers(0, 9, n),
    }


def _perfect_logits(t):
    """Raw head outputs {head: [(C, H, W) per level]} that decode exactly to the targets of image 0."""
    raw = {h: [] for h in HEAD_OUTPUTS}
    start = 0
    for h, w in SIZES:
        sl = slice(start, start + h * w)
        start += h * w
        labels, bbox, ctr = t["labels"][0, sl], t["bbox"][0, sl].double(), t["centerness"][0, sl].double()
        pos = labels < 10
        cls = torch.full((h * w, 10), -BIG, dtype=torch.float64)
        cls[pos, labels[pos]] = BIG
        ctr = ctr.clamp(1e-9, 1 - 1e-9)
        fields = {
            "cls_score": cls,
            "offset": bbox[:, 0:2],
            "depth": torch.log(bbox[:, 2:3].clamp(min=1e-9)),  # depth = exp(raw)
            "size": torch.log(bbox[:, 3:6].clamp(min=1e-9)),  # dims = exp(raw)
            "rot": bbox[:, 6:7],
            "velo": bbox[:, 7:9],
            "dir_cls": torch.nn.functional.one_hot(t["dir_labels"][0, sl], 2).double() * BIG,
            "attr": torch.nn.functional.one_hot(t["attr_labels"][0, sl].clamp(min=0), 9).double() * BIG,
            "centerness": torch.where(pos, torch.log(ctr / (1 - ctr)), torch.full_like(ctr, -BIG))[:, None],
        }
        for name, v in fields.items():
            raw[name].append(v.T.reshape(-1, h, w).numpy())  # (C, H, W)
    return raw


@pytest.mark.parametrize("seed", range(4))
def test_encode_decode_roundtrip(seed):
    K = np.array([[210.0, 0.0, 150.0], [0.0, 190.0, 100.0], [0.0, 0.0, 1.0]])
    gt = _scene(seed, K)
    t = FCOS3DTarget(strides=STRIDES)(SIZES, [gt])
    num_pos = int((t["labels"] < 10).sum())
    out = decode_outputs(_perfect_logits(t), STRIDES, K, score_thr=0.05, nms_pre=1000)

    # every positive point decodes to one box, and nothing else passes the threshold
    assert len(out["scores"]) == num_pos
    assert np.all(np.diff(out["scores"]) <= 0)
    g = np.linalg.norm(out["centers3d"][:, None] - gt["centers3d"][None], axis=2).argmin(1)
    assert set(g) == set(range(len(gt["labels"])))  # every GT box is recovered
    np.testing.assert_allclose(out["centers3d"], gt["centers3d"][g], atol=1e-3)
    np.testing.assert_allclose(out["centers2d"], gt["centers2d"][g], atol=1e-3)
    np.testing.assert_allclose(out["dims"], gt["dims"][g], rtol=1e-5)
    yaw_err = np.angle(np.exp(1j * (out["rot_y"] - gt["rot_y"][g])))  # modulo 2 pi
    np.testing.assert_allclose(yaw_err, 0, atol=1e-4)
    np.testing.assert_allclose(out["velo_cam"], gt["velo_cam"][g], atol=1e-6)  # NaN where GT has none
    np.testing.assert_array_equal(out["labels"], gt["labels"][g])
    np.testing.assert_array_equal(out["attr_labels"], gt["attr_labels"][g])
    assert np.all((out["rot_y"] >= -np.pi) & (out["rot_y"] < np.pi))


def test_nms_pre_and_single_label():
    K = np.array([[200.0, 0, 160], [0, 200.0, 96], [0, 0, 1]])
    t = FCOS3DTarget(strides=STRIDES)(SIZES, [_scene(0, K)])
    raw = _perfect_logits(t)
    # a second class slightly below the first at every point: two candidates per point with multi_label
    for lvl in raw["cls_score"]:
        best = lvl.argmax(0)
        second = (best + 1) % 10
        np.put_along_axis(lvl, second[None], np.take_along_axis(lvl, best[None], 0) - 0.1, 0)
    multi = decode_outputs(raw, STRIDES, K, nms_pre=1000)
    single = decode_outputs(raw, STRIDES, K, nms_pre=1000, multi_label=False)
    assert len(multi["scores"]) == 2 * len(single["scores"])
    few = decode_outputs(raw, STRIDES, K, nms_pre=3, multi_label=False)
    assert len(few["scores"]) <= 3 * len(STRIDES)
    np.testing.assert_array_equal(few["scores"], np.sort(few["scores"])[::-1])


def test_decode_yaw_bins():
    # local yaw is known modulo pi: the bin picks the half turn, atan2(x, z) adds the viewing ray
    for a in np.linspace(-np.pi, np.pi, 13):
        bin_ = int(np.floor(np.mod(a - np.pi / 4, 2 * np.pi) / np.pi))
        for guess in (a, a + np.pi, a - np.pi):
            yaw = decode_yaw(guess, bin_, x=3.0, z=3.0)
            assert math.isclose(np.cos(yaw - (a + np.pi / 4)), 1.0, abs_tol=1e-9)


def test_names_grouping_and_points():
    names = output_names((8, 16))
    assert names[:3] == ["cls_score_s8", "cls_score_s16", "offset_s8"] and len(names) == 18
    grouped = group_outputs(list(range(18)), (8, 16))
    assert grouped["cls_score"] == [0, 1] and grouped["centerness"] == [16, 17]
    pts = level_points(2, 3, 16)
    np.testing.assert_array_equal(pts, [[8, 8], [24, 8], [40, 8], [8, 24], [24, 24], [40, 24]])
