"""compare-stages: float, calibration, QAT, int_infer (and the board) scored on the same val images, paired.

Reuses the result files `fcos3d predict` writes (<ckpt_dir>/predict/<stage>/results_nusc.json; predicted anew
when missing or older than the stage's checkpoint), scores each with the fast metric (equal to the devkit on the
whole split), bootstraps the gap to float over scenes (or samples), measures detection agreement, and writes
<out>/compare.json and compare.png. Returns data; the CLI prints.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import Fcos3dError
from ..eval.fast_metric import load_gt_boxes, load_pred_boxes, match_boxes, scene_of_samples
from ..eval.nuscenes_metric import RESULT_FILE, get_nuscenes, resolve_eval_set
from ..eval.paired import GAP_KEYS, detection_agreement, paired_bootstrap, per_unit_metrics, unit_index
from ..io import atomic_write_json, atomic_writer
from .checkpoint import checkpoint_path
from .config import build
from .stages import PREDICT_STAGES, work_dir_of

__all__ = ["COMPARE_STAGES", "UNITS", "compare_stages", "compare_table", "stage_result_file"]

COMPARE_STAGES = (*PREDICT_STAGES, "board")
UNITS = ("scene", "sample")
COMPARE_FILE = "compare.json"
PLOT_FILE = "compare.png"
# The checkpoint each stage's predictions come from (int_infer is the integer model of the QAT checkpoint).
_CKPT_STAGE = {"float": "float", "calibration": "calibration", "qat": "qat", "int_infer": "qat"}


def stage_result_file(cfg: dict, stage: str) -> Path:
    """Where `fcos3d predict --stage S` writes its result JSON."""
    return work_dir_of(cfg) / "predict" / stage / RESULT_FILE


def _stage_checkpoint(cfg: dict, stage: str) -> Path | None:
    work = work_dir_of(cfg)
    for which in ("best", "last"):  # load_stage_model's choice
        p = checkpoint_path(work, _CKPT_STAGE[stage], which)
        if p.is_file():
            return p
    return None


def _null_progress(_description: str):
    return contextlib.nullcontext(lambda done, total: None)


def _need_predict(cfg: dict, stage: str, rerun: bool) -> str | None:
    """Why the stage must be predicted again (None: its result file can be reused)."""
    result, ckpt = stage_result_file(cfg, stage), _stage_checkpoint(cfg, stage)
    if not result.is_file():
        return "no result file"
    if rerun:
        return "--rerun"
    if ckpt is not None and ckpt.stat().st_mtime > result.stat().st_mtime:
        return f"{ckpt.name} is newer than the result file"
    return None


def _read_result(path: Path, what: str) -> dict:
    try:
        res = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise Fcos3dError(f"{path}: no such file; {what}") from None
    except ValueError as e:
        raise Fcos3dError(f"{path}: not valid JSON ({e}); {what}") from None
    if not isinstance(res, dict) or "results" not in res:
        raise Fcos3dError(f"{path}: not a nuScenes result file (no 'results'); {what}")
    return res


def _check_board_covers_split(path: Path, images: int) -> None:
    """align-bpu --limit N scores only N images but writes every sample (the rest empty): refuse such a file."""
    report = Path(path).parent / "align_report.json"
    try:
        seen = json.loads(report.read_text()).get("images")
    except (OSError, ValueError):
        return  # not align-bpu's folder: the split check below still applies
    if isinstance(seen, int) and seen < images:
        raise Fcos3dError(
            f"{path}: align-bpu ran on {seen} of the {images} val images (--limit); run fcos3d-validate --align-bpu "
            "without --limit to compare the board on the whole split"
        )


def _devkit_metrics(result_file: Path) -> dict | None:
    """The devkit's metrics.json written beside a result file (by predict or align-bpu), if it is as new."""
    m = Path(result_file).parent / "metrics.json"
    if not m.is_file() or m.stat().st_mtime < Path(result_file).stat().st_mtime - 1.0:
        return None
    try:
        return json.loads(m.read_text())
    except ValueError:
        return None


