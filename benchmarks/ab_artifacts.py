"""A/B of compiled host artifacts: each folder's model.so loaded in one process, the outputs compared on one random
input (every output must be identical: a kernel change never changes the integers), then timed interleaved (one run
of each per round, so that a busy moment of the machine hits every build alike). Prints median and min per folder
and the ratio of each median to the first folder's; non-zero exit when any output differs.

    .venv/bin/python benchmarks/ab_artifacts.py BASE_ARTIFACT NEW_ARTIFACT [...] [--runs 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifacts", type=Path, nargs="+", help="host artifact folders (fcos3d-compile --target host)")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    os.environ["TVM_NUM_THREADS"] = str(a.threads)  # read once, when TVM's pool starts

    import numpy as np
    import tvm
    from tvm import relax

    for folder in a.artifacts:
        if not (folder / "model.so").is_file():
            sys.exit(f"{folder}: no model.so; compile it with fcos3d-compile MODEL.onnx --target host --out {folder}")
    meta = json.loads((a.artifacts[0] / "meta.json").read_text())
    rng = np.random.default_rng(0)
    x = tvm.runtime.tensor(rng.integers(-128, 128, meta["inputs"][0]["shape"], dtype=np.int8))
    vms = [relax.VirtualMachine(tvm.runtime.load_module(str(f / "model.so")), tvm.cpu()) for f in a.artifacts]
    outs = [[o.numpy() for o in vm["main"](x)] for vm in vms]
    differ = [
        str(f)
        for f, o in zip(a.artifacts[1:], outs[1:], strict=True)
        if len(o) != len(outs[0]) or not all(np.array_equal(p, q) for p, q in zip(o, outs[0], strict=True))
    ]
    times: list[list[float]] = [[] for _ in vms]
    for _ in range(2):
        for vm in vms:
            vm["main"](x)
    for _ in range(a.runs):
        for t, vm in zip(times, vms, strict=True):
            start = time.perf_counter()
            vm["main"](x)
            t.append(time.perf_counter() - start)
    base = float(np.median(times[0]))
    for f, t in zip(a.artifacts, times, strict=True):
        med = float(np.median(t))
        print(f"{f}: median {1e3 * med:.2f} ms, min {1e3 * min(t):.2f} ms, {med / base:.3f}x the first")
    print(f"{a.threads} thread(s), {a.runs} interleaved runs; load average {os.getloadavg()}")
    if differ:
        sys.exit(f"outputs differ from {a.artifacts[0]}: {', '.join(differ)}")
    print(f"all {len(outs[0])} outputs identical")


if __name__ == "__main__":
    main()
