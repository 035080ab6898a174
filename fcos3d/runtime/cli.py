"""`fcos3d-validate --align-bpu --config C [--artifact DIR] [--device HOST:PORT] [--limit N]`: HAT's align_bpu.

Thin: finds the ONNX, artifact and val split from the config, calls ``validate.align_bpu`` and prints the tables.
Exit 0 bit-exact, 1 on any mismatching output element, 2 on bad input (one line: the file and the fix).
Loading the config imports torch (its classes are real model classes); the runtime library itself never does.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import click

from fcos3d.errors import Fcos3dError

STAGES = ("float", "calibration", "qat", "int_infer")
ARTIFACT_DIR = "artifact-host"
REPORT_DIR = "align_bpu"


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _onnx_of(cfg: dict, config_path: Path) -> Path:
    from fcos3d.trainer.stages import work_dir_of

    path = Path((cfg.get("export_cfg") or {}).get("path") or work_dir_of(cfg) / "model_int8.onnx")
    if not path.is_file():
        _fail(f"{path}: no int8 ONNX (export_cfg.path of {config_path}); run `fcos3d export --config {config_path}`")
    return path


def _default_artifact(onnx_path: Path, work_dir: Path, echo) -> Path:
    """<ckpt_dir>/artifact-host, compiled for this host when missing or compiled from another ONNX."""
    from fcos3d.compiler.build import compile_onnx

    out = work_dir / ARTIFACT_DIR
    meta_path = out / "meta.json"
    if meta_path.is_file():
        try:
            want = json.loads(meta_path.read_text()).get("onnx", {}).get("sha256")
        except (json.JSONDecodeError, AttributeError):
            want = None
        if want == hashlib.sha256(onnx_path.read_bytes()).hexdigest():
            return out
        echo(f"{out} was compiled from another ONNX: recompiling {onnx_path} for host")
    else:
        echo(f"compiling {onnx_path} for host into {out} (once)")
    compile_onnx(onnx_path, "host", out)
    return out


def _stage_metrics(work_dir: Path) -> dict[str, dict | None]:
    """NDS/mAP that `fcos3d predict --stage S` wrote (<ckpt_dir>/predict/<stage>/metrics.json), None where absent."""
    out = {}
    for stage in STAGES:
        path = work_dir / "predict" / stage / "metrics.json"
        try:
            out[stage] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            out[stage] = None
    return out


def _fmt(metrics: dict | None, key: str) -> str:
    v = None if metrics is None else metrics.get(key)
    return "—" if v is None else f"{float(v):.4f}"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--align-bpu", "align", is_flag=True, help="Compare board and simulator outputs bit for bit over the "
              "val split's original JPEGs, and score the board's detections (the only mode so far).")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="Experiment config, e.g. configs/fcos3d_efficientnetb0_synthetic.py.")
@click.option("--artifact", "artifact_dir", type=click.Path(path_type=Path), default=None,
              help="Artifact folder (model.so + meta.json) [default: <ckpt_dir>/artifact-host, compiled if missing].")
@click.option("--device", default=None, help="HOST:PORT of `python -m tvm.exec.rpc_server` on the board "
              "[default: run the artifact in this process].")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Validate only the first N camera images.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder [default: <ckpt_dir>/align_bpu].")
@click.option("--set", "sets", multiple=True, help="Override a param() of the config, NAME=VALUE (repeatable), "
              "e.g. --set data_root=demo_out/nuscenes_lmdb.")
def validate_cmd(align: bool, config_path: Path, artifact_dir: Path | None, device: str | None, limit: int | None,
                 out_dir: Path | None, sets: tuple[str, ...]) -> None:
    """Validate a compiled FCOS3D on the board against the integer simulator (HAT's align_bpu)."""
    if not align:
        raise click.UsageError("pass --align-bpu (the only validation so far)")
    # Reuses the main CLI's rich helpers (both are command modules; library code never imports either).
    from fcos3d.console import console as _console, overrides as _overrides, print_table, progress_bar

    from fcos3d.compiler.check import InvalidModelError
    from fcos3d.data.record import RecordError

    from .execute import parse_device
    from .reference.graph import UnsupportedGraphError
    from .validate import REPORT_FILE, align_bpu

    console = _console()
    try:
        from fcos3d.trainer.config import build, load_config
        from fcos3d.trainer.stages import work_dir_of

        parse_device(device)
        cfg = load_config(config_path, _overrides(sets))
        work_dir = work_dir_of(cfg)
        onnx_path = _onnx_of(cfg, config_path)
        if "val_data_loader" not in cfg:
            _fail(f"{config_path}: no val_data_loader; add one (its LMDB's meta names the nuScenes root)")
        split_meta = build(cfg["val_data_loader"]["dataset"], "val_data_loader.dataset").meta
        post = build(cfg["post_process"], "post_process") if "post_process" in cfg else None
        if artifact_dir is None:
            artifact_dir = _default_artifact(onnx_path, work_dir, console.print)
        out_dir = out_dir or work_dir / REPORT_DIR
        with progress_bar(f"align-bpu on {device or 'this host'}") as progress:
            report = align_bpu(artifact_dir, onnx_path, split_meta["dataroot"], split_meta["version"],
                               split=split_meta.get("split", "val"), device=device, limit=limit, out_dir=out_dir,
                               progress=progress, post=post)  # fmt: skip
    except (Fcos3dError, InvalidModelError, UnsupportedGraphError, RecordError) as exc:
        _fail(str(exc).splitlines()[0])

    rows = []
    for o in report["outputs"]:
        first = o["first"]
        where = (o["problem"] or "—") if first is None else (
            f"image {first['image']} ({Path(first['file_name']).name}) at {tuple(first['index'])}: "
            f"board {first['board']}, simulator {first['sim']}")  # fmt: skip
        rows.append((o["name"], o["mismatches"], o["total"], o["max_abs_diff"], where))
    print_table(f"board vs simulator: {report['images']} images on {report['device']} ({report['board']})", rows,
                ("output", "mismatches", "elements", "max |diff|", "first mismatch"))  # fmt: skip
    stages = _stage_metrics(work_dir)
    stages["board"] = report["metrics"]
    print_table("accuracy (nuScenes val" + (f", board on the first {limit} images" if limit else "") + ")",
                [(s, _fmt(m, "NDS"), _fmt(m, "mAP")) for s, m in stages.items()], ("stage", "NDS", "mAP"))  # fmt: skip
    verdict = "[green]bit-exact[/]" if report["equal"] else f"[red]{report['mismatches']} elements differ[/]"
    console.print(f"{verdict}; report: {Path(out_dir) / REPORT_FILE}")
    sys.exit(0 if report["equal"] else 1)


def main() -> None:
    """Console entry point (pyproject: fcos3d-validate)."""
    validate_cmd.main(prog_name="fcos3d-validate")


if __name__ == "__main__":
    main()
