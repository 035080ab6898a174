"""The compiled int8 FCOS3D side by side with OpenVINO, onnxruntime and PyTorch, and against the int8 roofline.

Per size, prepared once (cached under ``--out``): the config's FCOS3D with seeded random weights (latency does not
depend on them) and our int8 QDQ export (bench_latency.build_models), the float ONNX (torch.onnx.export), the
onnxruntime ``quantize_static`` QDQ of that float ONNX (its defaults: U8S8, per-tensor weights, 2 random calibration
images) and our untuned compile (timed). Then one worker process per thread count (TVM's pool reads
TVM_NUM_THREADS when it starts, so a count cannot change within a process) times, in that one process, interleaved
round by round on the same input, median of ``--runs``:

  ours            the compiled artifact (fcos3d.compiler, untuned), int8 in, raw int outputs
  openvino_int8   OpenVINO on our QDQ ONNX (it runs QDQ graphs as int8)     (optional: pip install '.[bench]')
  openvino_fp32   OpenVINO on the float ONNX
  ort_int8        onnxruntime on its own quantize_static QDQ model
  ort_fp32        onnxruntime on the float ONNX
  ort_ours_qdq    onnxruntime on our QDQ ONNX (with --ort-ours)
  torch_fp32      PyTorch eager, float

The roofline is the graph's MACs (the latency estimator's count: dense + depthwise convs) over the int8 dot-product
peak of ``threads`` cores measured by benchmarks/peak_probe.c (per CPU-second of one core): the "dot roofline"
(VNNI / sdot) of the issue's bar. On a CPU with Intel AMX the "roofline" column counts the dense MACs at the AMX
peak instead (benchmarks/amx_peak_probe.c), the depthwise ones at the dot product's.
``--calls-per-turn K`` calls each runtime K times in its turn: the first call is timed with the caches the previous
runtime left (the columns as before), the others "warm" (the model alone on its core, frame after frame). Each run also records
the process CPU time: CPU share = CPU time / (wall x threads) is near 1 when the runtime's threads had their cores,
lower when other jobs took them (or its threads waited). Prints a markdown table, writes JSON.

TVM pins its pool's threads to cores (TVM_BIND_THREADS): with one thread it pins the calling thread to core 0, and
the thread pools the other runtimes start afterwards in the same process inherit that one core. The workers
therefore run with TVM_BIND_THREADS=0 (``--tvm-bind`` keeps TVM's default); benchmarks/thread_scaling.py measures
what the pinning does.

    .venv/bin/python benchmarks/bench_runtimes.py [--sizes synthetic,512x896] [--threads 1,2] [--runs 9]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_latency import SIZES, build_models  # noqa: E402

RUNTIMES = ("ours", "openvino_int8", "openvino_fp32", "ort_int8", "ort_fp32", "ort_ours_qdq", "torch_fp32")
OPENVINO_MISSING = (
    "openvino is not installed: the OpenVINO columns are skipped. Install the benchmark extra: "
    ".venv/bin/pip install -e '.[bench]' (or: .venv/bin/pip install openvino)"
)


def openvino_version() -> str | None:
    try:
        import openvino
    except ImportError:
        return None
    return openvino.__version__


# -- preparation (parent process) ------------------------------------------------------------------------------


def export_float_onnx(float_model, hw: tuple[int, int], path: Path) -> Path:
    """The float model as ONNX (opset 17, TorchScript exporter), input ``image`` float32 (1, 3, H, W), simplified
    by onnxsim: the exporter passes shared parameters through Identity nodes, and quantize_static leaves a conv
    whose bias is not an initializer in float (onnxruntime then cannot fuse it into QLinearConv)."""
    import onnx
    import onnxsim
    import torch

    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.onnx")
        torch.onnx.export(
            float_model, (torch.zeros(1, 3, *hw),), str(tmp), opset_version=17, dynamo=False, input_names=["image"]
        )
        simplified, ok = onnxsim.simplify(onnx.load(str(tmp)))
        if not ok:
            raise RuntimeError(f"onnxsim could not check its simplification of {tmp}")
        onnx.save(simplified, str(tmp))
        tmp.replace(path)
    return path


def ort_quantize(float_onnx: Path, hw: tuple[int, int], path: Path, seed: int = 0) -> Path:
    """onnxruntime's own int8 model of the float ONNX: ``quantize_static`` with its defaults (QDQ, uint8
    activations, int8 per-tensor weights: "U8S8"), calibrated on 2 random images like ours."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    ort.set_default_logger_severity(3)  # not one warning per unused initializer of the exported graph

    class Images(CalibrationDataReader):
        def __init__(self):
            g = np.random.default_rng(seed)
            self.images = iter(
                [{"image": (g.integers(0, 256, (1, 3, *hw)).astype(np.float32) - 128) / 128} for _ in range(2)]
            )

        def get_next(self):
            return next(self.images, None)

    if not path.is_file():
        tmp = path.with_suffix(".tmp.onnx")
        quantize_static(
            str(float_onnx),
            str(tmp),
            Images(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        tmp.replace(path)
    return path


def graph_macs(qdq_onnx: Path) -> dict:
    """Real MACs of the int8 graph as the latency estimator counts them, dense and depthwise apart."""
    from fcos3d.compiler.check import check_onnx
    from fcos3d.compiler.latency.estimate import estimate

    est = estimate(check_onnx(qdq_onnx).graph, "host")
    depthwise = sum(layer.macs for layer in est.layers if layer.op == "DepthwiseConv")
    return {
        "macs": est.macs,
        "dense_macs": est.macs - depthwise,
        "depthwise_macs": depthwise,
        "layers": len(est.layers),
    }


def prepare(size: str, out_root: Path) -> dict:
    """Every model file of ``size`` (cached) and our untuned compile (always redone: its time is a result)."""
    from fcos3d.compiler.build import compile_onnx

    config, hw = SIZES[size]
    folder = out_root / size
    t = time.perf_counter()
    float_model, qdq = build_models(config, hw, folder / "fcos3d_int8.onnx")
    float_onnx = export_float_onnx(float_model, hw, folder / "fcos3d_float.onnx")
    ort_int8 = ort_quantize(float_onnx, hw, folder / "fcos3d_ort_u8s8.onnx")
    t_models = time.perf_counter() - t
    t = time.perf_counter()
    result = compile_onnx(qdq, "host", folder / "artifact")
    t_compile = time.perf_counter() - t
    return {
        "size": size,
        "config": str(config.relative_to(ROOT)),
        "input_hw": list(hw),
        "qdq_onnx": str(qdq),
        "float_onnx": str(float_onnx),
        "ort_int8_onnx": str(ort_int8),
        "artifact": str(result.out_dir),
        "models_s": t_models,
        "compile_s": t_compile,
        "compile_stages_s": result.seconds,
        **graph_macs(qdq),
    }


# -- timing (one worker process per thread count) ----------------------------------------------------------------


def _openvino_int8_convs(compiled) -> dict:
    """How many of OpenVINO's executed convolutions run in int8 (its runtime model's ``runtimePrecision``)."""
    counts: dict[str, int] = {}
    for node in compiled.get_runtime_model().get_ordered_ops():
        info = node.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) == "Convolution":
            precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
            counts[precision] = counts.get(precision, 0) + 1
    return counts


def runtime_functions(prep: dict, threads: int, ort_ours: bool, only: str | None = None) -> tuple[dict, dict]:
    """{runtime: zero-argument function running one inference}, and notes (versions, what OpenVINO ran). ``only``:
    start that one runtime (and its thread pool) and no other."""
    import onnxruntime as ort
    import torch

    from fcos3d.runtime.execute import load_artifact

    torch.set_num_threads(threads)
    ort.set_default_logger_severity(3)
    hw = tuple(prep["input_hw"])
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(1, 3, *hw), dtype=np.int8)
    xf = x.astype(np.float32) / 128
    fns, notes = {}, {"onnxruntime": ort.__version__, "torch": torch.__version__}

    if only in (None, "ours"):
        art = load_artifact(prep["artifact"])
        fns["ours"] = lambda: art.run(x)
    notes["openvino"] = openvino_version()
    if notes["openvino"] is not None and (only is None or only.startswith("openvino")):
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
        ov_int8 = core.compile_model(prep["qdq_onnx"], "CPU", config)
        ov_fp32 = core.compile_model(prep["float_onnx"], "CPU", config)
        req_int8, req_fp32 = ov_int8.create_infer_request(), ov_fp32.create_infer_request()
        fns["openvino_int8"] = lambda: req_int8.infer([x])
        fns["openvino_fp32"] = lambda: req_fp32.infer([xf])
        notes["openvino_int8_convolutions_by_precision"] = _openvino_int8_convs(ov_int8)

    def session(path: str):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        if os.environ.get("FCOS3D_BENCH_QUIET_POOLS") == "1":  # idle pool threads sleep instead of spinning
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    if only is not None:  # ours or one of OpenVINO's, alone: no other runtime's pool
        return {k: v for k, v in fns.items() if k == only}, notes
    s_int8, s_fp32 = session(prep["ort_int8_onnx"]), session(prep["float_onnx"])
    fns["ort_int8"] = lambda: s_int8.run(None, {"image": xf})
    fns["ort_fp32"] = lambda: s_fp32.run(None, {"image": xf})
    if ort_ours:
        s_ours = session(prep["qdq_onnx"])
        feed = {s_ours.get_inputs()[0].name: x}
        fns["ort_ours_qdq"] = lambda: s_ours.run(None, feed)

    from fcos3d.trainer.config import build, load_config

    torch.manual_seed(0)  # the float model of bench_latency.build_models (same seed, same weights)
    model = build(load_config(ROOT / prep["config"])["model"], "model").eval()
    xt = torch.from_numpy(xf)

    def run_torch():
        with torch.no_grad():
            model(xt)

    fns["torch_fp32"] = run_torch
    return fns, notes


