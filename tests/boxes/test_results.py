"""Camera boxes -> global -> cross-camera merge -> nuScenes result JSON: structure, rules and frames."""

import copy
import json

import numpy as np
import pytest

from fcos3d.boxes.frames import boxes_camera_to_global, boxes_global_to_camera
from fcos3d.boxes.geometry import pose_matrix, rotmat_to_quat, yaw_to_quat
from fcos3d.boxes.results import (
    GlobalBoxes,
    build_result_json,
    camera_boxes_to_global,
    merge_sample_cameras,
)
from fcos3d.data.classes import ATTRIBUTES, CLASS_ATTRIBUTES, CLASSES, DEFAULT_ATTRIBUTE, NO_ATTRIBUTE

# CAM_FRONT-like (looking along ego +x) and CAM_FRONT_LEFT-like (turned 55 degrees left) cameras.
_CAM_AXES = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=float)  # camera axes in a forward ego frame


def _camera(yaw_deg):
    R = np.array(
        [
            [np.cos(np.radians(yaw_deg)), -np.sin(np.radians(yaw_deg)), 0],
            [np.sin(np.radians(yaw_deg)), np.cos(np.radians(yaw_deg)), 0],
            [0, 0, 1],
        ]
    )
    return pose_matrix([1.5, 0.0, 1.6], rotmat_to_quat(R @ _CAM_AXES))


CAM_FRONT, CAM_FRONT_LEFT = _camera(0.0), _camera(55.0)
EGO2GLOBAL = pose_matrix([411.3, 1180.9, 0.0], yaw_to_quat(-1.1))


def _camera_boxes(rng, n):
    return dict(
        centers3d=np.c_[rng.uniform(-8, 8, n), rng.uniform(-0.5, 1.5, n), rng.uniform(4, 45, n)],
        dims=rng.uniform(0.5, 4.0, size=(n, 3)),
        rot_y=rng.uniform(-np.pi, np.pi, n),
        velo_cam=rng.normal(size=(n, 2)),
        scores=rng.uniform(0.05, 1.0, n),
        labels=rng.integers(0, len(CLASSES), n),
        attr_labels=rng.integers(0, len(ATTRIBUTES), n),
    )


def _build(per_sample, tokens, **kw):
    return build_result_json(per_sample, tokens, CLASSES, ATTRIBUTES, DEFAULT_ATTRIBUTE, **kw)


def test_camera_to_global_agrees_with_frames_and_round_trips():
    rng = np.random.default_rng(0)
    # Global boxes -> camera (the packer's way in) -> camera_boxes_to_global (the way out).
    centers = np.c_[rng.uniform(-30, 30, 25) + 411.3, rng.uniform(-30, 30, 25) + 1180.9, rng.uniform(0, 2, 25)]
    yaws = rng.uniform(-np.pi, np.pi, 25)
    rotations = np.stack([yaw_to_quat(y) for y in yaws])
    velocities = rng.normal(size=(25, 2))
    cc, ry, vc = boxes_global_to_camera(centers, rotations, velocities, CAM_FRONT, EGO2GLOBAL)
    dims = rng.uniform(0.5, 4, size=(25, 3))
    out = camera_boxes_to_global(
        cc, dims, ry, vc, np.ones(25), np.zeros(25, int), np.zeros(25, int), CAM_FRONT, EGO2GLOBAL
    )
    np.testing.assert_allclose(out.translation, centers, atol=1e-9)
    np.testing.assert_allclose(out.velocity, velocities, atol=1e-9)
    np.testing.assert_allclose(np.abs(np.sum(out.rotation * rotations, axis=1)), 1.0, atol=1e-9)
    np.testing.assert_allclose(np.angle(np.exp(1j * (out.yaw - yaws))), 0.0, atol=1e-9)
    np.testing.assert_array_equal(out.size, dims)
    # The same numbers as fcos3d.boxes.frames, which it wraps.
    t, r, v = boxes_camera_to_global(cc, ry, vc, CAM_FRONT, EGO2GLOBAL)
    np.testing.assert_array_equal(out.translation, t)
    np.testing.assert_array_equal(out.rotation, r)
    np.testing.assert_array_equal(out.velocity, v)


def test_class_range_filter_uses_ego_distance():
    cc = np.array([[0.0, 0.0, 10.0], [0.0, 0.0, 39.0], [0.0, 0.0, 45.0]])  # 11.5, 40.5 and 46.5 m ahead of ego
    labels = np.array([0, 0, 7])  # car (50 m), car, pedestrian (40 m)
    ranges = [50.0 if c != "pedestrian" else 40.0 for c in CLASSES]
    out = camera_boxes_to_global(
        cc,
        np.ones((3, 3)),
        np.zeros(3),
        np.zeros((3, 2)),
        np.ones(3),
        labels,
        np.zeros(3, int),
        CAM_FRONT,
        EGO2GLOBAL,
        class_range=ranges,
    )
    assert out.labels.tolist() == [0, 0]


