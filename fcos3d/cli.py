"""The `fcos3d` command line: click commands that call library functions and print with rich.

Library code returns data; only this module (and report code) prints. Heavy imports (torch, tvm,
nuscenes) are made inside the commands so that `fcos3d --help` starts fast.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import click

from .errors import Fcos3dError


def _console():
    from rich.console import Console

    return Console(stderr=False)


@contextmanager
def progress_bar(description: str):
    """Yield a ``progress(done, total)`` callback drawn as a rich progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=_console(), transient=False,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def print_table(title: str, rows: list[tuple], header: tuple) -> None:
    from rich.table import Table

    table = Table(title=title)
    for h in header:
        table.add_column(str(h))
    for r in rows:
        table.add_row(*[str(x) for x in r])
    _console().print(table)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not WIDTHxHEIGHT, e.g. 800x450") from None
    if w < 32 or h < 32:
        raise click.BadParameter(f"{text!r} is too small: use at least 32x32")
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
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Folder to write the dataset root into (it gets <version>/, samples/, sweeps/, maps/).")
@click.option("--version", default="v1.0-mini", show_default=True, help="Version folder name. v1.0-mini uses the official mini scene names and splits; v1.0-trainval official train/val names; any other name writes splits.json.")
@click.option("--seed", default=0, show_default=True, help="Random seed: the same seed gives byte-identical output.")
@click.option("--scenes", default=None, type=int, help="Number of scenes (default: 10; v1.0-mini allows at most 10).")
@click.option("--samples-per-scene", default=None, type=int, help="Key frames per scene (default: 20, one every 0.5 s).")
@click.option("--image-size", default="800x450", show_default=True, help="Camera image size WIDTHxHEIGHT; intrinsics scale with it.")
def data_synth(out, version, seed, scenes, samples_per_scene, image_size):
    """Write a synthetic dataset in the exact nuScenes on-disk format.

    Six cameras with realistic intrinsics and extrinsics, all 13 tables, the ten detection classes with
    realistic sizes, attributes and tracked motion, and JPEGs rendered from the 3D boxes so that a
    detector can learn from the pixels. Deterministic for a seed.
    """
    from .data.synth import write_synthetic_nuscenes

    with progress_bar("synth") as progress:
        summary = write_synthetic_nuscenes(
            out, version=version, seed=seed, scenes=scenes, samples_per_scene=samples_per_scene,
            image_size=_parse_size(image_size), progress=progress,
        )
    print_table(f"synthetic nuScenes written to {out}", sorted(summary.items()), ("item", "count"))


@data.command("pack")
@click.option("--src-data-dir", required=True, type=click.Path(path_type=Path), help="nuScenes root (holds <version>/ and samples/).")
@click.option("--pack-type", type=click.Choice(["lmdb"]), default="lmdb", show_default=True, help="Storage format.")
@click.option("--split-name", type=click.Choice(["train", "val"]), required=True, help="Which split to pack.")
@click.option("--version", default="v1.0-trainval", show_default=True, help="nuScenes version folder, e.g. v1.0-mini or v1.0-trainval.")
@click.option("--target-data-dir", type=click.Path(path_type=Path), default=None, help="Output folder (default: <src-data-dir>_lmdb); gets <split>_lmdb/.")
@click.option("--num-workers", default=2, show_default=True, help="Reader processes feeding the single LMDB writer.")
def data_pack(src_data_dir, pack_type, split_name, version, target_data_dir, num_workers):
    """Pack one split into LMDB: one msgpack record per camera image, like HAT's nuscenes_packer.

    The write is atomic (a temporary folder renamed at the end) and re-runnable.
    """
    from .data.packer import pack_nuscenes

    target = target_data_dir or src_data_dir.parent / f"{src_data_dir.name}_lmdb"
    with progress_bar(f"pack {split_name}") as progress:
        summary = pack_nuscenes(
            src_data_dir, split_name=split_name, version=version, target_data_dir=target,
            num_workers=num_workers, progress=progress,
        )
    print_table(f"packed {split_name} -> {summary['path']}", sorted(summary.items()), ("item", "value"))


@data.command("show")
@click.option("--data-path", required=True, type=click.Path(path_type=Path), help="An LMDB folder made by `fcos3d data pack`.")
@click.option("--index", default=0, show_default=True, help="Record index (one record = one camera image).")
@click.option("--save-path", required=True, type=click.Path(path_type=Path), help="PNG to write.")
def data_show(data_path, index, save_path):
    """Draw a record's ground-truth 3D boxes on its image, beside a bird's-eye view."""
    from .data.show import show_record

    path = show_record(data_path, index=index, save_path=save_path)
    click.echo(f"wrote {path}")


