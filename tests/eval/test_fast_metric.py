"""The numpy nuScenes metric equals the devkit's DetectionEval: on random boxes (ties, NaN velocities, classes
without ground truth), on resampled splits, and end to end on the synthetic set through the devkit's loaders."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from random_boxes import devkit_metrics, random_gt, random_predictions, resampled  # noqa: E402

from fcos3d.eval.fast_metric import load_gt_boxes, load_pred_boxes, match_boxes  # noqa: E402
from fcos3d.eval.nuscenes_metric import evaluate_detections, get_nuscenes, resolve_eval_set  # noqa: E402

HEADLINE = ("NDS", "mAP", "mATE", "mASE", "mAOE", "mAVE", "mAAE")


def _assert_equal(fast: dict, dev: dict) -> None:
    """Every number bit for bit (NaN where the devkit has NaN)."""
    for k in HEADLINE:
        assert fast[k] == dev[k], (k, fast[k], dev[k])
    for c, aps in dev["class_AP_by_distance"].items():
        assert fast["class_AP_by_distance"][c] == pytest.approx(aps, abs=0, rel=0), c
    for c, errs in dev["class_TP_errors"].items():
        for k, v in errs.items():
            got = fast["class_TP_errors"][c][k]
            assert (math.isnan(v) and math.isnan(got)) or got == v, (c, k, got, v)


@pytest.mark.parametrize("seed", range(6))
def test_random_boxes_equal_the_devkit(seed):
    rng = np.random.default_rng(seed)
    gt = random_gt(rng)
    pred = random_predictions(rng, gt, ties=True)
    fast = match_boxes(gt, pred).metrics()
    _assert_equal(fast, devkit_metrics(gt, pred))
    assert 0.0 < fast["NDS"] < 1.0


def test_resampled_samples_equal_the_devkit_on_copies():
    """metrics(weights) = the devkit on a split holding sample s weights[s] times (what the bootstrap scores)."""
    rng = np.random.default_rng(10)
    gt = random_gt(rng, samples=10)
    pred = random_predictions(rng, gt, ties=False)
    split = match_boxes(gt, pred)
    for _ in range(3):
        w = rng.integers(0, 3, 10)
        _assert_equal(split.metrics(w), devkit_metrics(resampled(gt, w), resampled(pred, w)))
    assert split.metrics(np.ones(10, dtype=int)) == split.metrics()


def test_no_prediction_matches_scores_like_the_devkit():
    rng = np.random.default_rng(3)
    gt = random_gt(rng, samples=4)
    far = random_predictions(rng, gt, noise=200.0)  # nothing within 4 m of a ground-truth box
    fast = match_boxes(gt, far).metrics()
    _assert_equal(fast, devkit_metrics(gt, far))
    assert fast["mAP"] == 0.0 and fast["mATE"] == 1.0


@pytest.fixture(scope="module")
def synth_split(synth_nusc):
    dataroot, version = synth_nusc
    nusc = get_nuscenes(dataroot, version)
    return dataroot, version, resolve_eval_set(version, "val"), nusc


def _noisy_result(nusc, tokens, seed: int) -> dict:
    """The split's ground truth as predictions with noise, dropped boxes, wrong classes and false positives."""
    from nuscenes.eval.detection.utils import category_to_detection_name

    rng = np.random.default_rng(seed)
    results = {}
    for token in tokens:
        boxes = []
        for ann_token in nusc.get("sample", token)["anns"]:
            ann = nusc.get("sample_annotation", ann_token)
            name = category_to_detection_name(ann["category_name"])
            if name is None or rng.random() < 0.2:
                continue
            attrs = [nusc.get("attribute", t)["name"] for t in ann["attribute_tokens"]]
            yaw = rng.uniform(-np.pi, np.pi)
            boxes.append(
                {
                    "sample_token": token,
                    "translation": (np.array(ann["translation"]) + rng.normal(0, 0.8, 3)).tolist(),
                    "size": (np.array(ann["size"]) * rng.uniform(0.8, 1.2, 3)).tolist(),
                    "rotation": [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))],
                    "velocity": np.nan_to_num(nusc.box_velocity(ann_token)[:2] + rng.normal(0, 1, 2)).tolist(),
                    "detection_name": name,
                    "detection_score": float(np.round(rng.random(), 2)),
                    "attribute_name": attrs[0] if attrs else "",
                }
            )
            if rng.random() < 0.3:  # a far-off false positive of the same class
                fp = dict(boxes[-1], translation=(np.array(ann["translation"]) + [9.0, 0.0, 0.0]).tolist())
                boxes.append(dict(fp, detection_score=float(np.round(rng.random(), 2))))
        results[token] = boxes
    meta = {"use_camera": True, "use_lidar": False, "use_radar": False, "use_map": False, "use_external": False}
    return {"meta": meta, "results": results}


@pytest.mark.parametrize("seed", (0, 1))
def test_synthetic_split_equals_devkit_detection_eval(synth_split, tmp_path, seed):
    """The whole path: the devkit's loaders and filters (ego distance, class range) then our matching."""
    from fcos3d.eval.nuscenes_metric import split_sample_tokens

    dataroot, version, eval_set, nusc = synth_split
    result = _noisy_result(nusc, split_sample_tokens(dataroot, version, eval_set), seed)
    dev = evaluate_detections(result, dataroot, version, eval_set, tmp_path)
    gt = load_gt_boxes(nusc, eval_set)
    fast = match_boxes(gt, load_pred_boxes(result, nusc, eval_set)).metrics()
    _assert_equal(fast, dev)
    assert dev["NDS"] > 0.2  # a result with real matches, not a degenerate zero


def test_some_samples_score_as_the_devkit_on_those_alone(synth_split):
    """evaluate_on_samples (how align-bpu --limit scores the board and every stage): the devkit on a split that
    holds only those samples, every number bit for bit."""
    from fcos3d.eval.nuscenes_metric import evaluate_on_samples, split_sample_tokens

    dataroot, version, eval_set, nusc = synth_split
    tokens = split_sample_tokens(dataroot, version, eval_set)
    result = _noisy_result(nusc, tokens, 2)
    keep = tokens[::2]
    assert 0 < len(keep) < len(tokens)
    got = evaluate_on_samples({"r": result}, dataroot, version, eval_set, keep)["r"]
    gt, pred = load_gt_boxes(nusc, eval_set), load_pred_boxes(result, nusc, eval_set)
    inside = [[t in keep for t in b.sample_tokens] for b in (gt, pred)]
    _assert_equal(got, devkit_metrics(resampled(gt, inside[0]), resampled(pred, inside[1])))
    assert got["num_samples"] == len(keep) and got["num_pred_boxes"] == sum(len(result["results"][t]) for t in keep)
    whole = match_boxes(gt, pred).metrics()
    assert got["NDS"] != whole["NDS"]  # the other samples were left out, not merely present
    with pytest.raises(ValueError, match="not in the split"):
        evaluate_on_samples({"r": result}, dataroot, version, eval_set, [*keep, "no-such-token"])


def test_empty_result_scores_the_devkits_no_predictions(synth_split, tmp_path):
    from fcos3d.eval.nuscenes_metric import split_sample_tokens

    dataroot, version, eval_set, nusc = synth_split
    empty = {"meta": {}, "results": {t: [] for t in split_sample_tokens(dataroot, version, eval_set)}}
    fast = match_boxes(load_gt_boxes(nusc, eval_set), load_pred_boxes(empty, nusc, eval_set)).metrics()
    _assert_equal(fast, evaluate_detections(empty, dataroot, version, eval_set, tmp_path))