def test_inputs_are_not_mutated():
    rng = np.random.default_rng(1)
    cam = _camera_boxes(rng, 30)
    cam["velo_cam"][3] = np.nan
    cam_copy = copy.deepcopy(cam)
    poses = (CAM_FRONT.copy(), EGO2GLOBAL.copy())
    a = camera_boxes_to_global(**cam, cam2ego=CAM_FRONT, ego2global=EGO2GLOBAL)
    b = camera_boxes_to_global(**cam, cam2ego=CAM_FRONT_LEFT, ego2global=EGO2GLOBAL)
    for k in cam:
        np.testing.assert_array_equal(cam[k], cam_copy[k])
    np.testing.assert_array_equal(CAM_FRONT, poses[0])
    np.testing.assert_array_equal(EGO2GLOBAL, poses[1])
    a_fields = {k: getattr(a, k).copy() for k in ("translation", "velocity", "scores", "labels")}
    merged = merge_sample_cameras([a, b], max_boxes=10)
    per_sample = {"s0": merged, "s1": a}
    result = _build(per_sample, ["s0", "s1", "s2"])
    for k, v in a_fields.items():
        np.testing.assert_array_equal(getattr(a, k), v)
    assert set(per_sample) == {"s0", "s1"} and per_sample["s1"] is a
    # GlobalBoxes keeps private read-only copies: writing through them fails instead of corrupting.
    with pytest.raises(ValueError):
        a.scores[0] = 0.0
    assert len(result["results"]["s1"]) == 30


def test_result_json_structure():
    rng = np.random.default_rng(2)
    boxes = camera_boxes_to_global(**_camera_boxes(rng, 12), cam2ego=CAM_FRONT, ego2global=EGO2GLOBAL)
    result = _build({"tok_a": boxes}, ["tok_a", "tok_b", "tok_c"], class_attributes=CLASS_ATTRIBUTES)
    assert result["meta"] == {
        "use_camera": True,
        "use_lidar": False,
        "use_radar": False,
        "use_map": False,
        "use_external": False,
    }
    assert list(result["results"]) == ["tok_a", "tok_b", "tok_c"]
    assert result["results"]["tok_b"] == [] and result["results"]["tok_c"] == []
    entries = result["results"]["tok_a"]
    assert len(entries) == 12
    scores = [e["detection_score"] for e in entries]
    assert scores == sorted(scores, reverse=True)
    for e in entries:
        assert set(e) == {
            "sample_token",
            "translation",
            "size",
            "rotation",
            "velocity",
            "detection_name",
            "detection_score",
            "attribute_name",
        }
        assert e["sample_token"] == "tok_a"
        assert (
            len(e["translation"]) == 3 and len(e["size"]) == 3 and len(e["rotation"]) == 4 and len(e["velocity"]) == 2
        )
        assert all(type(x) is float for key in ("translation", "size", "rotation", "velocity") for x in e[key])
        assert type(e["detection_score"]) is float
        assert e["detection_name"] in CLASSES
    # Strict JSON, and every box is accepted by the devkit's own box class.
    from nuscenes.eval.detection.data_classes import DetectionBox

    json.dumps(result, allow_nan=False)
    for e in entries:
        DetectionBox.deserialize(e)
    # Sizes are [w, l, h] as given; translation is the global centre.
    i = int(np.argmax(boxes.scores))
    assert entries[0]["size"] == boxes.size[i].tolist()
    assert entries[0]["translation"] == boxes.translation[i].tolist()


