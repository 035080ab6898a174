"""The nuScenes detection metric: a result JSON scored by the devkit's own DetectionEval (NDS, mAP, TP errors).

The devkit is silenced and cached per (dataroot, version); an all-empty result, on which the devkit
itself crashes, gets the devkit's own numbers for "no predictions" (zeros and TP errors of 1).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import Fcos3dError
from ..io import atomic_write_json

__all__ = [
    "evaluate_detections",
    "evaluate_on_samples",
    "format_metrics_table",
    "METRICS_TABLE_HEADER",
    "get_nuscenes",
    "clear_nuscenes_cache",
    "split_sample_tokens",
    "resolve_eval_set",
]

CONFIG_NAME = "detection_cvpr_2019"
# Devkit TP metric -> the short names of the nuScenes paper (the "m" prefix marks the class mean).
TP_NAMES = {"trans_err": "ATE", "scale_err": "ASE", "orient_err": "AOE", "vel_err": "AVE", "attr_err": "AAE"}
METRICS_TABLE_HEADER = ("class", "AP", "ATE", "ASE", "AOE", "AVE", "AAE")
METRICS_FILE = "metrics.json"
RESULT_FILE = "results_nusc.json"

_NUSC_CACHE: dict[tuple[str, str], object] = {}


@contextlib.contextmanager
def _quiet():
    """Swallow the devkit's prints (stdout) and tqdm bars (stderr, drawn even with verbose=False)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def get_nuscenes(dataroot, version: str):
    """The devkit's NuScenes for (dataroot, version), loaded once per process (loading takes seconds)."""
    from ..data.devkit import load_nuscenes

    key = (str(Path(dataroot).expanduser().resolve()), version)
    if key not in _NUSC_CACHE:
        with _quiet():
            _NUSC_CACHE[key] = load_nuscenes(dataroot, version)
    return _NUSC_CACHE[key]


def clear_nuscenes_cache() -> None:
    """Forget the cached NuScenes objects (e.g. after rewriting a dataset in place)."""
    _NUSC_CACHE.clear()


def resolve_eval_set(version: str, eval_set: str) -> str:
    """The devkit split name: our "train"/"val" are mapped for the version, devkit names pass through."""
    from ..data.splits import SPLITS, devkit_split_name

    return devkit_split_name(version, eval_set) if eval_set in SPLITS else eval_set


def split_sample_tokens(dataroot, version: str, eval_set: str) -> list[str]:
    """Tokens of the samples of a split, in sample.json order: the keys a result file must have."""
    from nuscenes.utils.splits import get_scenes_of_split

    nusc = get_nuscenes(dataroot, version)
    eval_set = resolve_eval_set(version, eval_set)
    try:
        with _quiet():
            names = set(get_scenes_of_split(eval_set, nusc))
    except (AssertionError, ValueError, KeyError, FileNotFoundError) as e:
        raise Fcos3dError(
            f"split {eval_set!r} is not known for {version} ({type(e).__name__}: {e}): use mini_val for a *mini "
            "version, val for *trainval, or a key of <dataroot>/<version>/splits.json"
        ) from None
    scene_names = {s["token"]: s["name"] for s in nusc.scene}
    return [s["token"] for s in nusc.sample if scene_names[s["scene_token"]] in names]


def _load_result(result) -> dict:
    if isinstance(result, dict):
        return result
    path = Path(result)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise Fcos3dError(f"result file {path} does not exist: run predict first (it writes the result JSON)") from None
    except ValueError as e:
        raise Fcos3dError(f"result file {path} is not valid JSON ({e}): re-run predict") from None


def _check_result(result: dict, split_tokens: list[str], eval_set: str) -> None:
    if "results" not in result or "meta" not in result:
        raise Fcos3dError(
            "the result has no 'results' or no 'meta' field: build it with fcos3d.boxes.results.build_result_json"
        )
    have, want = set(result["results"]), set(split_tokens)
    if have != want:
        missing, extra = want - have, have - want
        raise Fcos3dError(
            f"the result covers {len(have)} samples, split {eval_set!r} has {len(want)} "
            f"({len(missing)} missing, {len(extra)} not in the split): predict on exactly the split's samples, "
            "with an empty list where nothing was detected"
        )


def _placeholder_result(result: dict) -> dict:
    """A copy of an all-empty result with one box, only so that DetectionEval's loader accepts it."""
    token = next(iter(result["results"]))
    box = {
        "sample_token": token,
        "translation": [0.0, 0.0, 0.0],
        "size": [1.0, 1.0, 1.0],
        "rotation": [1.0, 0.0, 0.0, 0.0],
        "velocity": [0.0, 0.0],
        "detection_name": "car",
        "detection_score": 0.0,
        "attribute_name": "",
    }
    return {"meta": result["meta"], "results": {**result["results"], token: [box]}}


