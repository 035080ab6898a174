"""The `fcos3d` command line: click commands that call library functions and print with rich.

Library code returns data; only this module (and report code) prints. Heavy imports (torch, tvm,
nuscenes) are made inside the commands so that `fcos3d --help` starts fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .boundary import onnx_error, run_command
from .console import SET_HELP, console, overrides, print_table, progress, progress_bar
from .trace import trace_cmd

_MAX_SIDE = 8192


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not WIDTHxHEIGHT, e.g. 800x450") from None
    if w < 32 or h < 32:
        raise click.BadParameter(f"{text!r} is too small: use at least 32x32")
    if w > _MAX_SIDE or h > _MAX_SIDE:  # larger images only exhaust memory (nuScenes' own are 1600x900)
        raise click.BadParameter(f"{text!r} is too large: use at most {_MAX_SIDE}x{_MAX_SIDE}")
    return w, h


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fcos3d")
def cli() -> None:
    """FCOS3D from nuScenes to a bit-exact int8 model on an edge board.

    \b
    The workflow, stage by stage:
      fcos3d data synth --out data/nuscenes      synthetic nuScenes (or use the real one)
      fcos3d data pack --src-data-dir data/nuscenes --split-name train --version v1.0-mini
      fcos3d data show --data-path data/nuscenes_lmdb/val_lmdb --index 0 --save-path gt.png
      fcos3d demo                                 the whole flow on synthetic data

    Every command has --help. Errors are one line on stderr with a non-zero exit.
    """


@cli.group()
def data() -> None:
    """Make, pack and look at nuScenes-format data."""


@data.command("synth")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder to write the dataset root into (it gets <version>/, samples/, sweeps/, maps/).",
)
@click.option(
    "--version",
    default="v1.0-mini",
    show_default=True,
    help="Version folder name. v1.0-mini uses the official mini scene names and splits; v1.0-trainval official train/val names; any other name writes splits.json.",
)
@click.option("--seed", default=0, show_default=True, help="Random seed: the same seed gives byte-identical output.")
@click.option("--scenes", default=None, type=int, help="Number of scenes (default: 10; v1.0-mini allows at most 10).")
@click.option(
    "--samples-per-scene", default=None, type=int, help="Key frames per scene (default: 20, one every 0.5 s)."
)
@click.option(
    "--image-size",
    default="800x450",
    show_default=True,
    help="Camera image size WIDTHxHEIGHT; intrinsics scale with it.",
)
@click.option(
    "--val-scenes",
    default=None,
    type=int,
    help="Make the val split this many scenes: val-only scenes are added after --scenes, the train split stays "
    "the same (needs a splits.json version such as v1.0-synth, or v1.0-trainval).",
)
def data_synth(out, version, seed, scenes, samples_per_scene, image_size, val_scenes):
    """Write a synthetic dataset in the exact nuScenes on-disk format.

    Six cameras with realistic intrinsics and extrinsics, all 13 tables, the ten detection classes with
    realistic sizes, attributes and tracked motion, and JPEGs rendered from the 3D boxes so that a
    detector can learn from the pixels. Deterministic for a seed.
    """
    from fcos3d.synth import write_synthetic_nuscenes

    with progress_bar("synth") as progress:
        summary = write_synthetic_nuscenes(
            out,
            version=version,
            seed=seed,
            scenes=scenes,
            samples_per_scene=samples_per_scene,
            image_size=_parse_size(image_size),
            progress=progress,
            val_scenes=val_scenes,
        )
    print_table(f"synthetic nuScenes written to {out}", sorted(summary.items()), ("item", "count"))


@data.command("pack")
@click.option(
    "--src-data-dir",
    required=True,
    type=click.Path(path_type=Path),
    help="nuScenes root (holds <version>/ and samples/).",
)
@click.option("--pack-type", type=click.Choice(["lmdb"]), default="lmdb", show_default=True, help="Storage format.")
@click.option("--split-name", type=click.Choice(["train", "val"]), required=True, help="Which split to pack.")
@click.option(
    "--version",
    default="v1.0-trainval",
    show_default=True,
    help="nuScenes version folder, e.g. v1.0-mini or v1.0-trainval.",
)
@click.option(
    "--target-data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Output folder (default: <src-data-dir>_lmdb); gets <split>_lmdb/.",
)
@click.option("--num-workers", default=2, show_default=True, help="Reader processes feeding the single LMDB writer.")
def data_pack(src_data_dir, pack_type, split_name, version, target_data_dir, num_workers):
    """Pack one split into LMDB: one msgpack record per camera image, like HAT's nuscenes_packer.

    The write is atomic (a temporary folder renamed at the end) and re-runnable.
    """
    from fcos3d.data.packer import pack_nuscenes

    target = target_data_dir or src_data_dir.parent / f"{src_data_dir.name}_lmdb"
    with progress_bar(f"pack {split_name}") as progress:
        summary = pack_nuscenes(
            src_data_dir,
            split_name=split_name,
            version=version,
            target_data_dir=target,
            num_workers=num_workers,
            progress=progress,
        )
    print_table(f"packed {split_name} -> {summary['path']}", sorted(summary.items()), ("item", "value"))


@data.command("show")
@click.option(
    "--data-path", required=True, type=click.Path(path_type=Path), help="An LMDB folder made by `fcos3d data pack`."
)
@click.option("--index", default=0, show_default=True, help="Record index (one record = one camera image).")
@click.option("--save-path", required=True, type=click.Path(path_type=Path), help="PNG to write.")
def data_show(data_path, index, save_path):
    """Draw a record's ground-truth 3D boxes on its image, beside a bird's-eye view."""
    from fcos3d.data.show import show_record

    path = show_record(data_path, index=index, save_path=save_path)
    click.echo(f"wrote {path}")


def print_metrics(title: str, metrics: dict) -> None:
    from fcos3d.eval.nuscenes_metric import METRICS_TABLE_HEADER, format_metrics_table

    print_table(title, format_metrics_table(metrics), METRICS_TABLE_HEADER)


class _RichReporter:
    """Draws the training loop's progress: a bar with the losses and the lr, and a table per validation."""

    def __init__(self, stage: str):
        self.stage, self.bar, self.task = stage, None, None

    def on_start(self, total_steps: int, start_step: int) -> None:
        from rich.progress import TextColumn

        self.bar = progress(f"train {self.stage}", TextColumn("{task.fields[info]}"))
        self.bar.start()
        self.task = self.bar.add_task("train", total=total_steps, completed=start_step, info="")

    def on_step(self, step: int, losses: dict, lr: float) -> None:
        info = f"loss {sum(losses.values()):.3f} (cls {losses.get('loss_cls', 0):.3f} depth {losses.get('loss_depth', 0):.3f}) lr {lr:.2e}"
        self.bar.update(self.task, completed=step, info=info)

    def on_validation(self, epoch: int, metrics: dict) -> None:
        self.bar.console.print(f"[bold]epoch {epoch}[/bold]: NDS {metrics['NDS']:.4f}  mAP {metrics['mAP']:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@cli.command("train")
@click.option(
    "--stage",
    type=click.Choice(["float", "calibration", "qat"]),
    required=True,
    help="Which stage to train: float first, then calibration, then qat.",
)
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Experiment config, e.g. configs/fcos3d_efficientnetb0_synthetic.py.",
)
@click.option(
    "--resume", is_flag=True, help="Continue from <ckpt_dir>/<stage>-checkpoint-last.pth.tar (mid-epoch too)."
)
@click.option("--set", "sets", multiple=True, help=SET_HELP)
def train_cmd(stage, config_path, resume, sets):
    """Train a stage on one CPU/GPU, or many GPUs under torchrun (DDP + SyncBN).

    \b
    Checkpoints go to the config's ckpt_dir: <stage>-checkpoint-last.pth.tar every few steps and
    <stage>-checkpoint-best.pth.tar (by val NDS); TensorBoard curves to <ckpt_dir>/tensorboard:
      tensorboard --logdir work_dirs/fcos3d_efficientnetb0_synthetic/tensorboard
    \b
    Many GPUs:
      torchrun --nproc_per_node 4 -m fcos3d.cli train --stage float --config configs/fcos3d_efficientnetb0_nuscenes.py
    """
    import os

    from fcos3d.trainer.config import load_config
    from fcos3d.trainer.stages import run_train

    cfg = load_config(config_path, overrides(sets))
    main_process = os.environ.get("RANK", "0") == "0"
    reporter = _RichReporter(stage) if main_process else None
    try:
        summary = run_train(cfg, stage, resume=resume, reporter=reporter)
    finally:
        if reporter is not None:
            reporter.close()
    if main_process:
        best = summary["best"]
        rows = [("steps", summary["steps"]), ("last checkpoint", summary["last"])]
        if best.get("NDS", float("-inf")) > float("-inf"):
            rows += [
                ("best NDS", f"{best['NDS']:.4f}"),
                ("best mAP", f"{best['mAP']:.4f}"),
                ("best epoch", best["epoch"]),
                ("best checkpoint", summary["best_path"]),
            ]
        print_table(f"train {stage}", rows, ("item", "value"))


