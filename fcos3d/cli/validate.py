"""`fcos3d-validate --align-bpu --config C [--artifact DIR] [--device HOST:PORT] [--limit N]`: HAT's align_bpu.

Thin: fcos3d.trainer.align.run_align_bpu does the work from the config; this prints the tables. Exit 0
bit-exact, 1 on any mismatching output element, 2 on bad input (one line: the file and the fix). Loading the
config imports torch (its classes are real model classes); the runtime library itself never does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fcos3d.errors import Fcos3dError

from .console import SET_HELP


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _fmt(metrics: dict | None, key: str) -> str:
    v = None if metrics is None else metrics.get(key)
    return "—" if v is None else f"{float(v):.4f}"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--align-bpu",
    "align",
    is_flag=True,
    help="Compare board and simulator outputs bit for bit over the "
    "val split's original JPEGs, and score the board's detections (the only mode so far).",
)
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Experiment config, e.g. configs/fcos3d_efficientnetb0_synthetic.py.",
)
@click.option(
    "--artifact",
    "artifact_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Artifact folder (model.so + meta.json) [default: <ckpt_dir>/artifact-host, compiled if missing].",
)
@click.option(
    "--device",
    default=None,
    help="HOST:PORT of `python -m tvm.exec.rpc_server` on the board [default: run the artifact in this process].",
)
@click.option(
    "--rpc-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds the board may take to answer a connect, an upload or a run before the validation stops with an "
    "error (raise it for a slow board or link).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Validate only the first N camera images (6 per sample, in split order); the accuracy table then scores "
    "the board and every stage on the samples those images cover whole.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Report folder [default: <ckpt_dir>/align_bpu].",
)
@click.option(
    "--target",
    "board",
    default="host",
    show_default=True,
    help="Board whose artifact (<ckpt_dir>/artifact-<board>, compiled on first use) runs when --artifact is not "
    "given; an Ethos-U board's runs on the TOSA reference model (the NPU's integer spec, no hardware).",
)
@click.option(
    "--no-trace",
    is_flag=True,
    help="On a mismatch, do not trace the first mismatching image layer by layer (that compiles a debug build).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    help=SET_HELP,
)
def validate_cmd(
    align: bool,
    config_path: Path,
    artifact_dir: Path | None,
    device: str | None,
    rpc_timeout: float,
    limit: int | None,
    out_dir: Path | None,
    board: str,
    no_trace: bool,
    sets: tuple[str, ...],
) -> None:
    """Validate a compiled FCOS3D on the board against the integer simulator (HAT's align_bpu)."""
    if not align:
        raise click.UsageError("pass --align-bpu (the only validation so far)")
    from fcos3d.compiler.check import InvalidModelError
    from fcos3d.data.record import RecordError
    from fcos3d.int8.reader import UnsupportedGraphError
    from fcos3d.runtime.validate import REPORT_FILE

    from .boundary import one_line
    from .console import console as _console
    from .console import overrides as _overrides
    from .console import print_table, progress_bar

    console = _console()
    try:
        from fcos3d.trainer.align import run_align_bpu, stage_metrics
        from fcos3d.trainer.config import load_config
        from fcos3d.trainer.stages import work_dir_of

        cfg = load_config(config_path, _overrides(sets))
        where = device or ("the TOSA reference model" if board.startswith("ethos-u") else "this host")
        with progress_bar(f"align-bpu on {where}") as progress:
            report = run_align_bpu(
                cfg,
                artifact_dir=artifact_dir,
                device=device,
                limit=limit,
                out_dir=out_dir,
                progress=progress,
                echo=console.print,
                rpc_timeout=rpc_timeout,
                trace=not no_trace,
                board=board,
            )
    except (Fcos3dError, InvalidModelError, UnsupportedGraphError, RecordError) as exc:
        _fail(one_line(str(exc)))  # a loader worker's error arrives wrapped: its own line

    rows = []
    for o in report["outputs"]:
        first = o["first"]
        where = (
            (o["problem"] or "—")
            if first is None
            else (
                f"image {first['image']} ({Path(first['file_name']).name}) at {tuple(first['index'])}: "
                f"board {first['board']}, simulator {first['sim']}"
            )
        )
        rows.append((o["name"], o["mismatches"], o["total"], o["max_abs_diff"], where))
    print_table(
        f"board vs simulator: {report['images']} images on {report['device']} ({report['board']})",
        rows,
        ("output", "mismatches", "elements", "max |diff|", "first mismatch"),
    )
    if report.get("device_label") and report["device_label"] != report["device"]:
        console.print(f"the board's outputs were computed by: {report['device_label']}")
    scope = report.get("scope")
    if scope is None:  # the whole split: every stage's own metrics.json beside the board's
        stages, title = stage_metrics(work_dir_of(cfg)), "accuracy (nuScenes val)"
    else:  # --limit: every stage re-scored on the samples the board saw whole
        stages = dict(report["stage_metrics"])
        title = (
            f"accuracy on the {len(scope['sample_tokens'])} val samples whose 6 cameras are all among the first "
            f"{scope['images']} of {scope['split_images']} images (every stage on the same samples)"
        )
    stages["board"] = report["metrics"]
    if scope is not None and not scope["sample_tokens"]:
        console.print(
            f"[yellow]accuracy: no val sample has all 6 cameras among the first {scope['images']} images; "
            "use --limit 6 or more (a multiple of 6) to score the board and every stage on the same samples"
        )
    else:
        print_table(title, [(s, _fmt(m, "NDS"), _fmt(m, "mAP")) for s, m in stages.items()], ("stage", "NDS", "mAP"))
    traced = report.get("trace")
    if traced:
        head = f"trace of image {traced['image']} ({traced['file_name']}): " if "image" in traced else "trace: "
        if "error" in traced:
            console.print(f"[yellow]{head}could not run: {traced['error']}")
        else:
            for line in traced["verdict"].splitlines():
                console.print(f"[red]{head}{line}" if not traced["equal"] else f"[yellow]{head}{line}")
            console.print(f"layer by layer: {traced['paths']['csv']}, {traced['paths']['png']}")
    verdict = "[green]bit-exact[/]" if report["equal"] else f"[red]{report['mismatches']} elements differ[/]"
    console.print(f"{verdict}; report: {Path(report['out_dir']) / REPORT_FILE}")
    sys.exit(0 if report["equal"] else 1)


def main() -> None:
    """Console entry point (pyproject: fcos3d-validate)."""
    from .boundary import run_command

    run_command(validate_cmd, "fcos3d-validate")  # expected failures: one line, exit 2


if __name__ == "__main__":
    main()
