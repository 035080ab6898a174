"""FCOS3DTarget: hand-checked targets at chosen points, level choice, ambiguity, yaw encoding."""

import math

import numpy as np
import torch

from fcos3d.model.targets import FCOS3DTarget, direction_bin, local_yaw

torch.set_num_threads(1)

STRIDES = (8, 16, 32, 64, 128)
SIZES = [(24, 40), (12, 20), (6, 10), (3, 5), (2, 3)]  # a 320x192 input


def _ann(box, center2d, depth=20.0, x=1.0, dims=(1.8, 4.5, 1.6), rot_y=0.3, velo=(1.0, -2.0), label=3, attr=5):
    return {
        "bboxes2d": np.array([box], np.float32),
        "centers2d": np.array([center2d], np.float32),
        "depths": np.array([depth], np.float32),
        "centers3d": np.array([[x, 0.5, depth]], np.float32),
        "dims": np.array([dims], np.float32),
        "rot_y": np.array([rot_y], np.float32),
        "velo_cam": np.array([velo], np.float32),
        "labels": np.array([label]),
        "attr_labels": np.array([attr]),
    }


def _merge(*anns):
    return {k: np.concatenate([a[k] for a in anns]) for k in anns[0]}


def _index(level, row, col):
    return sum(h * w for h, w in SIZES[:level]) + row * SIZES[level][1] + col


def test_hand_checked_point_targets():
    ann = _ann(box=(80, 40, 130, 90), center2d=(100, 60))
    t = FCOS3DTarget()(SIZES, [ann])
    labels, bbox, ctr = t["labels"][0], t["bbox"][0], t["centerness"][0]
    # Level 0 points are (8j + 4, 8i + 4): (100, 60) is row 7, col 12 and sits on the projected centre.
    i = _index(0, 7, 12)
    assert labels[i] == 3 and t["attr_labels"][0, i] == 5
    expected_yaw = 0.3 - math.atan2(1.0, 20.0)
    torch.testing.assert_close(bbox[i], torch.tensor([0, 0, 20.0, 1.8, 4.5, 1.6, expected_yaw, 1.0, -2.0]))
    assert ctr[i] == 1.0
    # (108, 68): 8 px right and down of the centre -> offset (1, 1) strides, centerness from the distance
    j = _index(0, 8, 13)
    torch.testing.assert_close(bbox[j, :2], torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(ctr[j], torch.tensor(math.exp(-2.5 * math.hypot(8, 8) / (1.414 * 8 * 1.5))))
    # (116, 60) is 16 px away: outside the 1.5-stride sampling square -> background
    k = _index(0, 7, 14)
    assert labels[k] == 10 and t["attr_labels"][0, k] == -1 and ctr[k] == 0
    # the 3x3 points around the centre are the level-0 positives
    lvl0 = labels[: 24 * 40].reshape(24, 40)
    assert (lvl0 != 10).sum() == 9 and (lvl0[6:9, 11:14] == 3).all()


def test_levels_follow_the_regress_ranges():
    big = _ann(box=(10, 5, 310, 190), center2d=(160, 96))
    t = FCOS3DTarget()
    pts, strides, ranges = t.points(SIZES)
    out = t(SIZES, [big])
    pos = out["labels"][0] < 10
    ltrb = torch.stack([pts[:, 0] - 10, pts[:, 1] - 5, 310 - pts[:, 0], 190 - pts[:, 1]], 1).max(1).values
    assert pos.any()
    assert ((ltrb[pos] >= ranges[pos, 0]) & (ltrb[pos] <= ranges[pos, 1])).all()
    assert strides[pos].min() >= 32  # nothing of this size on the fine levels
    assert (out["labels"][0, : 24 * 40 + 12 * 20] == 10).all()


def test_ambiguity_goes_to_the_nearest_projected_centre():
    a = _ann(box=(60, 30, 140, 100), center2d=(100, 60), label=1)
    b = _ann(box=(70, 35, 150, 105), center2d=(110, 66), label=2)
    target = FCOS3DTarget()
    labels = target(SIZES, [_merge(a, b)])["labels"][0]
    pos_a = target(SIZES, [a])["labels"][0] < 10
    pos_b = target(SIZES, [b])["labels"][0] < 10
    pts, _, _ = target.points(SIZES)
    da = torch.linalg.norm(pts - torch.tensor([100.0, 60.0]), dim=1)
    db = torch.linalg.norm(pts - torch.tensor([110.0, 66.0]), dim=1)
    both = pos_a & pos_b
    assert both.sum() > 5
    assert (labels[both] == torch.where(da[both] <= db[both], 1, 2)).all()
    assert (labels[pos_a & ~pos_b] == 1).all() and (labels[pos_b & ~pos_a] == 2).all()
    assert (labels[~pos_a & ~pos_b] == 10).all()


def test_batch_empty_image_and_nan_velocity():
    ann = _ann(box=(80, 40, 130, 90), center2d=(100, 60), velo=(np.nan, np.nan))
    empty = {k: v[:0] for k, v in ann.items()}
    out = FCOS3DTarget()(SIZES, [ann, empty])
    P = sum(h * w for h, w in SIZES)
    assert out["labels"].shape == (2, P) and out["bbox"].shape == (2, P, 9)
    assert (out["labels"][1] == 10).all() and (out["bbox"][1] == 0).all()
    pos = out["labels"][0] < 10
    assert torch.isnan(out["bbox"][0, pos, 7:]).all()
    assert not torch.isnan(out["bbox"][0, ~pos]).any()


def test_yaw_encoding():
    # straight ahead the local yaw is rot_y; 45 degrees to the right it is rot_y - pi/4; wrapped
    torch.testing.assert_close(
        local_yaw(torch.tensor([0.3]), torch.tensor([0.0]), torch.tensor([10.0])), torch.tensor([0.3])
    )
    torch.testing.assert_close(
        local_yaw(torch.tensor([0.3]), torch.tensor([5.0]), torch.tensor([5.0])), torch.tensor([0.3 - math.pi / 4])
    )
    torch.testing.assert_close(
        local_yaw(torch.tensor([3.0]), torch.tensor([-5.0]), torch.tensor([5.0])),
        torch.tensor([3.0 + math.pi / 4 - 2 * math.pi]),
    )
    # two bins, boundary at pi/4 and 5 pi/4
    yaws = torch.tensor([0.0, math.pi / 2, math.pi, -math.pi / 2, math.pi / 4 + 1e-4, math.pi / 4 - 1e-4])
    assert direction_bin(yaws).tolist() == [1, 0, 0, 1, 0, 1]