@cli.command("predict")
@click.option(
    "--stage",
    type=click.Choice(["float", "calibration", "qat", "int_infer"]),
    required=True,
    help="Which stage's model predicts.",
)
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path), help="Experiment config.")
@click.option(
    "--ckpt",
    type=click.Path(path_type=Path),
    default=None,
    help="Checkpoint (default: <ckpt_dir>/<stage>-checkpoint-best.pth.tar).",
)
@click.option("--set", "sets", multiple=True, help=SET_HELP)
def predict_cmd(stage, config_path, ckpt, sets):
    """Predict the val split and score it with the official nuScenes metric (NDS, mAP, TP errors).

    Writes <ckpt_dir>/predict/<stage>/results_nusc.json (the devkit's result format) and metrics.json.
    """
    from fcos3d.trainer.config import load_config
    from fcos3d.trainer.stages import run_predict

    cfg = load_config(config_path, overrides(sets))
    with progress_bar(f"predict {stage}") as progress:
        metrics = run_predict(cfg, stage, ckpt=ckpt, progress=progress)
    print_metrics(f"{stage}: NDS {metrics['NDS']:.4f}  mAP {metrics['mAP']:.4f}", metrics)
    click.echo(f"results: {metrics['result_file']}")


@cli.command("compare-stages")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path), help="Experiment config.")
@click.option(
    "--stages",
    default=None,
    help="Comma-separated stages (float,calibration,qat,int_infer,board) [default: every stage with a result or "
    "checkpoint].",
)
@click.option(
    "--board-results",
    type=click.Path(path_type=Path),
    default=None,
    help="The board's result JSON (fcos3d-validate --align-bpu writes <ckpt_dir>/align_bpu/results_nusc.json).",
)
@click.option("--bootstrap", "rounds", default=1000, show_default=True, help="Bootstrap rounds.")
@click.option(
    "--unit",
    type=click.Choice(["scene", "sample"]),
    default="scene",
    show_default=True,
    help="What the bootstrap resamples: whole scenes (frames of a scene are correlated) or samples.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap draws.")
