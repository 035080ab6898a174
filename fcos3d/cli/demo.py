"""`fcos3d demo`: HAT's FCOS3D workflow end to end on synthetic nuScenes data, on a laptop.

synth -> pack -> ground-truth pictures -> float training -> calibration -> QAT -> int_infer -> int8 QDQ ONNX
-> compile for each target board -> align-bpu (board vs simulator, every output element of every val image)
-> perf reports (estimated latency per board) -> inference pictures -> a summary (terminal table,
OUT/summary.json, OUT/SUMMARY.md, OUT/pictures/accuracy.png).

Library code: each step returns data; ``report`` is called with (step, message) as the demo goes.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fcos3d.errors import Fcos3dError
from fcos3d.io import atomic_write_json, atomic_write_text, atomic_writer

__all__ = ["DemoOptions", "run_demo", "STAGE_ORDER"]

STAGE_ORDER = ("float", "calibration", "qat", "int_infer", "board")
PERF_BOARDS = ("host", "cortex-a55", "ethos-u65-512", "ethos-u55-256", "ethos-u85-256", "journey5-bayes")


@dataclass
class DemoOptions:
    out: Path = Path("demo_out")
    seed: int = 0
    scenes: int = 10
    samples_per_scene: int = 10  # 480 train / 120 val images: the whole flow fits 15 min on 2 cores
    image_size: tuple[int, int] = (800, 450)
    config_path: Path | None = None
    float_epochs: int = 3
    calibration_steps: int = 10
    qat_steps: int = 40  # QAT fine-tunes from calibrated weights; a few dozen steps show the stage
    compile_targets: tuple[str, ...] = ("host", "cortex-a55", "ethos-u55-256")
    perf_boards: tuple[str, ...] = PERF_BOARDS
    align_limit: int | None = None  # None: every val image
    compare: bool = True  # every stage's gap to float with a paired bootstrap interval (fcos3d compare-stages)
    trace_image: int | None = 0  # val image traced layer by layer through every form (None: no trace)
    npu_align_images: int = 12  # val images align-bpu runs on the TOSA reference model (about 3 s each at 384x256)
    infer_images: tuple[int, ...] = (0, 1, 3)
    # The demo's short float run scores its boxes low (0.1-0.25 on the default set): 0.3, right for a trained
    # model, would leave its pictures empty.
    score_th: float = 0.2
    stop_after: str | None = None  # "data" | "float": end early (the flow up to there)
    extra_sets: dict = field(default_factory=dict)


def default_config() -> Path:
    return Path(__file__).resolve().parents[2] / "configs" / "fcos3d_efficientnetb0_synthetic.py"


class _Steps:
    """Times the demo's steps and keeps the rows of the summary."""

    def __init__(self, report: Callable[[str, str], None]):
        self.report = report
        self.rows: list[dict] = []

    def done(self, step: str, t0: float, output: str, what: str) -> None:
        row = {"step": step, "seconds": round(time.perf_counter() - t0, 1), "output": output, "what": what}
        self.rows.append(row)
        self.report(step, f"{what} ({row['seconds']:.0f} s) -> {output}")