def time_interleaved(fns: dict, runs: int, warmup: int, calls_per_turn: int = 1) -> dict:
    """Wall and process-CPU seconds per run of each function, the functions taking turns round by round.

    Each turn makes ``calls_per_turn`` calls back to back: the first is timed into ``wall_s``/``cpu_s`` (its caches
    as the previous runtime left them), the others into ``warm_wall_s``/``warm_cpu_s`` (the model's weights and
    buffers still in cache, as for a model that runs alone on its core, frame after frame)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out = {key: {k: [] for k in fns} for key in ("wall_s", "cpu_s", "warm_wall_s", "warm_cpu_s")}
    for _ in range(runs):
        for k, fn in fns.items():
            for call in range(calls_per_turn):
                c, t = time.process_time(), time.perf_counter()
                fn()
                prefix = "warm_" if call else ""
                out[prefix + "wall_s"][k].append(time.perf_counter() - t)
                out[prefix + "cpu_s"][k].append(time.process_time() - c)
    if calls_per_turn == 1:
        del out["warm_wall_s"], out["warm_cpu_s"]
    return out


def _allowed_cpus() -> str:
    """The calling thread's CPU affinity as the kernel lists it (/proc/thread-self/status), e.g. ``0-1``."""
    try:
        for line in Path("/proc/thread-self/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def _thread_affinities() -> dict[str, int]:
    """{CPU affinity list: number of this process's threads with it}, after every runtime has run: the threads
    the runtimes' pools started, and the cores they may use."""
    counts: dict[str, int] = {}
    for task in Path("/proc/self/task").glob("*"):
        try:
            status = (task / "status").read_text()
        except OSError:  # a thread that ended meanwhile
            continue
        for line in status.splitlines():
            if line.startswith("Cpus_allowed_list:"):
                key = line.split(":", 1)[1].strip()
                counts[key] = counts.get(key, 0) + 1
    return counts


def worker(
    prep_json: Path,
    threads: int,
    runs: int,
    warmup: int,
    ort_ours: bool,
    only: str | None = None,
    calls_per_turn: int = 1,
) -> dict:
    prep = json.loads(prep_json.read_text())
    import tvm

    # TVM's pool starts first (as after a first run of ours): with TVM_BIND_THREADS on (TVM's default) and one
    # thread, it pins this, the calling thread, to one core, and every thread started later in the process (the
    # pools of OpenVINO, onnxruntime, PyTorch) inherits that one-core affinity. Recorded, and off by default here.
    notes = {"cpus_allowed_before_tvm": _allowed_cpus()}
    notes["tvm_runtime_threads"] = int(tvm.get_global_func("runtime.NumThreads")())
    notes["cpus_allowed_after_tvm"] = _allowed_cpus()
    notes["tvm_bind_threads"] = os.environ.get("TVM_BIND_THREADS", "(unset: TVM binds)")
    fns, more = runtime_functions(prep, threads, ort_ours, only)
    notes.update(more)
    load_before = os.getloadavg()
    timed = time_interleaved(fns, runs, warmup, calls_per_turn)
    notes["threads_by_cpus_allowed"] = _thread_affinities()
    return {
        "size": prep["size"],
        "threads": threads,
        "runs": runs,
        "warmup": warmup,
        "calls_per_turn": calls_per_turn,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "notes": notes,
        **timed,
    }


def run_worker(
    prep_json: Path, threads: int, args, tvm_threads: int | None = None, tvm_bind: bool = False, only: str | None = None
) -> dict:
    """One subprocess with ``threads`` for every runtime (TVM_NUM_THREADS set before TVM's pool starts; another
    count for TVM alone with ``tvm_threads``). ``tvm_bind``: leave TVM's thread pinning on (TVM_BIND_THREADS
    unset), which in one shared process narrows the other runtimes' threads to TVM's cores (see worker).
    ``only``: one runtime alone in its process (no other runtime's pool started)."""
    env = dict(os.environ, TVM_NUM_THREADS=str(tvm_threads or threads), OMP_NUM_THREADS=str(threads))
    if getattr(args, "quiet_pools", False):
        env.update(FCOS3D_BENCH_QUIET_POOLS="1", OMP_WAIT_POLICY="PASSIVE")
    env.pop("TVM_BIND_THREADS", None)
    if not tvm_bind:
        env["TVM_BIND_THREADS"] = "0"
    tag = f"{'_bind' if tvm_bind else ''}{'_' + only if only else ''}"
    out = prep_json.with_name(f"worker_{threads}_{tvm_threads or threads}{tag}.json")
    cmd = [sys.executable, __file__, "--worker", str(prep_json), "--threads", str(threads), "--runs", str(args.runs)]
    cmd += ["--warmup", str(args.warmup), "--worker-out", str(out)] + (["--ort-ours"] if args.ort_ours else [])
    cmd += ["--only", only] if only else []
    cmd += ["--calls-per-turn", str(getattr(args, "calls_per_turn", 1))]
    subprocess.run(cmd, env=env, check=True)
    result = json.loads(out.read_text())
    result["tvm_threads"], result["tvm_bind"] = tvm_threads or threads, tvm_bind
    return result


# -- report ---------------------------------------------------------------------------------------------------


def summarise(prep: dict, timed: dict, peak_gmacs: float, amx_gmacs: float | None = None) -> dict:
    """Medians, CPU shares, ratios to the roofline and to OpenVINO int8. With ``amx_gmacs`` (a CPU with AMX) the
    roofline is the dense MACs at the AMX peak plus the depthwise MACs at the dot-product peak (AMX tiles have
    no depthwise form); else all MACs at the dot-product peak."""
    n = timed["threads"]
    # The roofline: every MAC at the dot-product (VNNI / sdot) peak, whatever the CPU's matrix units.
    dot_s = prep["macs"] / (peak_gmacs * 1e9 * n)
    roofline_s = dot_s
    if amx_gmacs:
        roofline_s = (prep["dense_macs"] / amx_gmacs + prep["depthwise_macs"] / peak_gmacs) / (1e9 * n)
    rows = {}
    for k, wall in timed["wall_s"].items():
        med = statistics.median(wall)
        rows[k] = {
            "median_ms": med * 1e3,
            "min_ms": min(wall) * 1e3,
            "cpu_share": statistics.median(c / (w * n) for c, w in zip(timed["cpu_s"][k], wall)),
            "x_roofline": med / roofline_s,
            "x_dot_roofline": med / dot_s,
        }
        warm = (timed.get("warm_wall_s") or {}).get(k)
        if warm:
            wmed = statistics.median(warm)
            rows[k].update(
                warm_median_ms=wmed * 1e3, warm_x_roofline=wmed / roofline_s, warm_x_dot_roofline=wmed / dot_s
            )
    ov = rows.get("openvino_int8")
    for r in rows.values():
        r["x_openvino_int8"] = r["median_ms"] / ov["median_ms"] if ov else None
        if "warm_median_ms" in r and ov and "warm_median_ms" in ov:
            r["warm_x_openvino_int8"] = r["warm_median_ms"] / ov["warm_median_ms"]
    return {
        "size": prep["size"],
        "threads": n,
        "roofline_ms": roofline_s * 1e3,
        "dot_roofline_ms": dot_s * 1e3,
        "runtimes": rows,
    }


def markdown(summaries: list[dict], preps: dict) -> str:
    warm = any("warm_median_ms" in r for s in summaries for r in s["runtimes"].values())
    head = (
        "| size | threads | runtime | median ms | min ms | CPU share | x roofline | x dot roofline | x OpenVINO int8 |"
    )
    rule = "|---|---:|---|---:|---:|---:|---:|---:|---:|"
    if warm:
        head += " warm median ms | warm x dot roofline | warm x OpenVINO int8 |"
        rule += "---:|---:|---:|"
    lines = [head, rule]
    for s in summaries:
        p = preps[s["size"]]
        lines.append(
            f"| {s['size']} ({p['macs'] / 1e9:.2f} GMAC) | {s['threads']} | roofline | {s['roofline_ms']:.1f} | | | 1.00 | | |"
            + (" | | |" if warm else "")
        )
        lines.append(f"| | | dot roofline | {s['dot_roofline_ms']:.1f} | | | | 1.00 | |" + (" | | |" if warm else ""))
        for k in RUNTIMES:
            r = s["runtimes"].get(k)
            if r is None:
                continue
            ov = "" if r["x_openvino_int8"] is None else f"{r['x_openvino_int8']:.2f}"
            line = (
                f"| | | {k} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['cpu_share']:.2f} | "
                f"{r['x_roofline']:.2f} | {r['x_dot_roofline']:.2f} | {ov} |"
            )
            if warm:
                wov = r.get("warm_x_openvino_int8")
                line += (
                    f" {r.get('warm_median_ms', float('nan')):.1f} | {r.get('warm_x_dot_roofline', float('nan')):.2f} |"
                    f" {'' if wov is None else f'{wov:.2f}'} |"
                )
            lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="synthetic,512x896", help=f"comma-separated, of {', '.join(SIZES)}")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (one worker process each)")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument(
        "--calls-per-turn",
        type=int,
        default=1,
        help="calls of a runtime in each of its turns: the first is timed as before (caches as the previous runtime "
        "left them), the others as 'warm' columns (the model's weights still cached, as when it runs alone)",
    )
    ap.add_argument("--ort-ours", action="store_true", help="also onnxruntime on our QDQ ONNX (slow)")
    ap.add_argument("--peak-gmacs", type=float, default=None, help="per-core int8 peak; default: measure it")
    ap.add_argument(
        "--quiet-pools",
        action="store_true",
        help="idle thread pools sleep instead of spinning (onnxruntime allow_spinning 0, OMP_WAIT_POLICY=PASSIVE for "
        "PyTorch): with 2 threads in one process, the pools of the runtimes that just ran otherwise spin on the "
        "cores the next one needs",
    )
    ap.add_argument(
        "--amx-peak-gmacs", type=float, default=None, help="with --peak-gmacs: the per-core AMX int8 peak, if any"
    )
    ap.add_argument(
        "--tvm-bind",
        action="store_true",
        help="keep TVM's thread pinning (TVM_BIND_THREADS; off by default, see worker)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "bench_runtimes", help="models and artifacts")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "runtimes.json")
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--only", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        result = worker(
            args.worker, int(args.threads), args.runs, args.warmup, args.ort_ours, args.only, args.calls_per_turn
        )
        args.worker_out.write_text(json.dumps(result) + "\n")
        return

    if openvino_version() is None:
        print(OPENVINO_MISSING, file=sys.stderr)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        ap.error(f"--sizes: unknown {unknown}; choose from {', '.join(SIZES)}")
    thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]

    import peak_probe

    probe = None
    if args.peak_gmacs is None:
        probe = peak_probe.measure(threads=(1,), repeat=5)
        peak = probe["peak_gmacs_per_core"]
        amx = (probe.get("amx") or {}).get("peak_gmacs_per_core")
    else:
        peak, amx = args.peak_gmacs, args.amx_peak_gmacs
    print(f"int8 peak: {peak:.0f} GMAC/s per core ({'measured' if probe else 'given'})")
    if amx:
        print(f"AMX int8 peak: {amx:.0f} GMAC/s per core: the roofline's dense convs run at it")

    preps, workers, summaries = {}, [], []
    for size in sizes:
        prep = prepare(size, args.out)
        preps[size] = prep
        print(f"{size}: {prep['macs'] / 1e9:.2f} GMAC, untuned compile {prep['compile_s']:.1f} s")
        prep_json = args.out / size / "prep.json"
        prep_json.write_text(json.dumps(prep, indent=1) + "\n")
        for n in thread_counts:
            timed = run_worker(prep_json, n, args, tvm_bind=args.tvm_bind)
            workers.append(timed)
            summaries.append(summarise(prep, timed, peak, amx))
            print(f"  {n} thread(s): done, load average {timed['loadavg_after']}")
    table = markdown(summaries, preps)
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "command": "python benchmarks/bench_runtimes.py " + " ".join(sys.argv[1:] if argv is None else argv),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "openvino": openvino_version(),
                "peak_gmacs_per_core": peak,
                "amx_peak_gmacs_per_core": amx,
                "peak_probe": probe,
                "prepared": preps,
                "summary": summaries,
                "table_markdown": table,
                "workers": workers,
            },
            indent=1,
        )
        + "\n"
    )
    args.json.with_suffix(".md").write_text(table + "\n")
    print(args.json)


if __name__ == "__main__":
    main()