@click.option(
    "--agree-min-score",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Detection agreement counts float's detections scoring at least this.",
)
@click.option("--rerun", is_flag=True, help="Predict every stage again instead of reusing predict's result files.")
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Output folder [default: <ckpt_dir>/compare]."
)
@click.option("--set", "sets", multiple=True, help=SET_HELP)
def compare_stages_cmd(config_path, stages, board_results, rounds, unit, seed, agree_min_score, rerun, out, sets):
    """Score every stage on the same val images and compare each with float, paired.

    \b
    Per stage: NDS, mAP, mAOE, the gap to float with a 95% paired bootstrap interval over scenes (or
    samples), and detection agreement (the share of float's detections the stage reproduces within 1 m
    with the same class, and the mean |score drift| of those pairs). Reuses the result files of
    `fcos3d predict` (predicting a stage again when its file is missing or older than its checkpoint);
    the metric is a numpy copy of the devkit's, equal to it on the whole split.
    Writes <out>/compare.json and compare.png (per-scene differences and the bootstrap distributions).
    """
    from fcos3d.trainer.compare import compare_stages, compare_table
    from fcos3d.trainer.config import load_config

    cfg = load_config(config_path, overrides(sets))
    chosen = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
    out_data = compare_stages(
        cfg,
        stages=chosen,
        board_results=board_results,
        rounds=rounds,
        unit=unit,
        seed=seed,
        agree_min_score=agree_min_score,
        rerun=rerun,
        out_dir=out,
        progress_factory=progress_bar,
        echo=click.echo,
    )
    print_table(*compare_table(out_data))
    for s, why in out_data["skipped"].items():
        click.echo(f"skipped {s}: {why}")
    click.echo(f"wrote {out_data['json']} and {out_data['plot']}")


