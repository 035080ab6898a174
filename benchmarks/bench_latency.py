"""Latency of the compiled int8 FCOS3D on this CPU vs onnxruntime on the same QDQ ONNX vs PyTorch float eager.

For each size: build the config's model (untrained weights: latency does not depend on them), calibrate it on
random images, export the int8 QDQ ONNX, compile it for ``host`` (timed: the "compile" column), then time, in
this one process and with the same thread count for all three, the median of ``--runs`` runs after
``--warmup`` runs on the same int8 input, the three taking turns run by run. Prints a table of ratios and
writes benchmarks/results/latency.json.

    .venv/bin/python benchmarks/bench_latency.py [--sizes synthetic,512x896] [--threads 2] [--runs 10]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# name -> (config, input (H, W)): the synthetic config at its own size, the nuScenes recipe at 512x896.
SIZES = {
    "synthetic": (ROOT / "configs" / "fcos3d_efficientnetb0_synthetic.py", (256, 384)),
    "512x896": (ROOT / "configs" / "fcos3d_efficientnetb0_nuscenes.py", (512, 896)),
}


def build_models(config: Path, hw: tuple[int, int], onnx_path: Path, seed: int = 0):
    """(float model, QDQ ONNX path): the config's model with seeded random weights, calibrated on 2 random
    images (the quant pipeline of the trainer's calibration -> QAT -> int stages), exported once per path."""
    import torch

    from fcos3d.quant.convert import Float2Calibration, Float2QAT
    from fcos3d.quant.export import export_qdq_onnx
    from fcos3d.quant.intmodel import QAT2Quantize
    from fcos3d.trainer.config import build, load_config

    cfg = load_config(config)
    torch.manual_seed(seed)
    float_model = build(cfg["model"], "model").eval()
    shape = (1, 3, *hw)
    if not onnx_path.is_file():
        q = Float2Calibration()(copy.deepcopy(float_model))
        q.train()
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for _ in range(2):
                q((torch.randint(0, 256, shape, generator=g).float() - 128) / 128)
        int_model = QAT2Quantize(shape)(Float2QAT()(q).eval())
        onnx_path.parent.mkdir(parents=True, exist_ok=True)
        export_qdq_onnx(int_model, shape, onnx_path)
    return float_model, onnx_path


def interleaved_seconds(fns: dict, runs: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per run of each function, the functions taking turns run by run: on a shared machine a burst of
    other work then falls on all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return times


def bench_size(name: str, args, out_root: Path) -> dict:
    import onnxruntime as ort
    import torch

    from fcos3d.compiler.build import compile_onnx
    from fcos3d.runtime.execute import load_artifact

    config, hw = SIZES[name]
    onnx_path = out_root / f"fcos3d_{name}_int8.onnx"
    t = time.perf_counter()
    float_model, onnx_path = build_models(config, hw, onnx_path)
    t_export = time.perf_counter() - t

    t = time.perf_counter()
    tuning = {"tune_trials": args.tune_trials, "tuning_db": args.tuning_db} if args.tuning_db else {}
    result = compile_onnx(onnx_path, "host", out_root / f"fcos3d_{name}-host", **tuning)
    t_compile = time.perf_counter() - t
    art = load_artifact(result.out_dir)

    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(1, 3, *hw), dtype=np.int8)
    xf = torch.from_numpy(x.astype(np.float32) / 128)

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # the default: QDQ -> QLinearConv
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}

    # The same outputs from both (onnxruntime gives the head convs dequantised, in float32): a check that the two
    # time the same computation. Relative to each output's largest magnitude.
    got, want = art.run(x), dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed), strict=True))
    max_diff = 0.0
    for spec in art.meta["outputs"]:
        scales = np.asarray(spec["scales"], dtype=np.float64).reshape(1, -1, 1, 1)
        ours, theirs = got[spec["name"]] * scales, want[spec["name"]].astype(np.float64)
        max_diff = max(max_diff, float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-30)))

    def run_torch():
        with torch.no_grad():
            float_model(xf)

    times = interleaved_seconds(
        {"tvm": lambda: art.run(x), "onnxruntime": lambda: sess.run(None, feed), "torch_float": run_torch},
        args.runs,
        args.warmup,
    )
    timings = {k: (statistics.median(v), v) for k, v in times.items()}
    return {
        "size": name,
        "input_hw": list(hw),
        "onnx": str(onnx_path),
        "export_s": t_export,
        "compile_s": t_compile,
        "compile_stages_s": result.seconds,
        "median_s": {k: v[0] for k, v in timings.items()},
        "runs_s": {k: v[1] for k, v in timings.items()},
        "max_rel_diff_tvm_vs_ort": max_diff,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="synthetic,512x896", help=f"comma-separated, of {', '.join(SIZES)}")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--tune-trials", type=int, default=0, help="MetaSchedule trials (0: untuned, the default)")
    ap.add_argument("--tuning-db", type=Path, default=None, help="MetaSchedule database folder (kept)")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "bench_latency", help="ONNX and artifacts")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "latency.json")
    args = ap.parse_args(argv)
    # Same thread count for all three: TVM's runtime reads TVM_NUM_THREADS when its pool starts (before the
    # first parallel call), torch and onnxruntime are told directly.
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    if args.tune_trials and args.tuning_db is None:
        ap.error("--tune-trials needs --tuning-db DIR (the kept MetaSchedule database)")
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        ap.error(f"--sizes: unknown {unknown}; choose from {', '.join(SIZES)}")
    rows = [bench_size(s, args, args.out) for s in sizes]
    head = (
        f"{'size':<10}{'compile s':>10}{'TVM ms':>9}{'ORT ms':>9}{'torch ms':>10}{'TVM/ORT':>9}{'TVM/torch':>10}"
        f"{'min-ratio ORT':>15}{'min-ratio torch':>17}"
    )
    print(
        f"threads {args.threads}, median of {args.runs} runs after {args.warmup} warm-up, "
        f"tune trials {args.tune_trials}; {platform.processor() or platform.machine()}"
    )
    print(head)
    for r in rows:
        m = r["median_s"]
        r["ratio_tvm_ort"] = m["tvm"] / m["onnxruntime"]
        r["ratio_tvm_torch"] = m["tvm"] / m["torch_float"]
        # The fastest runs, the least disturbed by other jobs: a second view on a shared machine.
        fastest = {k: min(v) for k, v in r["runs_s"].items()}
        r["min_s"] = fastest
        r["min_ratio_tvm_ort"] = fastest["tvm"] / fastest["onnxruntime"]
        r["min_ratio_tvm_torch"] = fastest["tvm"] / fastest["torch_float"]
        print(
            f"{r['size']:<10}{r['compile_s']:>10.1f}{m['tvm'] * 1e3:>9.1f}{m['onnxruntime'] * 1e3:>9.1f}"
            f"{m['torch_float'] * 1e3:>10.1f}{r['ratio_tvm_ort']:>9.2f}{r['ratio_tvm_torch']:>10.2f}"
            f"{r['min_ratio_tvm_ort']:>15.2f}{r['min_ratio_tvm_torch']:>17.2f}"
        )
    for r in rows:
        print(
            f"{r['size']}: outputs of TVM (dequantised) vs onnxruntime: max relative difference "
            f"{r['max_rel_diff_tvm_vs_ort']:.1e}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    args.json.write_text(
        json.dumps(
            {
                "command": "python benchmarks/bench_latency.py " + " ".join(sys.argv[1:] if argv is None else argv),
                "threads": args.threads,
                "runs": args.runs,
                "warmup": args.warmup,
                "tune_trials": args.tune_trials,
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "loadavg_before": load_before,
                "loadavg_after": load,
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )
    print(args.json)


if __name__ == "__main__":
    main()
