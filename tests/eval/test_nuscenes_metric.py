"""The nuScenes metric on a synthetic nuScenes: zeros for nothing, ~1 for the truth, mATE 0.3 for a 0.3 m shift."""

import json
import math

import numpy as np
import pytest

from fcos3d.errors import Fcos3dError
from fcos3d.eval.nuscenes_metric import (
    METRICS_TABLE_HEADER,
    evaluate_detections,
    format_metrics_table,
    get_nuscenes,
    split_sample_tokens,
)

CLASSES = (
    "car",
    "truck",
    "trailer",
    "bus",
    "construction_vehicle",
    "bicycle",
    "motorcycle",
    "pedestrian",
    "traffic_cone",
    "barrier",
)
META = {"use_camera": True, "use_lidar": False, "use_radar": False, "use_map": False, "use_external": False}


def _gt_result(nusc, tokens, shift_x=0.0) -> dict:
    """The split's ground truth written as predictions straight from the devkit tables (score 1)."""
    from nuscenes.eval.detection.utils import category_to_detection_name

    results = {}
    for token in tokens:
        boxes = []
        for ann_token in nusc.get("sample", token)["anns"]:
            ann = nusc.get("sample_annotation", ann_token)
            name = category_to_detection_name(ann["category_name"])
            if name is None:
                continue
            attrs = [nusc.get("attribute", t)["name"] for t in ann["attribute_tokens"]]
            velocity = np.nan_to_num(nusc.box_velocity(ann_token)[:2]).tolist()
            boxes.append(
                {
                    "sample_token": token,
                    "translation": [ann["translation"][0] + shift_x, *ann["translation"][1:]],
                    "size": ann["size"],
                    "rotation": ann["rotation"],
                    "velocity": velocity,
                    "detection_name": name,
                    "detection_score": 1.0,
                    "attribute_name": attrs[0] if attrs else "",
                }
            )
        results[token] = boxes
    return {"meta": META, "results": results}


@pytest.fixture(scope="module")
def split(synth_nusc):
    dataroot, version = synth_nusc
    return dataroot, version, "val", split_sample_tokens(dataroot, version, "val")


def test_nothing_detected_scores_zero(split, tmp_path):
    dataroot, version, eval_set, tokens = split
    empty = {"meta": META, "results": {t: [] for t in tokens}}
    m = evaluate_detections(empty, dataroot, version, eval_set, tmp_path)
    assert m["NDS"] == 0.0 and m["mAP"] == 0.0
    assert all(ap == 0.0 for ap in m["class_AP"].values()) and set(m["class_AP"]) == set(CLASSES)
    # The devkit's "no predictions" TP errors: 1 everywhere it defines them.
    assert [m[k] for k in ("mATE", "mASE", "mAOE", "mAVE", "mAAE")] == [1.0] * 5
    assert m["class_TP_errors"]["car"] == {"ATE": 1.0, "ASE": 1.0, "AOE": 1.0, "AVE": 1.0, "AAE": 1.0}
    assert math.isnan(m["class_TP_errors"]["traffic_cone"]["AOE"])
    assert m["num_pred_boxes"] == 0 and m["num_samples"] == len(tokens)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["NDS"] == 0.0 and written["class_TP_errors"]["traffic_cone"]["AOE"] is None


def test_ground_truth_as_predictions(split, tmp_path):
    dataroot, version, eval_set, tokens = split
    result = _gt_result(get_nuscenes(dataroot, version), tokens)
    assert sum(len(v) for v in result["results"].values()) > 0
    m = evaluate_detections(result, dataroot, version, eval_set, tmp_path)
    assert m["NDS"] >= 0.99, m
    assert m["mAP"] >= 0.99
    assert m["mATE"] <= 1e-6 and m["mASE"] <= 1e-6 and m["mAOE"] <= 1e-6
    # The same from the result file that evaluate_detections wrote, given as a path.
    m2 = evaluate_detections(tmp_path / "results_nusc.json", dataroot, version, eval_set, tmp_path / "again")
    assert m2["NDS"] == m["NDS"] and m2["class_AP"] == m["class_AP"]


def test_shift_by_30cm_gives_mate_030(split, tmp_path):
    dataroot, version, eval_set, tokens = split
    result = _gt_result(get_nuscenes(dataroot, version), tokens, shift_x=0.3)
    m = evaluate_detections(result, dataroot, version, eval_set, tmp_path)
    assert m["mATE"] == pytest.approx(0.30, abs=0.005)
    assert m["mAP"] >= 0.99  # 0.3 m is inside every matching distance (0.5 to 4 m)
    assert m["NDS"] == pytest.approx(0.97, abs=0.01)
    rows = format_metrics_table(m)
    names = [r[0] for r in rows]
    assert sorted(names[:-2]) == sorted(CLASSES) and names[-2:] == ["mean", "NDS"]
    assert all(len(r) == len(METRICS_TABLE_HEADER) for r in rows)
    assert rows[-2][2] == f"{m['mATE']:.4f}"
    assert rows[names.index("traffic_cone")][METRICS_TABLE_HEADER.index("AOE")] == "-"


def test_result_must_cover_the_split(split, tmp_path):
    dataroot, version, eval_set, tokens = split
    partial = {"meta": META, "results": {t: [] for t in tokens[1:]}}
    with pytest.raises(Fcos3dError, match="missing"):
        evaluate_detections(partial, dataroot, version, eval_set, tmp_path)
    with pytest.raises(Fcos3dError, match="does not exist"):
        evaluate_detections(tmp_path / "nope.json", dataroot, version, eval_set, tmp_path)


def test_nuscenes_is_loaded_once(split):
    dataroot, version, _, _ = split
    assert get_nuscenes(dataroot, version) is get_nuscenes(str(dataroot) + "/", version)
