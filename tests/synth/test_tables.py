"""The synthetic nuScenes writer (fcos3d/synth/tables.py): devkit-loadable tables, splits, tracks, lidar counts,
determinism, the CLI. The renderer's own tests are in test_paint.py, the world's in test_world.py.

Uses the session fixture ``synth_nusc`` (tests/conftest.py: 3 mini scenes x 3 key frames, 320x180, seed 0);
the other sets here are tiny and written to tmp_path.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from fcos3d.boxes.geometry import pose_matrix, quat_to_rotmat
from fcos3d.data.classes import CAMERAS, CATEGORY_TO_CLASS, CLASS_ATTRIBUTES, CLASSES
from fcos3d.data.splits import devkit_split_name
from fcos3d.errors import Fcos3dError
from fcos3d.synth import CLASS_RANGE, scene_plan, write_synthetic_nuscenes

TABLES = (
    "category",
    "attribute",
    "visibility",
    "instance",
    "sensor",
    "calibrated_sensor",
    "ego_pose",
    "log",
    "scene",
    "sample",
    "sample_data",
    "sample_annotation",
    "map",
)


@pytest.fixture(scope="module")
def nusc(synth_nusc):
    from nuscenes import NuScenes

    root, version = synth_nusc
    return NuScenes(version, str(root), verbose=False)


def _class_of(nusc, ann) -> str:
    return CATEGORY_TO_CLASS[ann["category_name"]]


def _split_scenes(nusc, version, split):
    from nuscenes.utils.splits import create_splits_scenes

    return set(create_splits_scenes()[devkit_split_name(version, split)])


def test_devkit_loads_every_table_and_file(nusc, synth_nusc):
    root, version = synth_nusc
    for t in TABLES:
        assert (root / version / f"{t}.json").is_file()
        assert len(getattr(nusc, t)) > 0, t
    assert len(nusc.scene) == 3 and len(nusc.sample) == 9
    for sample in nusc.sample:
        assert set(sample["data"]) == {*CAMERAS, "LIDAR_TOP"}
        for ch, token in sample["data"].items():
            sd = nusc.get("sample_data", token)
            assert sd["is_key_frame"] and sd["timestamp"] == sample["timestamp"]
            path = root / sd["filename"]
            assert path.is_file() and sd["filename"].startswith(f"samples/{ch}/")
            if ch == "LIDAR_TOP":
                assert path.stat().st_size % (5 * 4) == 0 and path.stat().st_size > 0
        img = cv2.imread(str(root / nusc.get("sample_data", sample["data"]["CAM_FRONT"])["filename"]))
        assert img.shape == (180, 320, 3)
    # Key frames every 0.5 s, in microseconds; chains are consistent.
    for scene in nusc.scene:
        tok, stamps = scene["first_sample_token"], []
        while tok:
            s = nusc.get("sample", tok)
            stamps.append(s["timestamp"])
            tok = s["next"]
        assert np.all(np.diff(stamps) == 500_000) and len(stamps) == scene["nbr_samples"]
    # The map PNG exists and covers every log.
    assert {t for m in nusc.map for t in m["log_tokens"]} == {log["token"] for log in nusc.log}
    for m in nusc.map:
        assert cv2.imread(str(root / m["filename"])) is not None


def test_camera_intrinsics_and_extrinsics_are_nuscenes_like(nusc):
    for cs in nusc.calibrated_sensor:
        ch = nusc.get("sensor", cs["sensor_token"])["channel"]
        if ch == "LIDAR_TOP":
            continue
        K = np.array(cs["camera_intrinsic"])
        fx_1600 = K[0, 0] * 1600 / 320
        assert (780 < fx_1600 < 840) if ch == "CAM_BACK" else (1230 < fx_1600 < 1300), ch
        R = quat_to_rotmat(cs["rotation"])
        optical_axis, down = R[:, 2], R[:, 1]
        assert abs(optical_axis[2]) < 0.05 and down[2] < -0.99  # looking level, y down
        yaw = np.degrees(np.arctan2(optical_axis[1], optical_axis[0]))
        expected = {
            "CAM_FRONT": 0,
            "CAM_FRONT_LEFT": 55,
            "CAM_FRONT_RIGHT": -55,
            "CAM_BACK": 180,
            "CAM_BACK_LEFT": 110,
            "CAM_BACK_RIGHT": -110,
        }[ch]
        assert abs((yaw - expected + 180) % 360 - 180) < 2, ch
        assert 1.4 < cs["translation"][2] < 1.7


def test_all_classes_in_train_and_val_inside_their_ranges(nusc, synth_nusc):
    _, version = synth_nusc
    seen = {"train": set(), "val": set()}
    for split in seen:
        names = _split_scenes(nusc, version, split)
        for sample in nusc.sample:
            if nusc.get("scene", sample["scene_token"])["name"] not in names:
                continue
            ego = nusc.get("ego_pose", nusc.get("sample_data", sample["data"]["LIDAR_TOP"])["ego_pose_token"])
            for tok in sample["anns"]:
                ann = nusc.get("sample_annotation", tok)
                cls = _class_of(nusc, ann)
                seen[split].add(cls)
                dist = np.hypot(*(np.array(ann["translation"][:2]) - ego["translation"][:2]))
                assert dist <= CLASS_RANGE[cls], (cls, dist)
    assert seen["train"] == set(CLASSES) and seen["val"] == set(CLASSES)


def test_objects_per_sample_sizes_and_attributes_are_plausible(nusc):
    counts = [len(s["anns"]) for s in nusc.sample]
    assert 12 <= np.mean(counts) <= 60
    attr_name = {a["token"]: a["name"] for a in nusc.attribute}
    for ann in nusc.sample_annotation:
        cls = _class_of(nusc, ann)
        attrs = [attr_name[t] for t in ann["attribute_tokens"]]
        assert len(attrs) == (1 if CLASS_ATTRIBUTES[cls] else 0) and set(attrs) <= set(CLASS_ATTRIBUTES[cls])
        w, l, h = ann["size"]
        assert 0.2 < w < 3.5 and 0.3 < l < 20 and 0.5 < h < 5, (cls, ann["size"])
        assert abs(ann["translation"][2] - h / 2) < 1e-6  # standing on the ground (z = 0)
        v = nusc.box_velocity(ann["token"])[:2]
        if (
            attrs
            and attrs[0]
            in (
                "vehicle.parked",
                "vehicle.stopped",
                "pedestrian.standing",
                "pedestrian.sitting_lying_down",
                "cycle.without_rider",
            )
            and np.isfinite(v).all()
        ):
            assert np.hypot(*v) < 0.05, (cls, attrs, v)
        if attrs and attrs[0] == "vehicle.moving" and np.isfinite(v).all():
            assert np.hypot(*v) > 0.3


def test_tracks_give_velocities(nusc):
    v = np.array([nusc.box_velocity(a["token"])[:2] for a in nusc.sample_annotation])
    assert np.isfinite(v).all(axis=1).mean() > 0.9
    assert (np.hypot(v[:, 0], v[:, 1]) > 1.0).sum() > 20  # things do move
    for inst in nusc.instance:
        tok, n = inst["first_annotation_token"], 0
        while tok:
            ann = nusc.get("sample_annotation", tok)
            assert ann["instance_token"] == inst["token"]
            n, last, tok = n + 1, tok, ann["next"]
        assert n == inst["nbr_annotations"] and last == inst["last_annotation_token"]


def test_num_lidar_pts_counts_points_in_the_box(nusc, synth_nusc):
    from nuscenes.utils.data_classes import LidarPointCloud
    from nuscenes.utils.geometry_utils import points_in_box

    root, _ = synth_nusc
    assert min(a["num_lidar_pts"] for a in nusc.sample_annotation) > 0
    for sample in nusc.sample:
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        pc = LidarPointCloud.from_file(str(root / sd["filename"]))
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        ep = nusc.get("ego_pose", sd["ego_pose_token"])
        T = pose_matrix(ep["translation"], ep["rotation"]) @ pose_matrix(cs["translation"], cs["rotation"])
        pts = pc.points[:3].T @ T[:3, :3].T + T[:3, 3]  # (M, 3) global
        for tok in sample["anns"]:
            inside = points_in_box(nusc.get_box(tok), pts.T).sum()
            assert inside == nusc.get("sample_annotation", tok)["num_lidar_pts"]


def test_detection_eval_of_the_ground_truth_scores_one(nusc, synth_nusc, tmp_path):
    from nuscenes.eval.detection.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    _, version = synth_nusc
    split = devkit_split_name(version, "val")
    names = _split_scenes(nusc, version, "val")
    attr_name = {a["token"]: a["name"] for a in nusc.attribute}
    results = {}
    for sample in nusc.sample:
        if nusc.get("scene", sample["scene_token"])["name"] not in names:
            continue
        boxes = []
        for tok in sample["anns"]:
            ann = nusc.get("sample_annotation", tok)
            v = nusc.box_velocity(tok)[:2]
            boxes.append(
                {
                    "sample_token": sample["token"],
                    "translation": ann["translation"],
                    "size": ann["size"],
                    "rotation": ann["rotation"],
                    "velocity": [0.0, 0.0] if np.isnan(v).any() else [float(x) for x in v],
                    "detection_name": _class_of(nusc, ann),
                    "detection_score": 1.0,
                    "attribute_name": attr_name[ann["attribute_tokens"][0]] if ann["attribute_tokens"] else "",
                }
            )
        results[sample["token"]] = boxes
    path = tmp_path / "results.json"
    meta = {"use_camera": True, "use_lidar": False, "use_radar": False, "use_map": False, "use_external": False}
    path.write_text(json.dumps({"meta": meta, "results": results}))
    metrics, _ = DetectionEval(
        nusc, config_factory("detection_cvpr_2019"), str(path), split, str(tmp_path / "eval"), verbose=False
    ).evaluate()
    assert metrics.nd_score >= 0.99
    assert all(ap > 0.99 for ap in metrics.mean_dist_aps.values())


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    kw = dict(version="v1.0-mini", scenes=2, samples_per_scene=2, image_size=(160, 90))
    write_synthetic_nuscenes(tmp_path / "a", seed=3, **kw)
    write_synthetic_nuscenes(tmp_path / "b", seed=3, **kw)
    write_synthetic_nuscenes(tmp_path / "c", seed=4, **kw)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) > 13 + 2 * 2 * 7
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a/v1.0-mini/sample_annotation.json").read_bytes() != (
        tmp_path / "c/v1.0-mini/sample_annotation.json"
    ).read_bytes()
    jpg = next(f for f in files if f.suffix == ".jpg")
    other = sorted((tmp_path / "c" / jpg.parent).glob("*.jpg"))[0]
    assert (tmp_path / "a" / jpg).read_bytes() != other.read_bytes()


def test_scene_plan_names_and_splits():
    from nuscenes.utils.splits import mini_train, mini_val, train, val

    names, split = scene_plan("v1.0-mini", 10)
    assert sorted(names) == sorted(mini_train + mini_val) and split == {"train": mini_train, "val": mini_val}
    for n in range(2, 11):
        names, split = scene_plan("v1.0-mini", n)
        assert len(names) == n and split["val"] and set(split["train"]) <= set(mini_train)
        assert scene_plan("v1.0-mini", n - 1)[0] == names[:-1]  # a smaller set is a prefix
    with pytest.raises(Fcos3dError, match="at most|too many"):
        scene_plan("v1.0-mini", 11)
    names, split = scene_plan("v1.0-trainval", 20)
    assert set(split["train"]) <= set(train) and set(split["val"]) <= set(val) and len(split["val"]) == 4
    names, split = scene_plan("v1.0-synth", 12)
    assert len(split["train"]) + len(split["val"]) == 12 and len(split["val"]) == 3


def test_custom_version_writes_splits_json(tmp_path):
    from nuscenes import NuScenes
    from nuscenes.utils.splits import create_splits_scenes

    summary = write_synthetic_nuscenes(
        tmp_path, version="v1.0-synth", scenes=2, samples_per_scene=2, image_size=(96, 64)
    )
    splits = json.loads((tmp_path / "v1.0-synth/splits.json").read_text())
    assert set(splits) == {devkit_split_name("v1.0-synth", "train"), devkit_split_name("v1.0-synth", "val")}
    assert not set(splits) & set(create_splits_scenes())
    nusc = NuScenes("v1.0-synth", str(tmp_path), verbose=False)
    assert sorted(splits["custom_train"] + splits["custom_val"]) == sorted(s["name"] for s in nusc.scene)
    assert summary["samples"] == 4 and summary["images"] == 4 * len(CAMERAS)


def test_progress_and_bad_arguments(tmp_path):
    calls = []
    write_synthetic_nuscenes(
        tmp_path, scenes=1, samples_per_scene=1, image_size=(64, 48), progress=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == (6, 6) and [d for d, _ in calls] == list(range(1, 7))
    with pytest.raises(Fcos3dError):
        write_synthetic_nuscenes(tmp_path, scenes=11)
    with pytest.raises(Fcos3dError):
        write_synthetic_nuscenes(tmp_path, scenes=1, samples_per_scene=0)
    with pytest.raises(Fcos3dError):
        write_synthetic_nuscenes(tmp_path, scenes=1, seed=-1)


def test_cli_synth(tmp_path):
    from click.testing import CliRunner

    from fcos3d.cli.main import cli

    out = tmp_path / "nusc"
    args = ["data", "synth", "--out", str(out), "--scenes", "2", "--samples-per-scene", "2", "--image-size", "320x180"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert len(json.loads((out / "v1.0-mini/sample.json").read_text())) == 4
    assert len(list((out / "samples/CAM_BACK").glob("*.jpg"))) == 4