def _nan_to_none(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    return obj


def evaluate_detections(result, dataroot, version: str, eval_set: str, output_dir) -> dict:
    """Score a nuScenes detection result (a dict or a JSON path) with the devkit's DetectionEval.

    eval_set is a devkit split name (mini_val, val, custom_val, ...) or our "train"/"val". Returns
    {"NDS", "mAP", "mATE", "mASE", "mAOE", "mAVE", "mAAE", "class_AP" {class: AP},
    "class_AP_by_distance" {class: {"0.5": AP, ...}}, "class_TP_errors" {class: {"ATE", ...}},
    "eval_set", "version", "num_samples", "num_pred_boxes"} (floats; a TP error the devkit does not
    define, such as a traffic cone's orientation, is NaN) and writes it to output_dir/metrics.json
    (NaN as null). A result with no box at all scores 0 NDS/mAP and TP errors of 1, as the devkit
    scores a class without predictions.
    """
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.common.data_classes import EvalBoxes
    from nuscenes.eval.detection.evaluate import DetectionEval

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    nusc = get_nuscenes(dataroot, version)
    eval_set = resolve_eval_set(version, eval_set)
    split_tokens = split_sample_tokens(dataroot, version, eval_set)
    res = _load_result(result)
    _check_result(res, split_tokens, eval_set)
    num_pred = sum(len(v) for v in res["results"].values())

    with tempfile.TemporaryDirectory() as tmp, _quiet():
        if isinstance(result, dict):
            result_path = atomic_write_json(output_dir / RESULT_FILE, res, allow_nan=False)
        else:
            result_path = Path(result)
        if num_pred == 0:
            # The devkit cannot load a result without any box ("Invalid box type: None"): load a
            # one-box placeholder, then score an empty prediction set with the devkit's own code.
            result_path = atomic_write_json(Path(tmp) / RESULT_FILE, _placeholder_result(res))
        ev = DetectionEval(
            nusc,
            config=config_factory(CONFIG_NAME),
            result_path=str(result_path),
            eval_set=eval_set,
            output_dir=str(output_dir),
            verbose=False,
        )
        if num_pred == 0:
            ev.pred_boxes = EvalBoxes()
            for token in ev.gt_boxes.sample_tokens:
                ev.pred_boxes.add_boxes(token, [])
        dev_metrics, _ = ev.evaluate()

    summary = dev_metrics.serialize()
    metrics = {
        "NDS": float(summary["nd_score"]),
        "mAP": float(summary["mean_ap"]),
        **{f"m{short}": float(summary["tp_errors"][name]) for name, short in TP_NAMES.items()},
        "class_AP": {c: float(ap) for c, ap in summary["mean_dist_aps"].items()},
        "class_AP_by_distance": {
            c: {str(d): float(ap) for d, ap in aps.items()} for c, aps in summary["label_aps"].items()
        },
        "class_TP_errors": {
            c: {TP_NAMES[name]: float(v) for name, v in errs.items()} for c, errs in summary["label_tp_errors"].items()
        },
        "eval_set": eval_set,
        "version": version,
        "num_samples": len(split_tokens),
        "num_pred_boxes": num_pred,
    }
    atomic_write_json(output_dir / METRICS_FILE, _nan_to_none(metrics), indent=2, allow_nan=False)
    return metrics


def evaluate_on_samples(results: Mapping, dataroot, version: str, eval_set: str, sample_tokens: Sequence[str]) -> dict:
    """Each result ({name: a result dict or JSON path}, each covering the split) scored on the split's samples
    ``sample_tokens`` alone: the devkit's metric as if the split held only those samples (fast_metric's copy of
    DetectionEval, equal to it). Returns {name: {"NDS", "mAP", "mATE", ..., "class_AP", "num_samples",
    "num_pred_boxes"}}; the pred box count is over those samples."""
    from .fast_metric import metrics_on_samples

    nusc = get_nuscenes(dataroot, version)
    eval_set = resolve_eval_set(version, eval_set)
    loaded = {name: _load_result(r) for name, r in results.items()}
    split_tokens = split_sample_tokens(dataroot, version, eval_set)
    for name, r in loaded.items():
        try:
            _check_result(r, split_tokens, eval_set)
        except Fcos3dError as e:
            raise Fcos3dError(f"{name if isinstance(results[name], dict) else results[name]}: {e}") from None
    with _quiet():
        scored = metrics_on_samples(loaded, nusc, eval_set, sample_tokens)
    wanted = set(sample_tokens)
    for name, m in scored.items():
        m["num_samples"] = len(wanted)
        m["num_pred_boxes"] = sum(len(v) for t, v in loaded[name]["results"].items() if t in wanted)
    return scored


def format_metrics_table(metrics: dict) -> list[tuple[str, ...]]:
    """Rows for a table with METRICS_TABLE_HEADER: one per class, then "mean" and "NDS"; "-" for NaN."""

    def fmt(v) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"

    rows = []
    for cls, ap in metrics["class_AP"].items():
        errs = metrics["class_TP_errors"][cls]
        rows.append((cls, fmt(ap), *(fmt(errs[s]) for s in METRICS_TABLE_HEADER[2:])))
    rows.append(("mean", fmt(metrics["mAP"]), *(fmt(metrics[f"m{s}"]) for s in METRICS_TABLE_HEADER[2:])))
    rows.append(("NDS", fmt(metrics["NDS"]), *("" for _ in METRICS_TABLE_HEADER[2:])))
    return rows
