"""Small int8 QDQ graphs for calibrating the host latency profile: ``python benchmarks/perf_graphs.py OUT_DIR``.

Layers of the shapes FCOS3D uses (stem, depthwise, 1x1 expand/project, 3x3 neck convs, add, max pool, resize,
concat, int32 head), seeded, at 64x64 so that untuned TVM code times them in minutes. Writes perf_mix.onnx.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "runtime"))

from qdq_graphs import QDQGraphBuilder  # noqa: E402


def perf_mix(seed: int = 0):
    """A chain through every op kind; channel counts include ones that are not multiples of 8."""
    b = QDQGraphBuilder(seed=seed, name="perf_mix")
    x = b.input((1, 3, 64, 64))
    x = b.conv(x, 16, kernel=3, stride=2, relu=True)  # stem, 32x32
    d = b.conv(x, 16, kernel=3, groups=16, relu=True)  # depthwise
    x = b.add(x, d)
    x = b.conv(x, 96, kernel=1, relu=True)  # expand
    x = b.conv(x, 96, kernel=3, stride=2, groups=96, relu=True)  # depthwise, 16x16
    x = b.conv(x, 24, kernel=1)  # project
    y = b.conv(x, 40, kernel=3, relu=True)
    y = b.conv(y, 40, kernel=3, relu=True)
    p = b.maxpool(y, kernel=3, stride=2, pad=1)  # 8x8
    p = b.conv(p, 40, kernel=1, relu=True)
    u = b.resize(p, factor=2)  # 16x16
    z = b.add(y, u)
    c = b.concat([z, y])
    c = b.conv(c, 64, kernel=3, relu=True)
    c = b.conv(c, 17, kernel=3, relu=True)  # 17 channels: padding matters on NPUs
    b.conv(c, 10, kernel=3, int32_output=True)  # head
    return b.build()


def main(out_dir: str) -> None:
    import onnx

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(perf_mix(), out / "perf_mix.onnx")
    print(out / "perf_mix.onnx")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/perf_graphs")