@cli.command("export")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path), help="Experiment config.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="ONNX file to write (default: the config's export_cfg.path).",
)
@click.option(
    "--ckpt",
    type=click.Path(path_type=Path),
    default=None,
    help="QAT checkpoint (default: <ckpt_dir>/qat-checkpoint-best.pth.tar).",
)
@click.option("--set", "sets", multiple=True, help=SET_HELP)
def export_cmd(config_path, out, ckpt, sets):
    """Export the QAT model as the integer model's int8 QDQ ONNX (opset 17, int32 head outputs).

    The graph opens in Netron, runs in onnxruntime and in the integer simulator, bit-exact with the
    torch int model (docs/int8.md); metadata_props hold class names, strides and the output scales.
    """
    from fcos3d.trainer.config import load_config
    from fcos3d.trainer.stages import run_export

    summary = run_export(load_config(config_path, overrides(sets)), out=out, ckpt=ckpt)
    rows = [
        ("onnx", summary["path"]),
        ("input", "x".join(map(str, summary["input_shape"]))),
        ("outputs", summary["outputs"]),
    ] + sorted(summary["nodes"].items())
    if summary["widened_weight_scales"]:  # channels whose int32 bias needed a coarser weight scale
        rows.append(("widened weight scales", ", ".join(summary["widened_weight_scales"])))
    print_table("export", rows, ("item", "value"))


@cli.command("quant-report")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path), help="Experiment config.")
@click.option("--images", default=4, show_default=True, help="Val images to measure on (the first N of the val split).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for quant_report.json/.csv/.png (default: <ckpt_dir>/quant_report).",
)
@click.option(
    "--top", default=20, show_default=True, help="Rows of the table printed here (the files hold every layer)."
)
@click.option("--set", "sets", multiple=True, help=SET_HELP)
def quant_report_cmd(config_path, images, out, top, sets):
    """Per-layer SQNR (dB) of the calibration, QAT and int models against float, worst layers first.

    Every conv/add/resize/pool output and raw head output, from the float, calibration and qat checkpoints
    (best, else last) and the int model of the qat one: where int8 accuracy is lost, layer by layer.
    """
    from fcos3d.trainer.config import load_config
    from fcos3d.trainer.quant_report import run_quant_report, stage_checkpoints

    cfg = load_config(config_path, overrides(sets))
    stage_checkpoints(cfg)  # a missing checkpoint fails before the progress bar starts
    with progress_bar("quant-report") as progress:
        res = run_quant_report(cfg, images=images, out=out, progress=progress)
    report = res["report"]
    fmt = lambda v: "inf" if v == float("inf") else f"{v:.1f}"  # noqa: E731
    rows = [
        (str(i + 1), r["layer"], r["output"] or r["kind"], *[fmt(r[s]) for s in report.stages])
        for i, r in enumerate(report.rows[:top])
    ]
    print_table(
        f"SQNR vs float (dB) on {report.images} val image(s), worst {len(rows)} of {len(report.rows)} layers by "
        f"{report.sort_stage}",
        rows,
        ("#", "layer", "kind / output", *report.stages),
    )
    for kind, path in res["paths"].items():
        click.echo(f"{kind}: {path}")


