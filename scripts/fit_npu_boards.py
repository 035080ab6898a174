"""Our Ethos-U latency estimate against Vela's, and the fit of the Ethos-U board files to Vela.

For every model (FCOS3D QDQ at 512x896 and at the synthetic size 384x256, the committed narrow golden FCOS3D,
the QDQ models of the [int8-ops] zoo) and every Ethos-U board: emit TOSA (fcos3d.compiler.tosa.emit), run Vela
5.2.0 with the board's explicit settings (fcos3d.compiler.tosa.vela.VELA_CONFIGS), map Vela's per-op cycles to
our layers (TosaProgram.op_of, perf.side_by_side) and compare with fcos3d.compiler.latency.estimate.

    .venv/bin/python scripts/fit_npu_boards.py [--out build/npu_vs_vela] [--models a,b] [--boards b1,b2]
        [--fit] [--markdown] [--json F] [--board-dir DIR]

Vela's results are cached on disk (OUT/vela/<model>/<board>.json, keyed by the sha256 of the .tosa, the Vela
settings and Vela's version); each compile takes 1-3 s here, the FCOS3D export at 512x896 most of a first run.
Zoo models the TOSA emitter refuses are listed as skipped (ConvTranspose, Softmax, the LUT average pool).
``--board-dir`` reads the three board files from another folder (e.g. the committed ones before the fit).

``--fit`` searches the board figures the model leaves free (block geometry, elementwise_per_cycle,
op_overhead_cycles, the bandwidths, the per-kind figures; macs_per_cycle, clock_hz and sram_bytes stay the
published / Vela memory-mode values; FROZEN keeps Ethos-U55-256's Vela geometry and bandwidths) on FIT_MODELS
and reports the rest as out-of-sample checks: a coordinate search from a few start geometries minimising the
weighted mean over the fit models of log(ours / Vela)^2 + log(1 + per-layer median abs. error)^2 (FCOS3D
graphs weigh 3, zoo graphs 1; a fit model's total more than TOTAL_MARGIN off adds a penalty), its result
rounded to 2 significant digits; ``--quick`` searches from the board's own geometry only. It prints the figures; the board
files are edited by hand from them (each fitted figure's source says so).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from types import MappingProxyType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # bench_latency.build_models
sys.path.insert(0, str(ROOT / "tests" / "int8"))  # zoo.py

from fcos3d.boards import HOST_ONLY_FIGURES, OPTIONAL_FIGURES, Accelerator, Figure, load_board  # noqa: E402
from fcos3d.compiler.latency.estimate import estimate  # noqa: E402

BOARDS = ("ethos-u55-256", "ethos-u65-512", "ethos-u85-256")
FCOS3D = {
    "fcos3d_512x896": (ROOT / "configs" / "fcos3d_efficientnetb0_nuscenes.py", (512, 896)),
    "fcos3d_synthetic": (ROOT / "configs" / "fcos3d_efficientnetb0_synthetic.py", (256, 384)),
}
GOLDEN = ROOT / "tests" / "golden" / "int8" / "tiny_fcos3d_int8.onnx"
# The models the figures are fitted on; the rest only check the fit (out of sample).
FIT_MODELS = ("fcos3d_synthetic", "fcos3d_golden_narrow", "resnet18", "mobilenet_v2", "mobilenet_v3", "yolo_neck")


def build_models(out: Path) -> dict[str, tuple[Path, dict | None]]:
    """{model name: (QDQ ONNX path, input_shapes or None)}; built once into OUT/models."""
    from bench_latency import build_models as build_fcos3d

    models: dict[str, tuple[Path, dict | None]] = {}
    for name, (config, hw) in FCOS3D.items():
        _, path = build_fcos3d(config, hw, out / "models" / f"{name}_int8.onnx")
        models[name] = (path, None)
    models["fcos3d_golden_narrow"] = (GOLDEN, None)
    zoo_dir = out / "models" / "zoo"
    import onnx
    from zoo import ZOO, quantize

    for name, make, q, shape in ZOO:
        if q.fmt != "QDQ":  # the brief: the zoo's QDQ models
            continue
        path = zoo_dir / f"{name}.onnx"
        if not path.is_file():
            quantize(make(), q, zoo_dir, name)
        inp = onnx.load(path, load_external_data=False).graph.input[0].name
        models[name] = (path, {inp: tuple(shape)} if shape else None)
    return models


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def vela_for(name: str, graph, input_shapes, out: Path, boards=BOARDS) -> dict:
    """{board: cached Vela result with Vela's cycles per our layer}, or {"error": ...} when emit/Vela refuse."""
    from fcos3d.compiler.tosa.emit import emit_tosa
    from fcos3d.compiler.tosa.perf import _owner
    from fcos3d.compiler.tosa.vela import VELA_CONFIGS, VelaError, _vela_version, run_vela

    try:
        program = emit_tosa(graph, input_shapes)
    except Exception as exc:  # noqa: BLE001 - the emitter's one-line refusal, reported
        return {"error": f"emit_tosa: {type(exc).__name__}: {exc}"}
    folder = out / "vela" / name
    folder.mkdir(parents=True, exist_ok=True)
    tosa = folder / "model.tosa"
    if not tosa.is_file() or tosa.read_bytes() != program.data:
        program.write(tosa)
    key_base = _sha(program.data)
    results = {}
    for board in boards:
        cfg = VELA_CONFIGS[board]
        key = _sha(f"{key_base} {cfg} {_vela_version()}".encode())
        cache = folder / f"{board}.json"
        if cache.is_file():
            cached = json.loads(cache.read_text())
            if cached.get("key") == key:
                results[board] = cached
                continue
        t = time.perf_counter()
        try:
            r = run_vela(tosa, cfg, folder / board)
        except VelaError as exc:
            results[board] = {"key": key, "error": str(exc)}
            cache.write_text(json.dumps(results[board]) + "\n")
            continue
        by_op: dict[str, float] = {}
        unmatched = 0.0
        for row in r.layers:
            owner = _owner(row["name"], program.op_of)
            if owner is None:
                unmatched += row["cycles"]
            else:
                by_op[owner] = by_op.get(owner, 0.0) + row["cycles"]
        results[board] = {
            "key": key,
            **r.as_dict(),
            "cpu_fallback": r.cpu_fallback,
            "seconds": time.perf_counter() - t,
            "layer_cycles": by_op,
            "unmatched_cycles": unmatched,
            "sum_layer_cycles": sum(row["cycles"] for row in r.layers),
        }
        cache.write_text(json.dumps(results[board]) + "\n")
        print(f"  vela {name} {board}: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    return results


def compare(graph, board, vela: dict) -> dict:
    """Totals (ms) and the per-layer median |ours / Vela - 1| over the layers Vela gave cycles to."""
    est = estimate(graph, board)
    ours_ms = est.seconds * 1e3
    vela_ms = vela["inference_time_s"] * 1e3
    errs = []
    by_kind: dict[str, list[float]] = {}
    for layer in est.layers:
        v = vela["layer_cycles"].get(layer.name, 0.0)
        if v > 0:
            e = layer.cycles / est.clock_hz / (v / vela["clock_hz"]) - 1.0
            errs.append(abs(e))
            by_kind.setdefault(layer.op, []).append(e)
    return {
        "vela_ms": vela_ms,
        "ours_ms": ours_ms,
        "ratio": ours_ms / vela_ms,
        "layer_median_abs_err": statistics.median(errs) if errs else None,
        "layers_compared": len(errs),
        "kind_median_err": {k: statistics.median(v) for k, v in sorted(by_kind.items())},
    }


# ---- the fit --------------------------------------------------------------------------------------------------

# The figures the fit may move (macs_per_cycle and clock_hz are published; sram_bytes is Vela's memory mode).
FREE_GRIDS = {
    "block_h": (1, 2, 4, 8),
    "block_w": (1, 2, 4, 8),
    "block_oc": (8, 16, 32),
    "block_ic": (8, 16, 32),
}
# Figures the fit leaves alone per board: Ethos-U55-256's are Vela's own ArchitectureConfig and vela.ini values,
# and its conv cycles already agree with Vela's (ratio 1.00-1.06 before the fit); the latency tests pin them.
FROZEN = {
    "ethos-u55-256": (
        "block_h",
        "block_w",
        "block_oc",
        "block_ic",
        "sram_bytes_per_s",
        "dram_bytes_per_s",
        "depthwise_macs_per_cycle",
    ),
}
# The general figures, then every optional per-kind one (fcos3d.boards.OPTIONAL_FIGURES) but the channel block,
# which is a geometry (set per board, not searched), and the host CPU's terms.
FREE_SCALES = (
    "elementwise_per_cycle",
    "op_overhead_cycles",
    "sram_bytes_per_s",
    "dram_bytes_per_s",
    *(k for k in OPTIONAL_FIGURES if k != "elementwise_block_c" and k not in HOST_ONLY_FIGURES),
)
# Where an optional figure the board lacks starts the search.
START_FROM = {
    "depthwise_macs_per_cycle": "macs_per_cycle",
    "narrow_input_outputs_per_cycle": "elementwise_per_cycle",
    "conv_overhead_cycles": "op_overhead_cycles",
    "matmul_overhead_cycles": "op_overhead_cycles",
    "add_overhead_cycles": "op_overhead_cycles",
    "mul_overhead_cycles": "op_overhead_cycles",
    "lut_overhead_cycles": "op_overhead_cycles",
}


def with_figures(board, values: dict):
    """A copy of ``board`` whose accelerator has ``values`` (name -> number) in place of its figures."""
    from dataclasses import replace

    figs = dict(board.accelerator.figures)
    for k, v in values.items():
        old = figs.get(k)
        figs[k] = Figure(k, float(v), old.unit if old else "", old.source if old else "fitted")
    acc = Accelerator(board.accelerator.name, MappingProxyType(figs), board.accelerator.note)
    return replace(board, accelerator=acc)


LAYER_WEIGHT = 1.0  # the per-layer median error's weight beside the total's
# The acceptance is every total within 15% of Vela's: a fit model's total further off than TOTAL_MARGIN adds
# MARGIN_WEIGHT x (the excess in log) ^ 2, so the search does not buy per-layer error with one model's total.
TOTAL_MARGIN = 0.10
MARGIN_WEIGHT = 30.0


def loss(graphs_vela, board) -> float:
    """Weighted mean over the models of log(ours / Vela)^2 + LAYER_WEIGHT * log(1 + per-layer median error)^2
    (+ the TOTAL_MARGIN penalty);
    ``graphs_vela``: (graph, Vela result, weight) triples."""
    total = wsum = 0.0
    for graph, vela, weight in graphs_vela:
        c = compare(graph, board, vela)
        off = max(0.0, abs(math.log(c["ratio"])) - math.log(1 + TOTAL_MARGIN))  # outside the margin: penalised
        total += weight * (
            math.log(c["ratio"]) ** 2
            + LAYER_WEIGHT * math.log1p(c["layer_median_abs_err"] or 0.0) ** 2
            + MARGIN_WEIGHT * off**2
        )
        wsum += weight
    return total / wsum


def _round2(x: float) -> float:
    """x to 2 significant digits: the fit's precision is far coarser than its last digits."""
    return float(f"{x:.2g}")


def fit_board(board, graphs_vela, rounds: int = 3, geometry_starts: bool = True) -> dict:
    """Coordinate search over the free figures (grids for the block geometry, x2^(k/4) steps for the rest), from
    the board's own geometry and a few others; the best, rounded to 2 significant digits."""
    frozen = FROZEN.get(board.name, ())
    starts = [{}]
    if "block_oc" not in frozen and geometry_starts:
        starts += [
            {"block_h": h, "block_w": w, "block_oc": oc, "block_ic": ic}
            for h, w, oc, ic in ((1, 1, 16, 16), (2, 2, 16, 16), (4, 4, 8, 8), (2, 4, 16, 8), (4, 2, 8, 16))
        ]
    best = None
    for start in starts:
        f = _fit_from(with_figures(board, start), graphs_vela, rounds)
        if best is None or f["loss"] < best["loss"]:
            best = f
    rounded = {k: _round2(v) for k, v in best["figures"].items()}
    return {"figures": rounded, "loss": loss(graphs_vela, with_figures(board, rounded)), "unrounded": best}


def _fit_from(board, graphs_vela, rounds: int) -> dict:
    frozen = FROZEN.get(board.name, ())
    base = {k: board.accelerator[k] for k in board.accelerator.figures if k in FREE_GRIDS or k in FREE_SCALES}
    # the optional per-kind figures start at the general one
    for k in FREE_SCALES:
        if k not in base and k not in frozen:
            base[k] = board.accelerator[START_FROM.get(k, "elementwise_per_cycle")]
    best = dict(base)
    best_loss = loss(graphs_vela, with_figures(board, best))
    for _ in range(rounds):
        improved = False
        for k in [k for k in list(FREE_GRIDS) + list(FREE_SCALES) if k not in frozen]:
            cands = FREE_GRIDS[k] if k in FREE_GRIDS else [best[k] * 2 ** (s / 4) for s in (-8, -4, -2, -1, 1, 2, 4, 8)]
            for v in cands:
                trial = {**best, k: v}
                lo = loss(graphs_vela, with_figures(board, trial))
                if lo < best_loss - 1e-9:
                    best, best_loss, improved = trial, lo, True
        if not improved:
            break
    return {"figures": best, "loss": best_loss}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "build" / "npu_vs_vela")
    p.add_argument("--models", default="", help="comma-separated model names (default: all)")
    p.add_argument("--boards", default=",".join(BOARDS))
    p.add_argument("--fit", action="store_true", help="search the free board figures (see the docstring)")
    p.add_argument(
        "--quick", action="store_true", help="--fit from the board's own geometry only (no other start geometries)"
    )
    p.add_argument("--board-dir", type=Path, default=None, help="read the boards' TOML files from this folder")
    p.add_argument("--json", type=Path, default=None, help="write the comparison here")
    p.add_argument("--markdown", action="store_true", help="print the comparison as a Markdown table too")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from fcos3d.compiler.check import check_onnx

    boards = [b for b in args.boards.split(",") if b]
    models = build_models(args.out)
    if args.models:
        models = {k: v for k, v in models.items() if k in args.models.split(",")}
    loaded = {}
    skipped = {}
    for name, (path, shapes) in models.items():
        graph = check_onnx(path, input_shapes=shapes).graph
        vela = vela_for(name, graph, shapes, args.out, boards)
        if "error" in vela:
            skipped[name] = vela["error"]
            continue
        for b in boards:
            if "error" in vela[b]:
                skipped[f"{name}@{b}"] = vela[b]["error"]
        loaded[name] = (graph, vela)

    def board_of(b):
        return load_board(str(args.board_dir / f"{b}.toml")) if args.board_dir else load_board(b)

    rows = []
    for b in boards:
        board = board_of(b)
        for name, (graph, vela) in loaded.items():
            if "error" in vela[b]:
                continue
            c = compare(graph, board, vela[b])
            rows.append(
                {
                    "board": b,
                    "model": name,
                    "fit": name in FIT_MODELS,
                    **c,
                    "vela_cpu_fallback": vela[b]["cpu_fallback"],
                    "vela_unmatched_cycles": vela[b]["unmatched_cycles"],
                }
            )
    print(f"{'board':14} {'model':24} {'set':5} {'Vela ms':>10} {'ours ms':>10} {'ratio':>6} {'layer med':>9}")
    for r in rows:
        med = "" if r["layer_median_abs_err"] is None else f"{r['layer_median_abs_err']:.0%}"
        print(
            f"{r['board']:14} {r['model']:24} {'fit' if r['fit'] else 'check':5} {r['vela_ms']:10.3f} "
            f"{r['ours_ms']:10.3f} {r['ratio']:6.2f} {med:>9}"
        )
    if args.markdown:
        print("\n| board | model | set | Vela ms | ours ms | ours / Vela | per-layer median abs. error | layers |")
        print("|---|---|---|---:|---:|---:|---:|---:|")
        for r in rows:
            med = "" if r["layer_median_abs_err"] is None else f"{r['layer_median_abs_err']:.0%}"
            print(
                f"| {r['board']} | {r['model']} | {'fit' if r['fit'] else 'check'} | {r['vela_ms']:.3f} | "
                f"{r['ours_ms']:.3f} | {r['ratio']:.2f} | {med} | {r['layers_compared']} |"
            )
    for k, v in skipped.items():
        print(f"skipped {k}: {v}")
    result = {"rows": rows, "skipped": skipped}
    if args.fit:
        result["fit"] = {}
        for b in boards:
            board = board_of(b)
            # FCOS3D is the model this toolchain is for: its graphs weigh as much as the zoo's together
            gv = [
                (g, v[b], 3.0 if n.startswith("fcos3d") else 1.0)
                for n, (g, v) in loaded.items()
                if n in FIT_MODELS and "error" not in v[b]
            ]
            f = fit_board(board, gv, geometry_starts=not args.quick)
            result["fit"][b] = f
            print(f"\n{b}: fitted (loss {f['loss']:.4f})")
            fitted = with_figures(board, f["figures"])
            for k, v in sorted(f["figures"].items()):
                print(f"  {k} = {v:.6g}")
            for name, (graph, vela) in loaded.items():
                if "error" in vela[b]:
                    continue
                c = compare(graph, fitted, vela[b])
                med = "" if c["layer_median_abs_err"] is None else f"{c['layer_median_abs_err']:.0%}"
                print(
                    f"  {name:24} {'fit' if name in FIT_MODELS else 'check':5} Vela {c['vela_ms']:9.3f} ms "
                    f"ours {c['ours_ms']:9.3f} ms ratio {c['ratio']:.2f} layer median {med}"
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