def compare_stages(
    cfg: dict,
    *,
    stages: Sequence[str] | None = None,
    board_results: str | Path | None = None,
    rounds: int = 1000,
    unit: str = "scene",
    seed: int = 0,
    agree_dist: float = 1.0,
    agree_min_score: float = 0.2,
    rerun: bool = False,
    out_dir: str | Path | None = None,
    progress_factory: Callable = _null_progress,
    echo: Callable[[str], None] = lambda m: None,
) -> dict:
    """Score the stages on the config's val split and compare each with float, paired.

    stages: default every predict stage whose result or checkpoint exists (float is required); "board" needs
    board_results (align-bpu's results_nusc.json). Returns the dict written to <out>/compare.json (with
    "out_dir", "json" and "plot" added).
    """
    t_start = time.perf_counter()
    if unit not in UNITS:
        raise Fcos3dError(f"--unit {unit!r}: use one of {', '.join(UNITS)}")
    if rounds < 1:
        raise Fcos3dError(f"--bootstrap {rounds}: use at least 1 round (1000 for a 95% interval)")
    if "val_data_loader" not in cfg:
        raise Fcos3dError(f"{cfg.get('__file__', 'the config')}: no val_data_loader; add one (it names the val split)")
    explicit = stages is not None
    stages = list(stages) if explicit else list(PREDICT_STAGES)
    if board_results is not None and "board" not in stages:
        stages.append("board")
    for s in stages:
        if s not in COMPARE_STAGES:
            raise Fcos3dError(f"--stages {s!r}: use some of {', '.join(COMPARE_STAGES)}")
    if "float" not in stages:
        stages.insert(0, "float")  # the reference of every gap
    if "board" in stages and board_results is None:
        raise Fcos3dError("--stages board needs --board-results FILE (align-bpu's <out>/results_nusc.json)")

    val_set = build(cfg["val_data_loader"]["dataset"], "val_data_loader.dataset")
    meta = val_set.meta
    dataroot, version = meta["dataroot"], meta["version"]
    eval_set = resolve_eval_set(version, meta.get("devkit_split") or meta.get("split", "val"))

    # 1. one result file per stage: predict's own, predicted again when missing or stale
    files: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    predicted: list[str] = []
    for s in stages:
        if s == "board":
            files[s] = Path(board_results)
            continue
        why = _need_predict(cfg, s, rerun)
        if why is None:
            files[s] = stage_result_file(cfg, s)
            continue
        if _stage_checkpoint(cfg, s) is None:
            if s == "float" or explicit:
                raise Fcos3dError(
                    f"stage {s}: no {stage_result_file(cfg, s)} and no {_CKPT_STAGE[s]} checkpoint in "
                    f"{work_dir_of(cfg)}; train it (fcos3d train --stage {_CKPT_STAGE[s]}) or leave it out of --stages"
                )
            skipped[s] = f"no result file and no {_CKPT_STAGE[s]} checkpoint"
            continue
        from .stages import run_predict

        echo(f"predict {s}: {why}")
        with progress_factory(f"predict {s}") as progress:
            run_predict(cfg, s, progress=progress)
        files[s] = stage_result_file(cfg, s)
        predicted.append(s)
    stages = [s for s in stages if s in files]
    if "board" in files:
        _check_board_covers_split(files["board"], len(val_set))

    # 2. the devkit's ground truth once, each stage's predictions matched once
    t0 = time.perf_counter()
    nusc = get_nuscenes(dataroot, version)
    gt = _quiet_call(load_gt_boxes, nusc, eval_set)
    splits = {}
    for s in stages:
        fix = (
            "pass align-bpu's results_nusc.json of this config's val split"
            if s == "board"
            else f"re-run `fcos3d predict --stage {s}` (or compare-stages --rerun)"
        )
        res = _read_result(files[s], fix)
        try:
            pred = _quiet_call(load_pred_boxes, res, nusc, eval_set)
            splits[s] = match_boxes(gt, pred)
        except (KeyError, ValueError, AssertionError) as e:
            raise Fcos3dError(
                f"{files[s]}: does not cover the val split {eval_set} ({type(e).__name__}: {e}); {fix}"
            ) from None
    t_match = time.perf_counter() - t0

    # 3. units, paired bootstrap, per-unit metrics, agreement
    tokens = splits["float"].sample_tokens
    labels = scene_of_samples(nusc, tokens) if unit == "scene" else list(tokens)
    units, unit_names = unit_index(labels)
    if len(unit_names) < 2:
        raise Fcos3dError(
            f"the val split {eval_set} has {len(unit_names)} {unit}: a bootstrap needs at least 2; use --unit sample"
            " or a larger val split (fcos3d data synth --val-scenes N)"
        )
    t0 = time.perf_counter()
    with progress_factory(f"bootstrap ({len(unit_names)} {unit}s)") as progress:
        boot = paired_bootstrap(splits, units, reference="float", rounds=rounds, seed=seed, progress=progress)
    t_boot = time.perf_counter() - t0
    per_unit = {s: per_unit_metrics(splits[s], units) for s in stages}

    out = {
        "split": {
            "dataroot": str(dataroot),
            "version": version,
            "eval_set": eval_set,
            "samples": len(tokens),
            "unit": unit,
            "units": len(unit_names),
        },
        "bootstrap": {"rounds": rounds, "seed": seed, "level": boot["level"], "method": "paired percentile"},
        "agreement_rule": {"max_dist_m": agree_dist, "min_float_score": agree_min_score, "same_class": True},
        "stages": {},
        "skipped": skipped,
        "predicted": predicted,
    }
    for s in stages:
        m = boot["metrics"][s]
        row = {
            "result_file": str(files[s]),
            **{k: m[k] for k in ("NDS", "mAP", "mATE", "mASE", "mAOE", "mAVE", "mAAE")},
            "class_AP": m["class_AP"],
            "num_pred_boxes": int(len(splits[s].score)),
            "gap": {
                k: {
                    "value": boot["gap"][s][k],
                    "lo": boot["interval"][s][k][0],
                    "hi": boot["interval"][s][k][1],
                    "std": boot["std"][s][k],
                }
                for k in GAP_KEYS
            },
            "per_unit": {k: per_unit[s][:, j].tolist() for j, k in enumerate(GAP_KEYS)},
        }
        dev = _devkit_metrics(files[s])
        if dev is not None:
            row["devkit_NDS"], row["devkit_mAP"] = dev.get("NDS"), dev.get("mAP")
        if s != "float":
            ag = detection_agreement(splits["float"], splits[s], max_dist=agree_dist, min_score=agree_min_score)
            row["agreement"] = {k: ag[k] for k in ("share", "matched", "total", "mean_abs_score_drift")}
            row["per_sample_agreement"] = [None if np.isnan(v) else float(v) for v in ag["per_sample_share"]]
        out["stages"][s] = row
    out["unit_names"] = [str(u) for u in unit_names]
    out["seconds"] = {
        "match": round(t_match, 2),
        "bootstrap": round(t_boot, 2),
        "total": round(time.perf_counter() - t_start, 2),
    }

    out_dir = Path(out_dir) if out_dir is not None else work_dir_of(cfg) / "compare"
    plot = _plot(out, boot, out_dir / PLOT_FILE)
    path = atomic_write_json(out_dir / COMPARE_FILE, out, indent=2, allow_nan=False)
    return out | {"out_dir": str(out_dir), "json": str(path), "plot": str(plot)}