@cli.command("infer")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path), help="Experiment config.")
@click.option(
    "--image",
    required=True,
    type=click.Path(path_type=Path),
    help="A camera JPEG (in a nuScenes dataroot's samples/CAM_*/, or any image with --intrinsics).",
)
@click.option(
    "--stage",
    type=click.Choice(["float", "calibration", "qat", "int_infer"]),
    default="float",
    show_default=True,
    help="Which stage's model predicts.",
)
@click.option("--score-th", default=0.3, show_default=True, help="Draw boxes scoring at least this.")
@click.option("--save-path", required=True, type=click.Path(path_type=Path), help="PNG to write.")
@click.option("--ann", is_flag=True, help="Also draw the ground truth (from the devkit) beside the prediction.")
@click.option("--version", default="v1.0-mini", show_default=True, help="nuScenes version of the image's dataroot.")
@click.option("--intrinsics", default=None, help="fx,fy,cx,cy of a lone image (default: looked up in the dataroot).")
@click.option("--ckpt", type=click.Path(path_type=Path), default=None, help="Checkpoint (default: the stage's best).")
@click.option("--set", "sets", multiple=True, help=SET_HELP)
def infer_cmd(config_path, image, stage, score_th, save_path, ann, version, intrinsics, ckpt, sets):
    """Predict one image and draw its 3D boxes (class colours, scores) beside a bird's-eye view.

    \b
      fcos3d infer --config configs/fcos3d_efficientnetb0_synthetic.py \\
          --image data/nuscenes/samples/CAM_FRONT/xxx.jpg --ann --save-path pred.png
    """
    from fcos3d.trainer.config import load_config
    from fcos3d.trainer.infer import infer_image

    cfg = load_config(config_path, overrides(sets))
    out = infer_image(
        cfg,
        image,
        stage=stage,
        score_th=score_th,
        save_path=save_path,
        with_gt=ann,
        version=version,
        intrinsics=intrinsics,
        ckpt=ckpt,
    )
    b = out["boxes"]
    from fcos3d.data.classes import CLASSES

    rows = [
        (
            CLASSES[int(b["labels"][i])],
            f"{b['scores'][i]:.2f}",
            f"{b['centers3d'][i][2]:.1f}",
            " x ".join(f"{v:.1f}" for v in b["dims"][i]),
        )
        for i in range(len(b["scores"]))
    ]
    print_table(f"{len(rows)} boxes -> {out['path']}", rows, ("class", "score", "depth m", "w x l x h m"))


