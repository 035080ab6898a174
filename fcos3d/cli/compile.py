"""`fcos3d-compile model.onnx --target BOARD [--out DIR] [--dump-ir-after PASS] [--tune-trials N --tuning-db DIR]
[--input-shape NAME=1,3,H,W ...] [--debug-outputs]`: the compiler's command.

Thin: calls ``build.compile_onnx`` and prints. Exit 2 with one error (listing every unsupported node) on
graphs outside the supported QDQ patterns, and with one error naming the input and ``--input-shape`` for a
symbolic input dim; a rich table of the artifact on success.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

# The passes' names, for --help without importing TVM (tests/compiler/test_pipeline.py: equal to PASS_NAMES).
PASSES_HELP = ("import_int_graph", "legalize", "fuse", "tune", "schedule", "lower_to_vm")


def _pass_name(ctx, param, value: str | None) -> str | None:
    if value is None:
        return None
    from fcos3d.compiler.pipeline import PASS_NAMES

    if value not in PASS_NAMES:
        raise click.BadParameter(f"{value!r} is not a pass; use one of {', '.join(PASS_NAMES)}")
    return value


def _input_shapes(ctx, param, values: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """``--input-shape NAME=1,3,H,W`` (repeatable) -> {NAME: shape}; a malformed or repeated one is a usage error."""
    shapes: dict[str, tuple[int, ...]] = {}
    for text in values:
        from fcos3d.int8.frontend import parse_input_shape

        try:
            name, shape = parse_input_shape(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        if name in shapes:
            raise click.BadParameter(f"input {name!r} is given twice")
        shapes[name] = shape
    return shapes


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--target", "board", default="host", show_default=True, help="Board name (fcos3d boards list) or a board .toml."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Artifact folder [default: build/<model stem>-<board>].",
)
@click.option(
    "--dump-ir-after",
    default=None,
    callback=_pass_name,
    metavar="PASS",
    help=f"Write the IR after this pass ({', '.join(PASSES_HELP)}) to <out>/ir-after-<pass>.py.",
)
@click.option("--no-simplify", is_flag=True, help="Skip onnxsim.")
@click.option(
    "--tune-trials",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="MetaSchedule trials for the kernels the tuning database lacks (0: untuned defaults, or only "
    "apply --tuning-db).",
)
@click.option(
    "--tuning-db",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="MetaSchedule database folder, kept and reused by later compiles (needed with --tune-trials).",
)
@click.option(
    "--input-shape",
    "input_shape",
    multiple=True,
    callback=_input_shapes,
    metavar="NAME=D0,D1,...",
    help="Static shape of an input with symbolic dims, e.g. input=1,3,224,224 (repeatable, one per input).",
)
@click.option(
    "--debug-outputs",
    is_flag=True,
    help="Debug build: every layer's output is also a module output (meta.json layer_outputs), so that "
    "`fcos3d trace` can name the first layer that differs from the simulator. Same integers per layer; slower.",
)
@click.option(
    "--profile",
    is_flag=True,
    help="After compiling for host: time every kernel of model.so on this machine and write profile.json/.csv "
    "(per layer: measured ms, MACs, our estimate, x roofline with --peak-gmacs) beside perf.json.",
)
@click.option("--profile-runs", type=click.IntRange(min=1), default=5, show_default=True, help="Runs per timing.")
@click.option(
    "--peak-gmacs",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="This core's int8 peak in GMAC/s (benchmarks/peak_probe.py) for the roofline columns.",
)
def compile_cmd(
    model: Path,
    board: str,
    out_dir: Path | None,
    dump_ir_after: str | None,
    no_simplify: bool,
    tune_trials: int,
    tuning_db: Path | None,
    input_shape: dict[str, tuple[int, ...]],
    debug_outputs: bool,
    profile: bool,
    profile_runs: int,
    peak_gmacs: float | None,
) -> None:
    """Compile an int8 QDQ ONNX model into a board artifact (model.so + meta.json)."""
    from rich.console import Console
    from rich.table import Table

    from fcos3d.boards import UnknownBoardError, load_board
    from fcos3d.compiler.build import compile_onnx
    from fcos3d.compiler.check import InputShapeError, InvalidModelError
    from fcos3d.int8.reader import UnsupportedGraphError

    try:
        b = load_board(board)
    except UnknownBoardError as exc:
        raise click.UsageError(str(exc)) from None
    from fcos3d.compiler.tosa.vela import VELA_CONFIGS

    if b.estimate_only and b.name not in VELA_CONFIGS:  # Ethos-U boards compile through TOSA + Vela
        raise click.UsageError(
            f"board {b.name!r} is estimate-only (nothing compiled here runs on its accelerator): "
            f"use `fcos3d perf --target {b.name} {model}`"
        )
    if tune_trials and tuning_db is None:
        raise click.UsageError("--tune-trials needs --tuning-db DIR to keep the tuning results")
    if tune_trials and b.cross_compiler is not None:
        raise click.UsageError(f"--tune-trials measures on this machine: tune with --target host, not {b.name!r}")
    if profile and b.name != "host":
        raise click.UsageError(f"--profile times the module on this machine: use it with --target host, not {b.name!r}")
    out_dir = out_dir or Path("build") / f"{model.stem}-{b.name}"
    try:
        result = compile_onnx(
            model,
            b,
            out_dir,
            dump_ir_after=dump_ir_after,
            run_simplify=not no_simplify,
            tune_trials=tune_trials,
            tuning_db=tuning_db,
            input_shapes=input_shape or None,
            layer_outputs=debug_outputs,
        )
    except (UnsupportedGraphError, InvalidModelError, InputShapeError) as exc:
        click.echo(f"error: {model}: {exc}", err=True)
        sys.exit(2)
    except FileNotFoundError as exc:  # a missing cross compiler
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # onnx/protobuf reading errors do not name the file; the rest: cli/boundary.py
        from .boundary import onnx_error

        if onnx_error(model, exc) is None:
            raise
        click.echo(f"error: {onnx_error(model, exc)}", err=True)
        sys.exit(2)
    console = Console()
    if result.dumped_ir is not None:
        ir_path = out_dir / f"ir-after-{dump_ir_after}.py"
        from fcos3d.io import atomic_write_text

        atomic_write_text(ir_path, result.dumped_ir)
        console.print(f"IR after {dump_ir_after}: {ir_path}")
    if result.note:
        console.print(f"[yellow]note:[/] {result.note}")
    table = Table(title=f"fcos3d-compile {model.name} -> {b.name}")
    for col in ("tensor", "name", "shape", "dtype"):
        table.add_column(col)
    layers = set(result.meta.get("layer_outputs", {}).values())
    for kind in ("inputs", "outputs"):
        for t in result.meta[kind]:
            if t["name"] in layers and t["name"].startswith("layer:"):
                continue  # the debug build's layer outputs: counted below, not listed
            table.add_row(kind[:-1], t["name"], str(tuple(t["shape"])), t["dtype"])
    console.print(table)
    if layers:
        console.print(f"debug build: {len(result.meta['layer_outputs'])} layer outputs (meta.json layer_outputs)")
    times = ", ".join(f"{k} {v:.2f} s" for k, v in result.seconds.items())
    console.print(f"artifact: {result.out_dir} ({result.library.name}, meta.json); {times}")
    if profile:
        from fcos3d.compiler.profile import profile_artifact

        prof = profile_artifact(result.out_dir, onnx_path=model, runs=profile_runs, peak_gmacs_per_core=peak_gmacs)
        t = prof["totals"]
        roof = f", {t['x_roofline']:.1f}x the roofline" if t.get("x_roofline") else ""
        console.print(
            f"measured on this machine ({prof['threads']} thread(s)): {t['module_ms']:.2f} ms for the module, "
            f"estimate {t['estimate_ms']:.2f} ms{roof}; by kind: "
            + ", ".join(f"{k} {v:.2f}" for k, v in list(prof["by_kind_ms"].items())[:6])
        )
        top = sorted(prof["layers"], key=lambda r: -(r.get("in_module_ms") or 0.0))[:10]
        table = Table(title="slowest 10 layers (ms in the module)")
        for col in ("layer", "op", "ms", "estimate ms", "x roofline"):
            table.add_column(col)
        for r in top:
            x = r.get("x_roofline")
            table.add_row(
                r["name"],
                r.get("op", ""),
                f"{r['in_module_ms']:.3f}",
                f"{r.get('estimate_ms') or 0:.3f}",
                "-" if x is None else f"{x:.1f}",
            )
        console.print(table)
        console.print(f"profile: {prof['files']['json']}, {prof['files']['csv']}")
    perf = result.out_dir / "perf.json"
    if perf.is_file():
        import json

        doc = json.loads(perf.read_text())
        t = doc["totals"]
        if "vela_ms" in t:  # an Ethos-U artifact: Vela's estimate of its command stream beside ours
            console.print(
                f"{b.name}: Vela {t['vela_ms']:.3f} ms ({doc['vela']['npu_ops']} ops on the NPU, "
                f"{doc['vela']['cpu_ops']} on the CPU), our estimate {t['estimate_ms']:.3f} ms "
                f"({t['estimate_vs_vela']:+.0%}): perf.html, perf.csv, perf.json; no NPU hardware ran it, the "
                "TOSA reference model (the NPU's integer spec) runs model.tosa"
            )
            return
        console.print(
            f"estimated on {b.name}: {t['latency_ms']:.3f} ms ({t['fps']:.1f} FPS), "
            f"{t['gmacs']:.3f} GMACs, MAC utilisation {t['mac_utilisation']:.1%}: perf.html, perf.csv, perf.json"
        )


def main() -> None:
    """Console entry point (pyproject: fcos3d-compile)."""
    from .boundary import run_command

    run_command(compile_cmd, "fcos3d-compile")  # expected failures: one line, exit 2


if __name__ == "__main__":
    main()