def _overrides(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE, e.g. --set data_root=demo_out/nuscenes_lmdb")
        k, v = pair.split("=", 1)
        out[k.strip()] = v
    return out


_SET_HELP = "Override a param() of the config, NAME=VALUE (repeatable), e.g. --set data_root=demo_out/nuscenes_lmdb."


def print_metrics(title: str, metrics: dict) -> None:
    from .eval.nuscenes_metric import METRICS_TABLE_HEADER, format_metrics_table

    print_table(title, format_metrics_table(metrics), METRICS_TABLE_HEADER)


class _RichReporter:
    """Draws the training loop's progress: a bar with the losses and the lr, and a table per validation."""

    def __init__(self, stage: str):
        self.stage, self.bar, self.task = stage, None, None

    def on_start(self, total_steps: int, start_step: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn(f"[bold]train {self.stage}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                            console=_console())
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
@click.option("--stage", type=click.Choice(["float", "calibration", "qat"]), required=True, help="Which stage to train: float first, then calibration, then qat.")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path), help="Experiment config, e.g. configs/fcos3d_efficientnetb0_synthetic.py.")
@click.option("--resume", is_flag=True, help="Continue from <ckpt_dir>/<stage>-checkpoint-last.pth.tar (mid-epoch too).")
@click.option("--set", "sets", multiple=True, help=_SET_HELP)
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

    from .trainer.config import load_config
    from .trainer.stages import run_train

    cfg = load_config(config_path, _overrides(sets))
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
            rows += [("best NDS", f"{best['NDS']:.4f}"), ("best mAP", f"{best['mAP']:.4f}"), ("best epoch", best["epoch"]),
                     ("best checkpoint", summary["best_path"])]
        print_table(f"train {stage}", rows, ("item", "value"))


@cli.command("predict")
@click.option("--stage", type=click.Choice(["float", "calibration", "qat", "int_infer"]), required=True, help="Which stage's model predicts.")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path), help="Experiment config.")
@click.option("--ckpt", type=click.Path(path_type=Path), default=None, help="Checkpoint (default: <ckpt_dir>/<stage>-checkpoint-best.pth.tar).")
@click.option("--set", "sets", multiple=True, help=_SET_HELP)
def predict_cmd(stage, config_path, ckpt, sets):
    """Predict the val split and score it with the official nuScenes metric (NDS, mAP, TP errors).

    Writes <ckpt_dir>/predict/<stage>/results_nusc.json (the devkit's result format) and metrics.json.
    """
    from .trainer.config import load_config
    from .trainer.stages import run_predict

    cfg = load_config(config_path, _overrides(sets))
    with progress_bar(f"predict {stage}") as progress:
        metrics = run_predict(cfg, stage, ckpt=ckpt, progress=progress)
    print_metrics(f"{stage}: NDS {metrics['NDS']:.4f}  mAP {metrics['mAP']:.4f}", metrics)
    click.echo(f"results: {metrics['result_file']}")


@cli.command("demo")
@click.option("--out", default="demo_out", show_default=True, type=click.Path(path_type=Path), help="Folder for everything the demo makes.")
@click.option("--seed", default=0, show_default=True, help="Seed of the synthetic dataset.")
@click.option("--scenes", default=10, show_default=True, help="Synthetic scenes (v1.0-mini: at most 10).")
@click.option("--samples-per-scene", default=20, show_default=True, help="Key frames per synthetic scene.")
@click.option("--image-size", default="800x450", show_default=True, help="Synthetic camera image size WIDTHxHEIGHT.")
def demo(out, seed, scenes, samples_per_scene, image_size):
    """Run the whole flow on synthetic nuScenes data: what `make demo` runs.

    \b
    Steps (each lands with its issue; today: data):
      1. synth   a synthetic nuScenes v1.0-mini set        -> OUT/nuscenes
      2. pack    train and val into LMDB                     -> OUT/nuscenes_lmdb
      3. show    ground-truth pictures of a few val images   -> OUT/pictures
    """
    from .data.packer import pack_nuscenes
    from .data.show import show_record
    from .data.synth import write_synthetic_nuscenes

    version = "v1.0-mini"
    root, lmdb_root, pictures = out / "nuscenes", out / "nuscenes_lmdb", out / "pictures"
    rows = []
    with progress_bar("1/3 synth") as progress:
        summary = write_synthetic_nuscenes(
            root, version=version, seed=seed, scenes=scenes, samples_per_scene=samples_per_scene,
            image_size=_parse_size(image_size), progress=progress,
        )
    rows.append(("synth", str(root), f"{summary.get('samples', '?')} samples, {summary.get('annotations', '?')} boxes"))
    for split in ("train", "val"):
        with progress_bar(f"2/3 pack {split}") as progress:
            packed = pack_nuscenes(root, split_name=split, version=version, target_data_dir=lmdb_root, num_workers=2, progress=progress)
        rows.append((f"pack {split}", str(packed["path"]), f"{packed['records']} images, {packed['boxes']} boxes"))
    pictures.mkdir(parents=True, exist_ok=True)
    shown = [show_record(lmdb_root / "val_lmdb", index=i, save_path=pictures / f"gt_val_{i:04d}.png") for i in (0, 1, 3)]
    rows.append(("show", str(pictures), ", ".join(p.name for p in shown)))
    print_table("fcos3d demo", rows, ("step", "output", "what"))


def main() -> None:
    """Console entry point: bad input becomes one line on stderr and a non-zero exit."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except Fcos3dError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
