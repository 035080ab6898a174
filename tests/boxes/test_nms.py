"""Rotated BEV IoU and NMS against shapely: the IoU to 1e-6, the NMS index for index."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon

from fcos3d.boxes.nms import bev_corners, bev_iou, multiclass_rotated_nms, rotated_nms


def _shapely_iou(a, b) -> float:
    pa, pb = Polygon(bev_corners(a[None])[0]), Polygon(bev_corners(b[None])[0])
    union = pa.union(pb).area
    return pa.intersection(pb).area / union if union > 0 else 0.0


def _shapely_iou_matrix(A, B) -> np.ndarray:
    return np.array([[_shapely_iou(a, b) for b in B] for a in A]).reshape(len(A), len(B))


def _greedy_nms_shapely(boxes, scores, thr, max_out=None):
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep, suppressed = [], set()
    for r, i in enumerate(order):
        if i in suppressed:
            continue
        keep.append(i)
        if max_out is not None and len(keep) == max_out:
            break
        for j in order[r + 1 :]:
            if j not in suppressed and _shapely_iou(boxes[i], boxes[j]) > thr:
                suppressed.add(j)
    return np.asarray(keep, dtype=np.int64)


def _random_boxes(rng, n, extent=8.0, offset=(0.0, 0.0)):
    xy = rng.uniform(-extent, extent, size=(n, 2)) + np.asarray(offset)
    wl = rng.uniform(0.3, 5.0, size=(n, 2))
    yaw = rng.uniform(-np.pi, np.pi, size=(n, 1))
    return np.concatenate([xy, wl, yaw], axis=1)


def _special_cases():
    """Pairs that stress the clipping: identical, touching, nested, rotated by 90 degrees, crossing."""
    b = np.array([10.0, -3.0, 2.0, 4.0, 0.3])
    c, s = np.cos(0.3), np.sin(0.3)
    heading, left = np.array([c, s]), np.array([-s, c])
    pairs = [
        (b, b.copy()),  # identical
        (b, b + [0, 0, 0, 0, np.pi]),  # identical rectangle, heading flipped
        (b, np.r_[b[:2] + 4.0 * heading, b[2:]]),  # touching end to end
        (b, np.r_[b[:2] + 2.0 * left, b[2:]]),  # touching side by side
        (b, np.r_[b[:2] + 4.0 * heading + 2.0 * left, b[2:]]),  # touching at a corner
        (b, np.r_[b[:2], 1.0, 2.0, 0.3]),  # nested, same heading
        (b, np.r_[b[:2] + 0.2 * heading, 0.5, 0.7, 1.1]),  # nested, rotated
        (b, np.r_[b[:2], 2.0, 4.0, 0.3 + np.pi / 2]),  # rotated by 90 degrees: a cross
        (b, np.r_[b[:2], 4.0, 2.0, 0.3 + np.pi / 2]),  # w/l swapped and rotated by 90: the same box
        (b, np.r_[b[:2] + [1.0, 0.5], 3.0, 3.0, 0.3 + np.pi / 4]),  # octagon-shaped overlap
        (b, np.r_[b[:2] + 30.0, b[2:]]),  # far apart
        (b, np.r_[b[:2], 0.0, 4.0, 0.3]),  # zero width
        (np.r_[b[:2], 0.0, 0.0, 0.0], np.r_[b[:2], 0.0, 0.0, 0.0]),  # two points: empty union
    ]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def test_bev_iou_special_cases():
    A, B = _special_cases()
    ours = np.diag(bev_iou(A, B))
    ref = np.array([_shapely_iou(a, b) for a, b in zip(A, B)])
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours[[0, 1, 8]], 1.0, atol=1e-9)
    np.testing.assert_allclose(ours[[2, 3, 4, 10, 11, 12]], 0.0, atol=1e-9)
    np.testing.assert_allclose(ours[5], 0.25, atol=1e-9)
    np.testing.assert_allclose(ours[7], 4.0 / 12.0, atol=1e-9)


def test_bev_iou_random_matrix_matches_shapely():
    rng = np.random.default_rng(0)
    # Far from the origin, as boxes in the nuScenes global frame are.
    A = _random_boxes(rng, 40, offset=(600.0, 1600.0))
    B = _random_boxes(rng, 35, offset=(600.0, 1600.0))
    ours = bev_iou(A, B)
    assert ours.shape == (40, 35)
    assert (ours > 0).sum() > 100  # the test must exercise real overlaps
    np.testing.assert_allclose(ours, _shapely_iou_matrix(A, B), atol=1e-6, rtol=0)
    # Symmetric, and the IoU of a box with itself is 1.
    np.testing.assert_allclose(bev_iou(B, A), ours.T, atol=1e-9)
    np.testing.assert_allclose(np.diag(bev_iou(A, A)), 1.0, atol=1e-9)


_coord = st.floats(-5.0, 5.0, allow_nan=False)
_size = st.floats(0.05, 6.0, allow_nan=False)
_yaw = st.one_of(st.floats(-np.pi, np.pi, allow_nan=False), st.sampled_from([0.0, np.pi / 2, -np.pi / 2, np.pi]))
_box = st.tuples(_coord, _coord, _size, _size, _yaw)


@settings(max_examples=300, deadline=None)
@given(_box, _box)
def test_bev_iou_matches_shapely_hypothesis(a, b):
    a, b = np.array(a), np.array(b)
    ours = bev_iou(a[None], b[None])[0, 0]
    assert abs(ours - _shapely_iou(a, b)) <= 1e-6
    assert 0.0 <= ours <= 1.0 + 1e-12


def test_bev_iou_empty_and_bad_input():
    assert bev_iou(np.zeros((0, 5)), np.zeros((3, 5))).shape == (0, 3)
    with pytest.raises(ValueError, match="shape"):
        bev_iou(np.zeros((2, 4)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="NaN"):
        bev_iou(np.full((1, 5), np.nan), np.zeros((1, 5)))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr", [0.05, 0.3, 0.7])
def test_rotated_nms_equals_greedy_shapely(seed, thr):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, 60, extent=6.0)
    # Duplicates and exact copies rotated by 90 degrees with w/l swapped (the same rectangle).
    boxes[50:55] = boxes[:5]
    boxes[55:60] = boxes[5:10][:, [0, 1, 3, 2, 4]] + [0, 0, 0, 0, np.pi / 2]
    # Coarse scores create ties: the stable order (input index) must break them the same way.
    scores = np.round(rng.uniform(size=60), 1)
    ours = rotated_nms(boxes, scores, thr)
    np.testing.assert_array_equal(ours, _greedy_nms_shapely(boxes, scores, thr))
    np.testing.assert_array_equal(
        rotated_nms(boxes, scores, thr, max_out=7), _greedy_nms_shapely(boxes, scores, thr, 7)
    )


def test_rotated_nms_inputs_unchanged_and_edge_cases():
    rng = np.random.default_rng(7)
    boxes = _random_boxes(rng, 20)
    scores = rng.uniform(size=20)
    b0, s0 = boxes.copy(), scores.copy()
    rotated_nms(boxes, scores, 0.3)
    np.testing.assert_array_equal(boxes, b0)
    np.testing.assert_array_equal(scores, s0)
    assert rotated_nms(np.zeros((0, 5)), np.zeros(0), 0.3).shape == (0,)
    assert rotated_nms(boxes, scores, 0.3, max_out=0).shape == (0,)
    # Identical boxes: only the best survives; touching boxes (IoU 0) both survive.
    same = np.repeat(boxes[:1], 4, axis=0)
    assert rotated_nms(same, [0.1, 0.9, 0.5, 0.9], 0.5).tolist() == [1]
    touching = np.array([[0.0, 0.0, 2.0, 4.0, 0.0], [4.0, 0.0, 2.0, 4.0, 0.0]])
    assert rotated_nms(touching, [0.5, 0.6], 0.0).tolist() == [1, 0]


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_rotated_nms(seed):
    rng = np.random.default_rng(100 + seed)
    boxes = _random_boxes(rng, 80, extent=6.0)
    scores = np.round(rng.uniform(size=80), 2)
    labels = rng.integers(0, 4, size=80)
    ours = multiclass_rotated_nms(boxes, scores, labels, 0.2, max_out=None)
    # Reference: brute force per class, merged by descending score, ties by input index.
    ref = []
    for c in range(4):
        idx = np.flatnonzero(labels == c)
        ref.extend(idx[_greedy_nms_shapely(boxes[idx], scores[idx], 0.2)])
    ref = sorted(ref, key=lambda i: (-scores[i], i))
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(multiclass_rotated_nms(boxes, scores, labels, 0.2, max_out=10), ref[:10])
    # A box of another class is never suppressed: two identical boxes with different labels both stay.
    two = np.repeat(boxes[:1], 2, axis=0)
    assert sorted(multiclass_rotated_nms(two, [0.5, 0.4], [0, 1], 0.1, 100).tolist()) == [0, 1]
