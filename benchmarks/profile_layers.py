"""Per-layer profile of the compiled FCOS3D (fcos3d.compiler.profile): where the time goes, against the roofline.

Profiles an artifact folder (``--artifact``), or the untuned host compile of the benchmark's FCOS3D at ``--size``
(bench_runtimes.py's cached models under build/bench_runtimes/<size>, compiled when missing). Writes profile.json
and profile.csv into the artifact folder, beside perf.json, and prints the slowest layers and the time per kernel
kind. The roofline columns use the int8 peak measured by benchmarks/peak_probe.c (or ``--peak-gmacs``).

    .venv/bin/python benchmarks/profile_layers.py [--size 512x896 | --artifact DIR] [--threads 1] [--top 10]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def artifact_for(size: str, out_root: Path) -> Path:
    """The cached host artifact of ``size`` (bench_runtimes.py's folder layout), compiled when missing."""
    from bench_latency import SIZES, build_models

    from fcos3d.compiler.build import compile_onnx

    folder = out_root / size
    artifact = folder / "artifact"
    if not (artifact / "meta.json").is_file():
        config, hw = SIZES[size]
        _, qdq = build_models(config, hw, folder / "fcos3d_int8.onnx")
        compile_onnx(qdq, "host", artifact)
    return artifact


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifact", type=Path, default=None, help="a host artifact folder (fcos3d-compile)")
    ap.add_argument("--size", default="512x896", help="without --artifact: synthetic or 512x896")
    ap.add_argument("--threads", type=int, default=1, help="TVM_NUM_THREADS for the profiled module")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--peak-gmacs", type=float, default=None, help="per-core int8 peak; default: measure it")
    ap.add_argument("--module-only", action="store_true", help="skip compiling and timing every layer alone")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "bench_runtimes")
    args = ap.parse_args(argv)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # before TVM's thread pool starts

    from fcos3d.compiler.profile import profile_artifact

    artifact = args.artifact or artifact_for(args.size, args.out)
    peak = args.peak_gmacs
    if peak is None:
        import peak_probe

        peak = peak_probe.measure(threads=(1,), repeat=5)["peak_gmacs_per_core"]
    p = profile_artifact(artifact, runs=args.runs, peak_gmacs_per_core=peak, layers=not args.module_only)
    t = p["totals"]
    print(
        f"{artifact}: {p['threads']} thread(s), module {t['module_ms']:.2f} ms (kernels {t['kernels_sum_ms']:.2f} + VM "
        f"builtins {t['vm_builtins_ms']:.2f}), estimate {t['estimate_ms']:.2f} ms, {t['macs'] / 1e9:.2f} GMAC, "
        f"roofline {t['roofline_ms']:.2f} ms at {peak:.0f} GMAC/s/core = {t['x_roofline']:.2f}x"
    )
    if t["layers_alone_sum_ms"] is not None:
        print(f"sum of the layers compiled alone: {t['layers_alone_sum_ms']:.2f} ms")
    print("\ntime per kernel kind in the module (ms):")
    for kind, ms in p["by_kind_ms"].items():
        print(f"  {kind:<16}{ms:>9.2f}{ms / t['module_ms']:>8.1%}")
    if t["layers_alone_sum_ms"] is not None:
        print(f"\nthe {args.top} slowest layers in the module:")
        print(
            f"{'#':>4} {'layer':<34}{'op':<14}{'out shape':<16}{'MMAC':>8}{'est ms':>8}{'alone ms':>9}"
            f"{'module ms':>10}{'roof ms':>8}{'x roof':>7}  kernels (alone, ms)"
        )
        for r in sorted(p["layers"], key=lambda r: -r["in_module_ms"])[: args.top]:
            roof = "" if r["roofline_ms"] is None else f"{r['roofline_ms']:.3f}"
            xr = "" if r["x_roofline"] is None else f"{r['x_roofline']:.1f}"
            ks = " ".join(f"{k['kind']}:{k['ms']:.2f}" for k in r["kernels"])
            print(
                f"{r['index']:>4} {r['name'][-33:]:<34}{r['op']:<14}{'x'.join(map(str, r['output_shape'][1:])):<16}"
                f"{r['macs'] / 1e6:>8.1f}{r['estimate_ms']:>8.3f}{r['measured_ms']:>9.3f}{r['in_module_ms']:>10.3f}"
                f"{roof:>8}{xr:>7}  {ks}"
            )
    print("\n" + "\n".join(p["files"].values()))


if __name__ == "__main__":
    main()