@cli.command("demo")
@click.option(
    "--out",
    default="demo_out",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Folder for everything the demo makes.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the synthetic dataset.")
@click.option("--scenes", default=10, show_default=True, help="Synthetic scenes (v1.0-mini: at most 10).")
@click.option(
    "--samples-per-scene",
    default=10,
    show_default=True,
    help="Key frames per synthetic scene (10: 480 train / 120 val images, sized to fit 15 minutes on 2 cores).",
)
@click.option("--image-size", default="800x450", show_default=True, help="Synthetic camera image size WIDTHxHEIGHT.")
@click.option("--float-epochs", default=3, show_default=True, help="Float training epochs (0: data steps only).")
@click.option("--calibration-steps", default=10, show_default=True, help="Training batches the observers see.")
@click.option("--qat-steps", default=40, show_default=True, help="QAT fine-tuning steps.")
@click.option(
    "--target",
    "targets",
    multiple=True,
    default=("host", "cortex-a55", "ethos-u55-256"),
    show_default=True,
    help="Compile for these boards (repeatable); align-bpu runs the host artifact on every val image and an "
    "Ethos-U artifact (TOSA + Vela) on the TOSA reference model for the first 12.",
)
@click.option(
    "--score-th",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Draw predicted boxes scoring at least this in the pictures (the short demo training scores low).",
)
@click.option(
    "--align-limit",
    type=click.IntRange(min=1),
    default=None,
    help="align-bpu on the first N val images only [default: all].",
)
@click.option(
    "--stop-after", type=click.Choice(["data", "float"]), default=None, help="End the flow early, after this step."
)
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(path_type=Path),
    help="Config to train with (default: configs/fcos3d_efficientnetb0_synthetic.py).",
)
@click.option("--set", "sets", multiple=True, help=SET_HELP)
def demo(
    out,
    seed,
    scenes,
    samples_per_scene,
    image_size,
    float_epochs,
    calibration_steps,
    qat_steps,
    targets,
    score_th,
    align_limit,
    stop_after,
    config_path,
    sets,
):
    """Run HAT's FCOS3D workflow end to end on synthetic nuScenes data: what `make demo` runs.

    \b
    Steps (OUT/SUMMARY.md lists the seconds each took; fewer --samples-per-scene shortens every step):
       1. synth        a synthetic nuScenes v1.0-mini set            -> OUT/nuscenes
       2. pack         train and val into LMDB                        -> OUT/nuscenes_lmdb
       3. show         ground-truth pictures of a few val images      -> OUT/pictures
       4. train float  EfficientNet-b0 + BiFPN + FCOS3D head          -> OUT/work_dir
       5. calibration  BN folded, min-max observers
       6. train qat    fake-quant fine-tuning
       7. int_infer    the integer model (int8/int32, no float inside)
       8. export       int8 QDQ ONNX (opens in Netron)
       9. compile      TVM libraries, or TOSA + Vela for Ethos-U boards -> OUT/work_dir/artifact-<board>
      10. align-bpu    board vs simulator on every output element of every val image (Ethos-U: the first 12
                       on the TOSA reference model, the NPU's integer spec)
          compare      every stage's NDS/mAP gap to float, 95% paired bootstrap over the val samples
                                                                        -> OUT/work_dir/compare
          trace        val image 0 through every form, layer by layer -> OUT/work_dir/trace
      11. perf         estimated latency per board (HTML charts)      -> OUT/perf/<board>
      12. pictures     predicted 3D boxes beside the ground truth, accuracy per stage
    Then a summary table, OUT/summary.json and OUT/SUMMARY.md.
    """
    from .demo import STAGE_ORDER, DemoOptions, run_demo

    opts = DemoOptions(
        out=out,
        seed=seed,
        scenes=scenes,
        samples_per_scene=samples_per_scene,
        image_size=_parse_size(image_size),
        config_path=config_path,
        float_epochs=float_epochs,
        calibration_steps=calibration_steps,
        qat_steps=qat_steps,
        compile_targets=tuple(targets),
        align_limit=align_limit,
        score_th=score_th,
        stop_after=stop_after,
        extra_sets=overrides(sets),
    )
    con = console()
    summary = run_demo(
        opts,
        report=lambda step, msg: con.print(f"[bold green]✓ {step}[/]: {msg}"),
        progress_factory=progress_bar,
        train_reporter_factory=_RichReporter,
    )
    print_table(
        "fcos3d demo: steps",
        [(r["step"], f"{r['seconds']:.0f}", r["what"]) for r in summary["steps"]],
        ("step", "s", "what"),
    )
    acc = summary["accuracy"]
    if acc:
        print_table(
            "accuracy per stage (nuScenes val)",
            [
                (s, f"{acc[s]['NDS']:.4f}", f"{acc[s]['mAP']:.4f}", f"{acc[s]['mATE']:.3f}", f"{acc[s]['mAOE']:.3f}")
                for s in STAGE_ORDER
                if acc.get(s)
            ],
            ("stage", "NDS", "mAP", "mATE", "mAOE"),
        )
    if summary.get("compare"):
        c = summary["compare"]
        print_table(c["title"], [tuple(r) for r in c["rows"]], tuple(c["header"]))
    if summary.get("perf"):
        print_table(
            "estimated latency (fcos3d perf)",
            [(p["board"], p["accelerator"], f"{p['latency_ms']:.2f}", f"{p['fps']:.1f}") for p in summary["perf"]],
            ("board", "accelerator", "ms", "FPS"),
        )
    if summary.get("align"):
        a = summary["align"]
        verdict = "[green]bit-exact[/]" if a["equal"] else f"[red]{a['mismatches']} elements differ[/]"
        con.print(f"align-bpu: {a['images']} images, {a['elements']:,} elements: {verdict}")
    con.print(
        f"fcos3d demo finished in {summary['seconds']:.0f} s: {out / 'SUMMARY.md'}, pictures in {out / 'pictures'}"
    )
    if summary.get("align") and not summary["align"]["equal"]:
        sys.exit(1)


# -- boards (fcos3d/boards: one TOML per board) ---------------------------------------------------------


@cli.group()
def boards() -> None:
    """List and show the compilation targets (fcos3d/boards/*.toml)."""


@boards.command("list")
def boards_list() -> None:
    """One row per packaged board."""
    from fcos3d.boards import alias_of, board_names, load_board
    from fcos3d.compiler.tosa.vela import VELA_CONFIGS

    rows = []
    for name in board_names():
        if alias_of(name):
            rows.append((name, "", "", f"= {alias_of(name)}", ""))
            continue
        b = load_board(name)
        builds = (
            "TOSA + Vela (runs on the TOSA reference model here)"
            if name in VELA_CONFIGS
            else "estimate only"
            if b.estimate_only
            else "TVM library"
        )
        cpu = b.target.get("mcpu", "detected")
        rows.append((b.name, b.target.get("mtriple", "this machine"), cpu, b.description, builds))
    print_table("boards", rows, ("name", "triple", "cpu", "description", "compiles to"))


