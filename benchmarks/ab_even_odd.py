"""A/B of the x86 even/odd requantisation (fcos3d/compiler/requantize.py, lower_even_odd): the benchmark's FCOS3D
QDQ ONNX compiled twice for host, with TVM's own lowering of ``q_multiply_shift_per_axis`` and with the even/odd
form, both loaded in one process and timed interleaved (one run of each per round), 1 thread by default. Also
checks that the two builds give identical outputs.

    .venv/bin/python benchmarks/ab_even_odd.py [--size 512x896] [--runs 11]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="512x896", help="synthetic or 512x896")
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "ab_even_odd")
    a = ap.parse_args(argv)
    os.environ["TVM_NUM_THREADS"] = str(a.threads)  # read once, when TVM's pool starts

    import numpy as np
    import tvm
    from bench_latency import SIZES, build_models
    from tvm import relax

    import fcos3d.compiler.requantize as rq
    from fcos3d.compiler.build import compile_onnx

    onnx_path = ROOT / "build" / "bench_runtimes" / a.size / "fcos3d_int8.onnx"
    if not onnx_path.is_file():
        config, hw = SIZES[a.size]
        build_models(config, hw, onnx_path)

    @contextmanager
    def tvm_lowering(target):
        yield

    folders = {}
    for tag in ("tvm", "even_odd"):
        folders[tag] = a.out / a.size / tag
        original = rq.even_odd_lowering
        if tag == "tvm":
            rq.even_odd_lowering = tvm_lowering
        try:
            compile_onnx(onnx_path, "host", folders[tag])
        finally:
            rq.even_odd_lowering = original
    meta = json.loads((folders["tvm"] / "meta.json").read_text())
    x = tvm.runtime.tensor(np.random.default_rng(0).integers(-128, 128, meta["inputs"][0]["shape"], dtype=np.int8))
    vms = {t: relax.VirtualMachine(tvm.runtime.load_module(str(f / "model.so")), tvm.cpu()) for t, f in folders.items()}
    outs = {t: [o.numpy() for o in vm["main"](x)] for t, vm in vms.items()}
    identical = all(np.array_equal(p, q) for p, q in zip(outs["tvm"], outs["even_odd"], strict=True))
    times = {t: [] for t in vms}
    for _ in range(2):
        for vm in vms.values():
            vm["main"](x)
    for _ in range(a.runs):
        for t, vm in vms.items():
            start = time.perf_counter()
            vm["main"](x)
            times[t].append(time.perf_counter() - start)
    for t, v in times.items():
        print(
            f"{a.size}, {a.threads} thread(s), {t} lowering: median {1e3 * np.median(v):.2f} ms, min {1e3 * min(v):.2f} ms"
        )
    print(f"outputs identical: {identical}; load average {os.getloadavg()}")
    if not identical:
        sys.exit(1)


if __name__ == "__main__":
    main()
