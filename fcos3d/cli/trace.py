"""`fcos3d trace`: which layer diverged? One input through every form of a model, compared layer by layer.

Thin: fcos3d.trainer.trace (a config's checkpoints, ONNX and debug build) or fcos3d.runtime.trace (any int8
ONNX the compiler takes) does the work; this prints the verdict and tables and exits 1 when two integer
executors differ.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click

from .console import SET_HELP, console, overrides, print_table, progress_bar


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "inf" if v == math.inf else f"{v:.1f}"
    return str(v)


def _onnx_input(onnx_path: Path, image: str | None, seed: int):
    """(int8 input, label) for a model without a config: a JPEG prepared the on-board way (YUV byte - 128) for an
    (N, 3, H, W) input, else seeded random int8 of the input's shape."""
    import numpy as np

    from fcos3d.errors import Fcos3dError

    sim = _simulator(onnx_path)
    if len(sim.graph.inputs) != 1:
        raise Fcos3dError(f"{onnx_path}: fcos3d trace runs models with one input, this one has {sim.input_names}")
    shape = sim.graph.inputs[0].shape
    if any(d is None for d in shape):
        raise Fcos3dError(
            f"{onnx_path}: input shape {shape} is symbolic; fix it first (onnxsim --overwrite-input-shape)"
        )
    if image is None or image == "random":
        rng = np.random.default_rng(seed)
        return sim, rng.integers(-128, 128, shape, dtype=np.int8), f"random int8 {tuple(shape)} (seed {seed})"
    path = Path(image)
    if not path.is_file():
        raise Fcos3dError(f"--image {path}: no such file; give a JPEG or 'random'")
    if len(shape) != 4 or shape[1] != 3:
        raise Fcos3dError(f"--image {path}: the model's input {tuple(shape)} is not an (N, 3, H, W) image; use random")
    from fcos3d.runtime.preprocess import prepare_jpeg

    try:
        x = prepare_jpeg(path.read_bytes(), np.eye(3), (int(shape[3]), int(shape[2]))).x
    except Fcos3dError:
        raise Fcos3dError(f"--image {path}: not a readable image; give a JPEG file or 'random'") from None
    return sim, np.repeat(x, shape[0], axis=0), str(path)


def _simulator(onnx_path: Path):
    """The simulator of ``onnx_path``; an ONNX that does not read is one error naming the file."""
    from fcos3d.runtime.reference.simulator import Simulator

    from .boundary import onnx_error

    try:
        return Simulator(onnx_path)
    except Exception as exc:
        err = onnx_error(onnx_path, exc)
        if err is None:
            raise
        raise err from None