@boards.command("show")
@click.argument("name")
def boards_show(name: str) -> None:
    """Every field of one board, with the source of each accelerator figure."""
    from fcos3d.boards import UnknownBoardError, load_board

    try:
        b = load_board(name)
    except UnknownBoardError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    rows = [("description", b.description, ""), ("cross compiler", b.cross_compiler or "(none: host)", "")]
    rows += [
        (f"target.{k}", v if isinstance(v, str) else list(v) if isinstance(v, tuple) else v, "")
        for k, v in b.target.items()
    ]
    if b.accelerator is not None:  # the latency estimator's profile (fcos3d perf); its figures follow
        rows.append(("accelerator", b.accelerator.name, b.accelerator.note))
    rows += [(f.name, f"{f.value:g} {f.unit}", f.source) for f in b.figures]
    print_table(f"board {b.name}", rows, ("field", "value", "source"))


# -- perf (fcos3d/compiler/latency/estimate.py: the latency model of PERFORMANCE.md) ------------------------------


@cli.command("perf")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--target",
    "targets",
    multiple=True,
    default=("host",),
    show_default=True,
    help="Board to estimate (repeat to compare): fcos3d boards list, or a board .toml.",
)
@click.option(
    "--layers",
    default=10,
    show_default=True,
    help="Also show the N slowest layers (by the first board) side by side; 0: none.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write OUT/<board>/perf.json, perf.csv, perf.html.",
)
def perf_cmd(model, targets, layers, out_dir):
    """Estimated latency of an int8 QDQ ONNX model on one or more boards, side by side (no compile)."""
    from fcos3d.boards import UnknownBoardError, load_board
    from fcos3d.compiler.check import check_onnx
    from fcos3d.compiler.latency.estimate import estimate
    from fcos3d.compiler.latency.report import write_report

    try:
        boards_ = [load_board(t) for t in targets]
    except UnknownBoardError as exc:
        raise click.BadParameter(str(exc), param_hint="--target") from None
    try:
        graph = check_onnx(model).graph
    except Exception as exc:  # onnx/protobuf reading errors do not name the file
        err = onnx_error(model, exc)
        if err is None:
            raise
        raise err from None
    ests = [estimate(graph, b) for b in boards_]
    keys = (
        ("latency ms", "latency_ms", "{:.3f}"),
        ("FPS", "fps", "{:.1f}"),
        ("GMACs", "gmacs", "{:.3f}"),
        ("weights KiB", "weight_bytes", "{:.0f}"),
        ("peak activations KiB", "peak_activation_bytes", "{:.0f}"),
        ("MAC utilisation", "mac_utilisation", "{:.1%}"),
        ("cycles", "cycles", "{:,}"),
    )
    rows = [("accelerator", *[e.accelerator for e in ests])]
    for label, key, fmt in keys:
        scale = 1024 if key.endswith("_bytes") else 1
        rows.append((label, *[fmt.format(e.totals()[key] / scale if scale != 1 else e.totals()[key]) for e in ests]))
    print_table(f"fcos3d perf {model.name} ({len(graph.ops)} layers)", rows, ("", *[e.board for e in ests]))
    if layers > 0:
        order = sorted(range(len(ests[0].layers)), key=lambda i: -ests[0].layers[i].cycles)[:layers]
        rows = [
            (
                str(i),
                ests[0].layers[i].name,
                ests[0].layers[i].op,
                *[f"{e.layers[i].cycles / e.clock_hz * 1e3:.4f} ({e.layers[i].bound[0]})" for e in ests],
            )
            for i in order
        ]
        print_table(
            f"slowest {len(order)} layers on {ests[0].board}: ms (c: compute-, m: memory-bound)",
            rows,
            ("#", "layer", "op", *[e.board for e in ests]),
        )
    if out_dir is not None:
        for e in ests:
            paths = write_report(e, out_dir / e.board)
            click.echo(f"{e.board}: {paths['html']}")


cli.add_command(trace_cmd)  # fcos3d trace: its own module (cli/trace.py)


def main() -> None:
    """Console entry point: expected failures become one line on stderr and exit 2 (cli/boundary.py)."""
    run_command(cli, "fcos3d")


if __name__ == "__main__":
    main()