@pytest.mark.parametrize("explicit_table", [True, False])
def test_attribute_rules(explicit_table):
    cases = [  # (class, predicted attribute, reported attribute)
        ("car", "pedestrian.moving", DEFAULT_ATTRIBUTE["car"]),
        ("car", "", DEFAULT_ATTRIBUTE["car"]),
        ("car", "vehicle.stopped", "vehicle.stopped"),
        ("bus", "cycle.with_rider", DEFAULT_ATTRIBUTE["bus"]),
        ("truck", "vehicle.moving", "vehicle.moving"),
        ("bicycle", "cycle.with_rider", "cycle.with_rider"),
        ("motorcycle", "vehicle.parked", DEFAULT_ATTRIBUTE["motorcycle"]),
        ("pedestrian", "pedestrian.sitting_lying_down", "pedestrian.sitting_lying_down"),
        ("pedestrian", "", DEFAULT_ATTRIBUTE["pedestrian"]),
        ("traffic_cone", "vehicle.moving", ""),
        ("traffic_cone", "", ""),
        ("barrier", "pedestrian.standing", ""),
    ]
    n = len(cases)
    boxes = GlobalBoxes(
        translation=np.zeros((n, 3)),
        size=np.ones((n, 3)),
        rotation=np.tile([1.0, 0, 0, 0], (n, 1)),
        velocity=np.zeros((n, 2)),
        scores=np.linspace(1.0, 0.5, n),
        labels=[CLASSES.index(c) for c, _, _ in cases],
        attr_labels=[ATTRIBUTES.index(a) if a else NO_ATTRIBUTE for _, a, _ in cases],
    )
    result = _build({"s": boxes}, ["s"], class_attributes=CLASS_ATTRIBUTES if explicit_table else None)
    got = [(e["detection_name"], e["attribute_name"]) for e in result["results"]["s"]]
    assert got == [(c, want) for c, _, want in cases]


def test_velocity_nan_becomes_zero_and_cap_at_500():
    rng = np.random.default_rng(3)
    n = 700
    boxes = GlobalBoxes(
        translation=rng.normal(size=(n, 3)),
        size=np.ones((n, 3)),
        rotation=np.tile([1.0, 0, 0, 0], (n, 1)),
        velocity=np.where(rng.uniform(size=(n, 2)) < 0.3, np.nan, 1.0),
        scores=rng.uniform(size=n),
        labels=np.zeros(n, int),
        attr_labels=np.full(n, NO_ATTRIBUTE),
    )
    entries = _build({"s": boxes}, ["s"])["results"]["s"]
    assert len(entries) == 500
    # The 500 best, highest first.
    np.testing.assert_allclose([e["detection_score"] for e in entries], np.sort(boxes.scores)[::-1][:500])
    assert all(v in (0.0, 1.0) for e in entries for v in e["velocity"])
    assert any(e["velocity"] == [0.0, 0.0] for e in entries)


def test_tokens_outside_the_split_are_refused():
    with pytest.raises(ValueError, match="not in the split"):
        _build({"other": GlobalBoxes.empty()}, ["s"])
    with pytest.raises(ValueError, match="label"):
        bad = GlobalBoxes(np.zeros((1, 3)), np.ones((1, 3)), [[1.0, 0, 0, 0]], np.zeros((1, 2)), [0.5], [10], [0])
        _build({"s": bad}, ["s"])


def test_merge_dedupes_a_box_seen_by_two_cameras():
    # One global box in the overlap of the two cameras, written into each camera's frame.
    center = np.array([[420.0, 1170.0, 1.0]])  # ahead-left of the ego (yaw -1.1) at ~13 m
    rot = yaw_to_quat(0.4)[None]
    velo = np.array([[1.0, -2.0]])
    per_cam = []
    for cam, score in ((CAM_FRONT, 0.8), (CAM_FRONT_LEFT, 0.9)):
        cc, ry, vc = boxes_global_to_camera(center, rot, velo, cam, EGO2GLOBAL)
        # The two views of a real detector disagree a little: shift one copy by 10 cm.
        if score == 0.9:
            cc = cc + [0.1, 0.0, 0.0]
        per_cam.append(camera_boxes_to_global(cc, [[1.9, 4.5, 1.6]], ry, vc, [score], [0], [6], cam, EGO2GLOBAL))
    # A pedestrian at the same spot (another class: not suppressed) and a low-score box (dropped).
    ped = GlobalBoxes(center, [[0.6, 0.7, 1.7]], rot, velo, [0.5], [7], [2])
    low = GlobalBoxes(center + 5.0, [[1.0, 1.0, 1.0]], rot, velo, [0.01], [0], [6])
    merged = merge_sample_cameras(per_cam + [ped, low])
    assert len(merged) == 2
    assert merged.labels.tolist() == [0, 7]
    np.testing.assert_allclose(merged.scores, [0.9, 0.5])
    # The kept car is the higher-scoring (CAM_FRONT_LEFT) copy, still at the true place within 10 cm.
    assert np.linalg.norm(merged.translation[0] - center[0]) <= 0.1 + 1e-9
    # max_boxes keeps the best.
    assert merge_sample_cameras(per_cam + [ped], max_boxes=1).scores.tolist() == [0.9]
    assert len(merge_sample_cameras([])) == 0
