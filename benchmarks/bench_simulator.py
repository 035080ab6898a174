"""Speed of the integer simulator on an FCOS3D-sized random QDQ graph (EfficientNet-lite0 + BiFPN + head).

Builds the graph with tests/runtime/qdq_graphs.py (random int8 weights, same op shapes as the model at the
given input size), runs it, and prints the time per op kind and in total. Usage:
``python benchmarks/bench_simulator.py [--height 512 --width 896 --repeats 2]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "runtime"))

from qdq_graphs import QDQGraphBuilder  # noqa: E402

from fcos3d.runtime.reference.simulator import Simulator, run_op  # noqa: E402

# EfficientNet-b0 stages: (repeats, kernel, stride, expand, in, out); features after stages 0, 1, 2, 4, 6.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
FEATURES = (0, 1, 2, 4, 6)


def fcos3d_like_graph(height: int, width: int, neck: int = 64, feat: int = 256, stack: int = 3, seed: int = 0):
    b = QDQGraphBuilder(seed=seed, name="fcos3d_like")
    x = b.input((1, 3, height, width))
    x = b.conv(x, 32, 3, 2, relu=True)  # stem
    feats = []
    for i, (repeats, k, s, e, _cin, cout) in enumerate(STAGES):
        for r in range(repeats):
            stride = s if r == 0 else 1
            y = b.conv(x, x.shape[1] * e, 1, pad=0, relu=True) if e != 1 else x
            y = b.conv(y, y.shape[1], k, stride, groups=y.shape[1], relu=True)
            y = b.conv(y, cout, 1, pad=0)
            x = b.add(y, x) if stride == 1 and x.shape[1] == cout else y
        if i in FEATURES:
            feats.append(x)
    c8, c16, c32 = feats[2], feats[3], feats[4]
    p = [b.conv(c, neck, 1, pad=0) for c in (c8, c16, c32)]
    e = b.conv(c32, neck, 1, pad=0)
    p.append(b.maxpool(e, 3, 2, 1))
    p.append(b.maxpool(p[-1], 3, 2, 1))

    def sep(t, cout, relu=True, head=False):
        d = b.conv(t, t.shape[1], 3, groups=t.shape[1], bias=False)
        return b.conv(d, cout, 1, pad=0, relu=relu, int32_output=head)

    for _ in range(stack):
        n = len(p)
        td = [None] * n
        td[-1] = p[-1]
        for i in range(n - 2, -1, -1):
            td[i] = sep(b.add(p[i], b.resize(td[i + 1], 2)), neck)
        out = [td[0]]
        for i in range(1, n):
            s = b.add(p[i], b.maxpool(out[i - 1], 3, 2, 1))
            if i < n - 1:
                s = b.add(s, td[i])
            out.append(sep(s, neck))
        p = out
    for level in p:
        cls = sep(sep(level, feat), feat)
        reg = sep(sep(level, feat), feat)
        sep(sep(cls, feat), 10, head=True)
        for dims in (2, 1, 3, 1):
            sep(sep(reg, feat), dims, head=True)
        sep(reg, 2, head=True)  # velo: no extra branch layer
        sep(sep(reg, feat), 2, head=True)  # dir
        sep(sep(cls, feat), 9, head=True)  # attr
        sep(sep(reg, 64), 1, head=True)  # centerness
    return b.build(check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--width", type=int, default=896)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    model = fcos3d_like_graph(args.height, args.width)
    sim = Simulator(model)
    t_parse = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(1, 3, args.height, args.width), dtype=np.int8)
    macs = 0
    env = {sim.graph.inputs[0].tensor: x}
    per_kind: dict[str, float] = defaultdict(float)
    for op in sim.graph.ops:
        t = time.perf_counter()
        env[op.output] = run_op(op, *(env[i] for i in op.inputs))
        kind = type(op).__name__
        if kind == "Conv":
            kind = "Conv depthwise" if op.weight.shape[1] == 1 else ("Conv int32 head" if op.int32_output else "Conv")
            macs += env[op.output][0, 0].size * op.weight.size
        per_kind[kind] += time.perf_counter() - t
    totals = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        sim.run(x)
        totals.append(time.perf_counter() - t)
    print(
        f"graph: {len(sim.graph.ops)} integer ops, {macs / 1e9:.2f} G MAC, {len(sim.output_names)} outputs, "
        f"input {args.height}x{args.width}; parse {t_parse:.2f} s"
    )
    print(f"{'op kind':<18}{'seconds':>9}")
    for kind, sec in sorted(per_kind.items(), key=lambda kv: -kv[1]):
        print(f"{kind:<18}{sec:9.3f}")
    print(f"{'run() total':<18}{min(totals):9.3f}  (best of {args.repeats})")


if __name__ == "__main__":
    main()