def _latest_eval(work_dir: Path, prefix: str) -> Path:
    """The trainer's newest validation folder <work_dir>/eval/<prefix>* (its last validation)."""
    found = sorted(work_dir.glob(f"eval/{prefix}*/metrics.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise Fcos3dError(
            f"{work_dir / 'eval'}: no {prefix} validation was written; check the config's val_data_loader"
        )
    return found[-1].parent


def _copy_eval(src: Path, dst: Path) -> dict:
    """A stage's validation (trainer eval folder) becomes its `fcos3d predict` result: metrics + result JSON."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.json", "results_nusc.json"):
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
    metrics = json.loads((dst / "metrics.json").read_text())
    metrics["result_file"] = str(dst / "results_nusc.json")
    return metrics


def _accuracy_png(acc: dict[str, dict], path: Path) -> Path:
    """Bar chart of NDS and mAP per stage."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    stages = [s for s in STAGE_ORDER if acc.get(s)]
    fig = Figure(figsize=(7, 3.6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = range(len(stages))
    for off, key, colour in ((-0.2, "NDS", "#3b6fb6"), (0.2, "mAP", "#e08a2c")):
        vals = [acc[s][key] for s in stages]
        bars = ax.bar([i + off for i in x], vals, width=0.4, label=key, color=colour)
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(x), stages)
    ax.set_ylabel("nuScenes val")
    ax.set_title("FCOS3D accuracy per stage (synthetic nuScenes, mini_val)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_writer(path) as f:
        fig.savefig(f, format="png")
    return path


def _markdown(summary: dict) -> str:
    lines = ["# fcos3d demo summary", "", f"Total {summary['seconds']:.0f} s. Output folder: `{summary['out']}`.", ""]
    if summary.get("accuracy"):
        lines += [
            "## Accuracy (nuScenes metric, val split)",
            "",
            "| stage | NDS | mAP | mATE | mAOE |",
            "|---|---|---|---|---|",
        ]
        for s in STAGE_ORDER:
            m = summary["accuracy"].get(s)
            if m:
                lines.append(
                    f"| {s} | {m['NDS']:.4f} | {m['mAP']:.4f} | {m.get('mATE', float('nan')):.3f} | {m.get('mAOE', float('nan')):.3f} |"
                )
        lines.append("")
    if summary.get("compare"):
        c = summary["compare"]
        lines += [
            "## Every stage against float, paired (fcos3d compare-stages)",
            "",
            c["title"] + ".",
            "",
            "| " + " | ".join(c["header"]) + " |",
            "|" + "---|" * len(c["header"]),
            *["| " + " | ".join(str(x) for x in r) + " |" for r in c["rows"]],
            "",
        ]
    if summary.get("align"):
        a = summary["align"]
        lines += [
            "## Board vs simulator (align-bpu)",
            "",
            f"{a['images']} images, {a['elements']:,} output elements, **{a['mismatches']} mismatches** "
            f"({a['device']}, board {a['board']}).",
            "",
        ]
    for a in summary.get("align_npu", []):
        lines += [
            f"{a['board']}: {a['images']} images, {a['elements']:,} output elements, **{a['mismatches']} mismatches** "
            f"({a['device']}).",
            "",
        ]
    if summary.get("trace"):
        t = summary["trace"]
        lines += [
            "## Layer by layer (fcos3d trace)",
            "",
            f"{t['image']}: {t['layers']} layers through {', '.join(t['executors'])}.",
            "",
            *[f"- {line}" for line in t["verdict"].splitlines()],
            "",
            "Largest int8 SQNR drops (dB against float):",
            "",
            "| layer | op | int SQNR dB | drop dB |",
            "|---|---|---|---|",
            *[
                f"| {r['layer']} | {r['kind']} | {r['int_sqnr_db']:.1f} | {r['drop_db']:.1f} |"
                for r in t["worst_drops"]
            ],
            "",
        ]
    if summary.get("compile"):
        lines += ["## Compiled artifacts", "", "| target | status | compile s | folder |", "|---|---|---|---|"]
        for c in summary["compile"]:
            lines.append(f"| {c['target']} | {c['status']} | {c.get('seconds', '')} | {c.get('dir', '')} |")
        lines.append("")
    if summary.get("perf"):
        lines += [
            "## Estimated latency per board",
            "",
            "| board | accelerator | latency ms | FPS | MAC utilisation |",
            "|---|---|---|---|---|",
        ]
        for p in summary["perf"]:
            lines.append(
                f"| {p['board']} | {p['accelerator']} | {p['latency_ms']:.2f} | {p['fps']:.1f} | {p['mac_utilisation']:.1%} |"
            )
        lines.append("")
    lines += ["## Steps", "", "| step | seconds | what | output |", "|---|---|---|---|"]
    for r in summary["steps"]:
        lines.append(f"| {r['step']} | {r['seconds']} | {r['what']} | `{r['output']}` |")
    if summary.get("pictures"):
        lines += ["", "## Pictures", ""] + [f"- `{p}`" for p in summary["pictures"]]
    return "\n".join(lines) + "\n"


def run_demo(
    opts: DemoOptions,
    report: Callable[[str, str], None] = lambda s, m: None,
    progress_factory=None,
    train_reporter_factory=None,
) -> dict:
    """Run the flow; returns the summary dict (also written to OUT/summary.json and OUT/SUMMARY.md).

    progress_factory(description) -> context manager yielding progress(done, total) (the CLI's rich bar);
    train_reporter_factory(stage) -> a trainer Reporter (the CLI's live loss line).
    """
    from contextlib import nullcontext

    from fcos3d.data.packer import pack_nuscenes
    from fcos3d.data.show import show_record
    from fcos3d.synth import write_synthetic_nuscenes

    def bar(description: str):
        return progress_factory(description) if progress_factory else nullcontext(None)

    t_start = time.perf_counter()
    out = Path(opts.out)
    version = "v1.0-mini"
    root, lmdb_root, pictures, work_dir = out / "nuscenes", out / "nuscenes_lmdb", out / "pictures", out / "work_dir"
    steps = _Steps(report)
    summary: dict = {
        "out": str(out),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "accuracy": {},
        "compile": [],
        "perf": [],
        "pictures": [],
    }

    # 1-3. data
    t0 = time.perf_counter()
    with bar("synth") as progress:
        synth = write_synthetic_nuscenes(
            root,
            version=version,
            seed=opts.seed,
            scenes=opts.scenes,
            samples_per_scene=opts.samples_per_scene,
            image_size=opts.image_size,
            progress=progress,
        )
    steps.done("synth", t0, str(root), f"{synth.get('samples', '?')} samples, {synth.get('annotations', '?')} boxes")
    for split in ("train", "val"):
        t0 = time.perf_counter()
        with bar(f"pack {split}") as progress:
            packed = pack_nuscenes(
                root, split_name=split, version=version, target_data_dir=lmdb_root, num_workers=2, progress=progress
            )
        steps.done(f"pack {split}", t0, str(packed["path"]), f"{packed['records']} images, {packed['boxes']} boxes")
    t0 = time.perf_counter()
    pictures.mkdir(parents=True, exist_ok=True)
    n_val = packed["records"]
    shown = [
        show_record(lmdb_root / "val_lmdb", index=i, save_path=pictures / f"gt_val_{i:04d}.png")
        for i in opts.infer_images
        if i < n_val
    ]
    summary["pictures"] += [str(p) for p in shown]
    steps.done("show", t0, str(pictures), ", ".join(p.name for p in shown))
    if opts.stop_after == "data" or opts.float_epochs <= 0:
        return _finish(summary, steps, out, t_start)

    # 4. float
    from fcos3d.trainer.config import load_config
    from fcos3d.trainer.stages import run_export, run_predict, run_train

    config_path = Path(opts.config_path or default_config())
    if not config_path.is_file():
        raise Fcos3dError(
            f"{config_path}: config not found; pass --config configs/fcos3d_efficientnetb0_synthetic.py from a checkout"
        )
    sets = {
        "data_root": str(lmdb_root),
        "ckpt_dir": str(work_dir),
        "float_epochs": opts.float_epochs,
        "val_interval": 0,
        "calibration_steps": opts.calibration_steps,
        "qat_epochs": 1,
        "qat_steps": opts.qat_steps,
    } | dict(opts.extra_sets)
    cfg = load_config(config_path, {k: str(v) for k, v in sets.items()})

    def train(stage: str) -> dict:
        rep = train_reporter_factory(stage) if train_reporter_factory else None
        try:  # the reporter's live bar is on screen: validation draws none of its own
            return run_train(cfg, stage, reporter=rep)
        finally:
            if rep is not None and hasattr(rep, "close"):
                rep.close()

    t0 = time.perf_counter()
    trained = train("float")
    acc = summary["accuracy"]
    acc["float"] = _copy_eval(_latest_eval(work_dir, "float-epoch"), work_dir / "predict" / "float")
    steps.done(
        "train float",
        t0,
        trained["best_path"],
        f"{trained['steps']} steps, NDS {acc['float']['NDS']:.4f} mAP {acc['float']['mAP']:.4f}",
    )
    if opts.stop_after == "float":
        return _finish(summary, steps, out, t_start)

    # 5-7. calibration, QAT, the integer model
    t0 = time.perf_counter()
    calib = train("calibration")
    acc["calibration"] = _copy_eval(_latest_eval(work_dir, "calibration"), work_dir / "predict" / "calibration")
    steps.done(
        "calibration", t0, calib["best_path"], f"{calib['steps']} batches observed, NDS {acc['calibration']['NDS']:.4f}"
    )
    t0 = time.perf_counter()
    qat = train("qat")
    acc["qat"] = _copy_eval(_latest_eval(work_dir, "qat-epoch"), work_dir / "predict" / "qat")
    steps.done("train qat", t0, qat["best_path"], f"{qat['steps']} steps, NDS {acc['qat']['NDS']:.4f}")
    t0 = time.perf_counter()
    with bar("predict int_infer") as progress:
        acc["int_infer"] = run_predict(cfg, "int_infer", progress=progress)
    steps.done(
        "predict int_infer",
        t0,
        acc["int_infer"]["result_file"],
        f"integer model, NDS {acc['int_infer']['NDS']:.4f} mAP {acc['int_infer']['mAP']:.4f}",
    )

    # 8. export
    t0 = time.perf_counter()
    exported = run_export(cfg)
    onnx_path = Path(exported["path"])
    steps.done(
        "export",
        t0,
        str(onnx_path),
        f"int8 QDQ ONNX, {sum(exported['nodes'].values())} nodes, {exported['outputs']} outputs",
    )

    # 9. compile for each target
    from fcos3d.compiler.build import compile_onnx

    artifacts = {}
    for target in opts.compile_targets:
        t0 = time.perf_counter()
        folder = work_dir / f"artifact-{target}"
        try:
            res = compile_onnx(onnx_path, target, folder)
        except Exception as exc:  # a missing cross compiler must not end the demo: say why and go on
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            summary["compile"].append({"target": target, "status": f"skipped: {reason}"})
            steps.done(f"compile {target}", t0, "-", f"skipped: {reason}")
            continue
        artifacts[target] = folder
        secs = round(time.perf_counter() - t0, 1)
        summary["compile"].append({"target": target, "status": "ok", "seconds": secs, "dir": str(folder)})
        what = (
            f"TOSA + Vela command stream ({res.meta['vela']['npu_ops']} ops on the NPU, "
            f"{res.meta['vela']['cpu_ops']} on the CPU) + perf, ours beside Vela's"
            if res.meta.get("backend") == "tosa"
            else "TVM library + meta.json + perf reports"
        )
        steps.done(f"compile {target}", t0, str(res.library), what)

    # 10. align-bpu on the host artifact over every val image
    if "host" in artifacts:
        from fcos3d.trainer.align import run_align_bpu

        t0 = time.perf_counter()
        with bar("align-bpu (board vs simulator)") as progress:
            rep = run_align_bpu(
                cfg,
                artifact_dir=artifacts["host"],
                onnx_path=onnx_path,
                limit=opts.align_limit,
                out_dir=work_dir / "align_bpu",
                progress=progress,
            )
        elements = sum(o["total"] for o in rep["outputs"])
        summary["align"] = {
            "images": rep["images"],
            "elements": elements,
            "mismatches": rep["mismatches"],
            "equal": rep["equal"],
            "device": rep["device"],
            "board": "host",
        }
        acc["board"] = rep["metrics"]
        nds = rep["metrics"].get("NDS")  # None: --align-limit left no sample whole
        board_nds = "—" if nds is None else f"{nds:.4f}" + (" (the samples seen whole)" if rep.get("scope") else "")
        steps.done(
            "align-bpu",
            t0,
            str(work_dir / "align_bpu"),
            f"{rep['images']} images, {rep['mismatches']} of {elements:,} elements differ, board NDS {board_nds}",
        )

    # 10. then every stage against float on the same images, paired (fcos3d compare-stages)
    if opts.compare:
        from fcos3d.trainer.compare import compare_stages, compare_table

        t0 = time.perf_counter()
        board_results = None
        if summary.get("align") and opts.align_limit is None:  # the board's boxes cover the whole val split
            board_results = work_dir / "align_bpu" / "results_nusc.json"
        # the demo's val split is mini_val: 2 scenes, too few units for a scene bootstrap, so samples
        compared = compare_stages(
            cfg,
            stages=[s for s in ("calibration", "qat", "int_infer") if s in acc],
            board_results=board_results,
            unit="sample",
            out_dir=work_dir / "compare",
            progress_factory=progress_factory or (lambda d: nullcontext(lambda done, total: None)),
        )
        title, rows, header = compare_table(compared)
        summary["compare"] = {"title": title, "header": list(header), "rows": [list(r) for r in rows]}
        summary["pictures"].append(compared["plot"])
        qat_gap = compared["stages"].get("qat", {}).get("gap", {}).get("NDS")
        steps.done(
            "compare stages",
            t0,
            compared["json"],
            f"{len(rows)} stages on {compared['split']['samples']} samples, paired bootstrap over samples"
            + (
                f"; QAT - float NDS {qat_gap['value']:+.4f} [{qat_gap['lo']:+.4f}, {qat_gap['hi']:+.4f}]"
                if qat_gap
                else ""
            ),
        )

    # 10a. align-bpu on each Ethos-U artifact: model.tosa on the TOSA reference model (the NPU's integer spec)
    from fcos3d.compiler.tosa.vela import VELA_CONFIGS

    npu_boards = [t for t in artifacts if t in VELA_CONFIGS]
    for target in npu_boards:
        from fcos3d.trainer.align import run_align_bpu

        t0 = time.perf_counter()
        with bar(f"align-bpu {target} (TOSA reference model)") as progress:
            rep = run_align_bpu(
                cfg,
                artifact_dir=artifacts[target],
                onnx_path=onnx_path,
                limit=opts.npu_align_images,
                out_dir=work_dir / f"align_bpu-{target}",
                progress=progress,
            )
        elements = sum(o["total"] for o in rep["outputs"])
        summary.setdefault("align_npu", []).append(
            {
                "board": target,
                "images": rep["images"],
                "elements": elements,
                "mismatches": rep["mismatches"],
                "equal": rep["equal"],
                "device": rep["device_label"],
            }
        )
        steps.done(
            f"align-bpu {target}",
            t0,
            str(work_dir / f"align_bpu-{target}"),
            f"{rep['images']} images on the TOSA reference model, {rep['mismatches']} of {elements:,} elements differ",
        )

    # 10b. trace one val image through every form, layer by layer (fcos3d trace)
    if opts.trace_image is not None:
        from fcos3d.trainer.trace import run_trace

        t0 = time.perf_counter()
        with bar("trace (every form, every layer)") as progress:
            traced = run_trace(
                cfg,
                image=opts.trace_image,
                onnx_path=onnx_path,
                compiled="host" in artifacts,
                board=["host", *npu_boards[:1]],
                onnxruntime=True,
                out=work_dir / "trace",
                progress=progress,
            )
        report = traced["report"]
        summary["trace"] = {
            "image": report.input,
            "layers": len(report.rows),
            "executors": report.executors,
            "equal": report.equal,
            "verdict": report.verdict(),
            "worst_drops": [
                {"layer": r["layer"], "kind": r["kind"], "int_sqnr_db": r["sqnr"].get("int"), "drop_db": r["drop_db"]}
                for r in report.worst_drops(5)
            ],
        }
        png = pictures / "trace_sqnr_by_layer.png"
        png.write_bytes(traced["paths"]["png"].read_bytes())
        summary["pictures"].append(str(png))
        differing = sum(1 for e in report.exact if report.divergences.get(e))
        steps.done(
            "trace",
            t0,
            str(work_dir / "trace"),
            f"{len(report.rows)} layers x {len(report.executors)} integer executors: "
            + ("all equal" if report.equal else f"{differing} executors differ")
            + f", worst int SQNR drop at {report.worst_drops(1)[0]['layer'] if report.worst_drops(1) else '-'}",
        )

    # 11. perf reports for the boards
    from fcos3d.boards import load_board
    from fcos3d.compiler.check import check_onnx
    from fcos3d.compiler.latency.estimate import estimate
    from fcos3d.compiler.latency.report import write_report

    t0 = time.perf_counter()
    graph = check_onnx(onnx_path).graph
    for name in opts.perf_boards:
        est = estimate(graph, load_board(name))
        paths = write_report(est, out / "perf" / name)
        summary["perf"].append(
            {"board": name, "accelerator": est.accelerator, **est.totals(), "html": str(paths["html"])}
        )
    fastest = min(summary["perf"], key=lambda p: p["latency_ms"]) if summary["perf"] else None
    steps.done(
        "perf",
        t0,
        str(out / "perf"),
        f"{len(summary['perf'])} boards estimated"
        + (f"; fastest {fastest['board']} {fastest['latency_ms']:.2f} ms" if fastest else ""),
    )

    # 12. pictures: predicted 3D boxes (integer model) beside the ground truth, and the accuracy chart
    from fcos3d.data.dataset import NuscenesMonoDataset
    from fcos3d.trainer.infer import infer_image

    t0 = time.perf_counter()
    val = NuscenesMonoDataset(lmdb_root / "val_lmdb", transforms=[])
    drawn = []
    for i in opts.infer_images:
        if i >= len(val):
            continue
        image = Path(val.meta["dataroot"]) / val.read_record(i)["file_name"]
        res = infer_image(
            cfg,
            image,
            stage="int_infer",
            score_th=opts.score_th,
            save_path=pictures / f"pred_int_val_{i:04d}.png",
            with_gt=True,
            version=version,
        )
        drawn.append(str(res["path"]))
    drawn.append(str(_accuracy_png(acc, pictures / "accuracy.png")))
    summary["pictures"] += drawn
    steps.done("pictures", t0, str(pictures), f"{len(drawn)} pictures (3D boxes + bird's-eye view, accuracy chart)")
    return _finish(summary, steps, out, t_start)


def _finish(summary: dict, steps: _Steps, out: Path, t_start: float) -> dict:
    summary["steps"] = steps.rows
    summary["seconds"] = round(time.perf_counter() - t_start, 1)
    for m in summary["accuracy"].values():  # keep the summary small: headline metrics only
        for k in [k for k in m if k.startswith("class_")]:
            m.pop(k)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "SUMMARY.md", _markdown(summary))
    return summary