@click.command("trace")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None, help="Experiment config.")
@click.option(
    "--onnx",
    "onnx_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="int8 ONNX (default with --config: its export). Without --config: any model fcos3d-compile takes.",
)
@click.option(
    "--image",
    default=None,
    help="A val index (with --config, default 0), a JPEG file (prepared the on-board way), or 'random'.",
)
@click.option(
    "--target",
    "boards",
    multiple=True,
    default=("host",),
    show_default=True,
    help="Board(s) of the compiled debug build (repeat for several): a TVM board runs here or over --device, an "
    "Ethos-U board (ethos-u55-256, ethos-u65-512, ethos-u85-256) on the TOSA reference model.",
)
@click.option(
    "--artifact",
    "artifact_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="A debug build (fcos3d-compile --debug-outputs) to use [default: compiled on first use].",
)
@click.option("--device", default=None, metavar="HOST:PORT", help="Run the debug build on a board over TVM RPC.")
@click.option("--no-compiled", is_flag=True, help="Leave the compiled module out (no compile).")
@click.option(
    "--onnxruntime/--no-onnxruntime",
    default=True,
    show_default=True,
    help="Also run the ONNX in onnxruntime (float QDQ: compared in LSB, not required to be equal).",
)
@click.option(
    "--float-onnx",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Without --config: the float ONNX the model was quantised from (quantize_static keeps its tensor "
    "names); adds every layer's SQNR against float.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the random input (without --config).")
@click.option("--top", default=10, show_default=True, help="Rows of the worst-SQNR-drop table.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for trace.json/.csv/.png [default: <ckpt_dir>/trace, or trace-<model> without --config].",
)
@click.option("--set", "sets", multiple=True, help=SET_HELP)
def trace_cmd(
    config_path,
    onnx_path,
    image,
    boards,
    artifact_dir,
    device,
    no_compiled,
    onnxruntime,
    float_onnx,
    seed,
    top,
    out,
    sets,
):
    """Find the first layer where two integer executors differ, and where int8 loses most SQNR.

    \b
    Every form that exists runs the same input and is compared at every layer of the int8 op list:
      float, calibration, qat      the config's checkpoints (SQNR against float, error in output LSB)
      torch int, simulator         the int model of the qat checkpoint, the exported ONNX (exact)
      compiled (<board>)           a debug build (every layer an output), here or over RPC (exact)
      onnxruntime                  the ONNX run in float (LSB; ties may round differently)
    Exit 1 when an integer executor differs from the simulator; the verdict names the layer, the element
    and both values, and whether the layer's inputs were still equal (then that layer computes differently).

    \b
    Examples:
      fcos3d trace --config configs/fcos3d_efficientnetb0_synthetic.py --image 3
      fcos3d trace --onnx model.qdq.onnx --float-onnx model.onnx --image photo.jpg
      fcos3d trace --onnx model.qdq.onnx --image random --device 192.168.1.20:9090 --target cortex-a55
      fcos3d trace --onnx model.qdq.onnx --target host --target ethos-u85-256   (+ the TOSA reference model)
    """
    from fcos3d.errors import Fcos3dError

    if config_path is None and onnx_path is None:
        raise click.UsageError("give --config C (a trained config) or --onnx MODEL.onnx (any int8 model)")
    if config_path is None and no_compiled and not onnxruntime:
        raise Fcos3dError("only the simulator would run: nothing to compare (drop --no-compiled or --no-onnxruntime)")
    if config_path is not None:
        from fcos3d.trainer.config import load_config
        from fcos3d.trainer.trace import run_trace

        cfg = load_config(config_path, overrides(sets))
        with progress_bar("trace") as progress:
            res = run_trace(
                cfg,
                image=0 if image is None else image,
                onnx_path=onnx_path,
                compiled=not no_compiled,
                board=boards,
                artifact_dir=artifact_dir,
                device=device,
                onnxruntime=onnxruntime,
                out=out,
                echo=click.echo,
                progress=progress,
            )
        report, paths = res["report"], res["paths"]
    else:
        from fcos3d.runtime.trace import trace_onnx, write_trace

        sim, x, label = _onnx_input(onnx_path, image, seed)
        artifacts = []
        if not no_compiled:
            from fcos3d.runtime.execute import load_artifact

            if artifact_dir is not None:
                artifacts.append(load_artifact(artifact_dir, device=device, onnx_path=onnx_path))
            for b in boards if artifact_dir is None else ():
                from fcos3d.compiler.build import debug_build

                art_dir = debug_build(onnx_path, b, Path("build") / f"{onnx_path.stem}-{b}-debug", click.echo)
                remote = device if b == boards[0] else None
                artifacts.append(load_artifact(art_dir, device=remote, onnx_path=onnx_path))
        report = trace_onnx(
            onnx_path,
            x,
            artifact=artifacts,
            onnxruntime=onnxruntime,
            simulator=sim,
            input_name=label,
            float_onnx=float_onnx,
        )
        paths = write_trace(report, out or Path(f"trace-{onnx_path.stem}"))

    con = console()
    con.print(f"[bold]trace of {report.input}[/]: {len(report.rows)} layers, reference {report.reference}")
    for line in report.verdict().splitlines():
        con.print(("[green]" if "==" in line or " 0 layers" in line else "[red]") + line)
    rows = []
    for e, d in report.divergences.items():
        if d is not None and e not in report.approximate:
            rows.append(
                (
                    e,
                    f"{d['index']} {d['layer']}",
                    d["kind"],
                    str(tuple(d["first"]["index"])) if d["first"] else d["problem"],
                    d["first"]["value"] if d["first"] else "-",
                    d["first"]["reference"] if d["first"] else "-",
                    f"{d['differ']}/{d['total']}",
                    "yes" if d["inputs_equal"] else "no",
                )
            )
    if rows:
        print_table(
            "first differing layer",
            rows,
            ("executor", "layer", "op", "index", "value", report.reference, "differ", "inputs equal"),
        )
    drops = report.worst_drops(top)
    if drops:
        stages = [f for f in report.forms if f != "float"]
        print_table(
            f"where int8 loses most: {len(drops)} largest SQNR drops of {len(report.rows)} layers (dB vs float)",
            [
                (r["index"], r["layer"], r["kind"], *[_fmt(r["sqnr"].get(s)) for s in stages], _fmt(r["drop_db"]))
                for r in drops
            ],
            ("#", "layer", "op", *stages, "drop"),
        )
    for note in report.notes:
        con.print(f"[yellow]note:[/] {note}")
    for kind, path in paths.items():
        click.echo(f"{kind}: {path}")
    if not report.equal:
        sys.exit(1)
