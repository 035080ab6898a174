"""compare-stages: the paired bootstrap, detection agreement, and the command end to end on the synthetic set."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))

from random_boxes import random_gt, random_predictions  # noqa: E402

from fcos3d.eval.fast_metric import match_boxes  # noqa: E402
from fcos3d.eval.paired import detection_agreement, paired_bootstrap  # noqa: E402

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "fcos3d_efficientnetb0_synthetic.py"


@pytest.fixture(scope="module")
def two_stages():
    """A "float" and a "qat" stage on the same 16 random samples (qat: float's boxes moved and rescored)."""
    from nuscenes.eval.common.data_classes import EvalBoxes

    rng = np.random.default_rng(0)
    gt = random_gt(rng, samples=16)
    pred = random_predictions(rng, gt, ties=False)
    moved = EvalBoxes()
    for token in pred.sample_tokens:
        boxes = []
        for b in pred.boxes[token]:
            ser = b.serialize()
            ser["translation"] = (np.array(ser["translation"]) + rng.normal(0, 0.4, 3)).tolist()
            ser["detection_score"] = float(np.clip(ser["detection_score"] + rng.normal(0, 0.05), 0, 1))
            boxes.append(type(b).deserialize(ser))
        moved.add_boxes(token, boxes)
    return match_boxes(gt, pred), match_boxes(gt, moved)


def test_identical_stages_have_a_zero_gap_in_every_round(two_stages):
    ref, _ = two_stages
    units = np.arange(ref.num_samples) // 2  # 8 units of 2 samples
    boot = paired_bootstrap({"float": ref, "same": ref}, units, rounds=100, seed=1)
    for k in ("NDS", "mAP", "mAOE"):
        assert boot["gap"]["same"][k] == 0.0
        assert boot["interval"]["same"][k] == [0.0, 0.0]
        assert np.all(boot["rounds"]["same"][k] == 0.0)


def test_interval_contains_the_gap_and_repeats_for_a_seed(two_stages):
    ref, other = two_stages
    units = np.arange(ref.num_samples)
    boot = paired_bootstrap({"float": ref, "qat": other}, units, rounds=150, seed=3)
    for k in ("NDS", "mAP"):
        lo, hi = boot["interval"]["qat"][k]
        assert lo < boot["gap"]["qat"][k] < hi and hi - lo > 1e-4
    assert boot["gap"]["qat"]["NDS"] == boot["point"]["qat"]["NDS"] - boot["point"]["float"]["NDS"]
    again = paired_bootstrap({"float": ref, "qat": other}, units, rounds=150, seed=3)
    assert again["interval"] == boot["interval"]
    with pytest.raises(ValueError, match="at least 2"):
        paired_bootstrap({"float": ref, "qat": other}, np.zeros(ref.num_samples, dtype=int), rounds=10)


def test_agreement_is_one_for_the_same_detections_and_drops_for_moved_ones(two_stages):
    ref, other = two_stages
    same = detection_agreement(ref, ref)
    assert same["share"] == 1.0 and same["matched"] == same["total"] > 0 and same["mean_abs_score_drift"] == 0.0
    moved = detection_agreement(ref, other, max_dist=1.0)
    assert 0.5 < moved["share"] < 1.0  # moved by ~0.55 m in x-y on average: most stay within 1 m
    assert 0.0 < moved["mean_abs_score_drift"] < 0.1
    assert detection_agreement(ref, other, max_dist=0.1)["share"] < moved["share"]
    high = detection_agreement(ref, ref, min_score=0.5)
    assert 0 < high["total"] < same["total"]


# -- the command end to end ------------------------------------------------------------------------------------


def _result_from_gt(nusc, tokens, rng, shift: float = 0.0) -> dict:
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
            boxes.append(
                {
                    "sample_token": token,
                    "translation": (np.array(ann["translation"]) + [shift, 0, 0] + rng.normal(0, 0.3, 3)).tolist(),
                    "size": ann["size"],
                    "rotation": ann["rotation"],
                    "velocity": np.nan_to_num(nusc.box_velocity(ann_token)[:2]).tolist(),
                    "detection_name": name,
                    "detection_score": float(rng.uniform(0.3, 1.0)),
                    "attribute_name": attrs[0] if attrs else "",
                }
            )
        results[token] = boxes
    return {"meta": {"use_camera": True}, "results": results}


@pytest.fixture(scope="module")
def work(synth_nusc, synth_lmdb, tmp_path_factory):
    """A ckpt_dir whose predict/<stage>/results_nusc.json exist (float, qat; int_infer = qat): no checkpoint."""
    from fcos3d.eval.nuscenes_metric import get_nuscenes, split_sample_tokens

    root, version = synth_nusc
    tokens = split_sample_tokens(root, version, "val")
    nusc = get_nuscenes(root, version)
    w = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(0)
    for stage, shift in (("float", 0.0), ("qat", 0.6)):
        (w / "predict" / stage).mkdir(parents=True)
        (w / "predict" / stage / "results_nusc.json").write_text(json.dumps(_result_from_gt(nusc, tokens, rng, shift)))
    shutil.copytree(w / "predict" / "qat", w / "predict" / "int_infer")
    return w, synth_lmdb


def _run(argv, monkeypatch, capsys):
    from fcos3d.cli import main as main_cli

    monkeypatch.setattr(sys, "argv", ["fcos3d", *argv])
    with pytest.raises(SystemExit) as exc:
        main_cli.main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_compare_stages_command(work, monkeypatch, capsys):
    w, lmdb = work
    sets = ["--set", f"data_root={lmdb}", "--set", f"ckpt_dir={w}"]
    code, out, err = _run(
        [
            "compare-stages",
            "--config",
            str(CONFIG),
            *sets,
            "--unit",
            "sample",
            "--bootstrap",
            "100",
            "--out",
            str(w / "c"),
        ],
        monkeypatch,
        capsys,
    )
    assert code in (0, None), err
    assert "stages vs float" in out and "skipped calibration" in out
    data = json.loads((w / "c" / "compare.json").read_text())
    assert list(data["stages"]) == ["float", "qat", "int_infer"]
    assert data["split"]["unit"] == "sample" and data["split"]["units"] == data["split"]["samples"] >= 2
    qat, intr = data["stages"]["qat"], data["stages"]["int_infer"]
    assert intr["gap"] == qat["gap"] and intr["NDS"] == qat["NDS"]  # the same result file: the same numbers
    assert qat["gap"]["NDS"]["lo"] <= qat["gap"]["NDS"]["value"] <= qat["gap"]["NDS"]["hi"]
    assert qat["gap"]["NDS"]["value"] < 0  # shifted by 0.6 m: worse translation, fewer 0.5 m matches
    assert 0.0 < qat["agreement"]["share"] < 1.0
    assert (w / "c" / "compare.png").stat().st_size > 10_000
    # one val scene: a scene bootstrap is impossible, said in one line (exit 2)
    code, _, err = _run(["compare-stages", "--config", str(CONFIG), *sets, "--out", str(w / "c2")], monkeypatch, capsys)
    assert code == 2 and "use --unit sample" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(
        ["compare-stages", "--config", str(CONFIG), *sets, "--stages", "float,board"], monkeypatch, capsys
    )
    assert code == 2 and "--board-results" in err
    # the board: align-bpu's folder (result + report); a run with --limit is refused
    board = w / "align_bpu"
    board.mkdir(exist_ok=True)
    shutil.copy(w / "predict" / "qat" / "results_nusc.json", board / "results_nusc.json")
    (board / "align_report.json").write_text(json.dumps({"images": 1}))
    argv = ["compare-stages", "--config", str(CONFIG), *sets, "--stages", "float,board", "--unit", "sample"]
    code, _, err = _run([*argv, "--board-results", str(board / "results_nusc.json")], monkeypatch, capsys)
    assert code == 2 and "align-bpu ran on 1 of the 18 val images" in err
    (board / "align_report.json").write_text(json.dumps({"images": 18}))
    out_b = ["--out", str(w / "cb"), "--bootstrap", "20"]
    code, _, err = _run([*argv, "--board-results", str(board / "results_nusc.json"), *out_b], monkeypatch, capsys)
    assert code in (0, None), err
    assert json.loads((w / "cb" / "compare.json").read_text())["stages"]["board"]["NDS"] == qat["NDS"]
    code, _, err = _run(
        ["compare-stages", "--config", str(CONFIG), *sets, "--stages", "float,qta"], monkeypatch, capsys
    )
    assert code == 2 and "--stages 'qta'" in err
    empty = ["--set", f"data_root={lmdb}", "--set", f"ckpt_dir={w / 'nothing'}"]
    code, _, err = _run(["compare-stages", "--config", str(CONFIG), *empty], monkeypatch, capsys)
    assert code == 2 and "fcos3d train --stage float" in err and len(err.strip().splitlines()) == 1


def test_real_predictions_scored_like_the_devkit(synth_lmdb, tmp_path):
    """A trained (tiny) model's own predictions: compare-stages predicts float (no result file yet) and its
    fast metric equals the devkit's numbers that predict wrote."""
    import torch
    from trainer_tiny import tiny_config

    from fcos3d.boxes.postprocess import PostProcess
    from fcos3d.trainer.compare import compare_stages
    from fcos3d.trainer.loop import train

    cfg = tiny_config(synth_lmdb, tmp_path, max_steps=3, val=True)
    cfg["model"]["head"]["prior_prob"] = 0.3  # 3 steps from the default 0.01 score below the result's 0.01 floor
    cfg["post_process"] = dict(type=PostProcess, score_thr=0.05, max_per_img=30)
    torch.set_num_threads(1)
    train(cfg, "float", work_dir=tmp_path)
    out = compare_stages(cfg, unit="sample", rounds=20)
    assert out["predicted"] == ["float"] and list(out["stages"]) == ["float"]
    row = out["stages"]["float"]
    assert row["num_pred_boxes"] > 0 and row["mAP"] > 0  # at least one true positive to score
    assert row["NDS"] == row["devkit_NDS"] and row["mAP"] == row["devkit_mAP"]
    dev = json.loads((tmp_path / "predict" / "float" / "metrics.json").read_text())
    assert row["mAOE"] == dev["mAOE"] and row["mATE"] == dev["mATE"]