def compare_table(out: dict) -> tuple[str, list[tuple], tuple]:
    """(title, rows, header) of compare-stages' table (for the CLI and the demo)."""

    def gap(r: dict, key: str) -> tuple[str, str]:
        g = r["gap"][key]
        return f"{g['value']:+.4f}", f"{g['lo']:+.4f},{g['hi']:+.4f}"

    rows = []
    for s, r in out["stages"].items():
        ag = r.get("agreement")
        ref = s == "float"
        rows.append(
            (
                s,
                f"{r['NDS']:.4f}",
                *(("", "") if ref else gap(r, "NDS")),
                f"{r['mAP']:.4f}",
                *(("", "") if ref else gap(r, "mAP")),
                f"{r['mAOE']:.3f}",
                "" if ag is None else f"{ag['share']:.3f}",
                "" if ag is None else f"{ag['mean_abs_score_drift']:.4f}",
            )
        )
    sp, bs = out["split"], out["bootstrap"]
    level = int(round(100 * bs["level"]))
    over = f"{sp['units']} {sp['unit']}s" if sp["unit"] != "sample" else "samples"
    title = (
        f"stages vs float: {sp['eval_set']}, {sp['samples']} samples, "
        f"{level}% paired bootstrap over {over} ({bs['rounds']} rounds)"
    )
    header = ("stage", "NDS", "dNDS", f"{level}% int.", "mAP", "dmAP", f"{level}% int.", "mAOE", "agree", "|ds|")
    return title, rows, header


def _quiet_call(fn, *args):
    """Run a devkit loader without its tqdm bars and prints."""
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args)


def _plot(out: dict, boot: dict, path: Path) -> Path:
    """Left: each unit's NDS difference to float, per stage (sorted). Right: the bootstrap distribution of
    each stage's NDS gap with its interval."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    others = [s for s in out["stages"] if s != "float"]
    fig = Figure(figsize=(11, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ref = np.array(out["stages"]["float"]["per_unit"]["NDS"])
    colours = {"calibration": "#e08a2c", "qat": "#3b6fb6", "int_infer": "#2a9d55", "board": "#b03a48"}
    for s in others:
        diff = np.sort(np.array(out["stages"][s]["per_unit"]["NDS"]) - ref)
        ax1.plot(np.arange(len(diff)), diff, "o-", ms=3, lw=1, label=s, color=colours.get(s))
        ax2.hist(boot["rounds"][s]["NDS"], bins=40, alpha=0.45, label=s, color=colours.get(s))
        g = out["stages"][s]["gap"]["NDS"]
        for v in (g["lo"], g["hi"]):
            ax2.axvline(v, color=colours.get(s), lw=1, ls="--")
    unit = out["split"]["unit"]
    ax1.axhline(0, color="grey", lw=0.8)
    ax1.set_xlabel(f"{unit} (sorted by difference)")
    ax1.set_ylabel(f"NDS of the {unit} alone, stage - float")
    ax1.set_title(f"per-{unit} NDS difference ({out['split']['units']} {unit}s)")
    ax2.axvline(0, color="grey", lw=0.8)
    ax2.set_xlabel("NDS gap to float")
    ax2.set_ylabel("bootstrap rounds")
    ax2.set_title(
        f"paired bootstrap, {out['bootstrap']['rounds']} rounds, {int(100 * out['bootstrap']['level'])}% interval"
    )
    if others:
        ax1.legend(fontsize=8)
        ax2.legend(fontsize=8)
    fig.tight_layout()
    with atomic_writer(path) as f:
        fig.savefig(f, format="png")
    return path
