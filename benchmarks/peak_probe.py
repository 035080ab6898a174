"""The int8 roofline of this machine: build benchmarks/peak_probe.c, run it on 1 and N threads, report GMAC/s per core.

x86_64: ``cc -O2 -mavx512f -mavx512vnni`` (the vpdpbusd loop), and where the CPU has Intel AMX also
benchmarks/amx_peak_probe.c (a tdpbssd loop: the dense convs' peak when the compile puts them on AMX tiles). aarch64: the cross compiler builds a static binary
of the sdot loop and qemu-aarch64 runs it (``--arm``): that checks that the probe builds and runs; an emulator's
GMAC/s says nothing about a board. Each run also reports the thread's CPU share (thread CPU time / wall time), so
that a rate per CPU-second can be given on a machine that other jobs share; /proc/stat's steal time and the CPU
topology (lscpu) come with it.

    .venv/bin/python benchmarks/peak_probe.py [--threads 1,2] [--repeat 5] [--seconds 0.5] [--arm]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "peak_probe.c"
ROOT = HERE.parent


def build(out_dir: Path, arm: bool = False) -> Path:
    """The probe binary for this machine (x86_64 with AVX-512 VNNI, or aarch64), or for aarch64 with ``arm``."""
    if arm:
        cc = shutil.which("aarch64-linux-gnu-gcc")
        if cc is None:
            raise FileNotFoundError(
                "aarch64-linux-gnu-gcc is not on PATH (Debian: apt-get install gcc-aarch64-linux-gnu)"
            )
        flags = ["-O2", "-march=armv8.2-a+dotprod", "-static"]
    elif platform.machine() in ("aarch64", "arm64"):
        cc, flags = "cc", ["-O2", "-march=armv8.2-a+dotprod"]
    else:
        cc, flags = "cc", ["-O2", "-mavx512f", "-mavx512vnni"]
    binary = out_dir / ("peak_probe_arm" if arm else "peak_probe")
    subprocess.run([cc, *flags, "-pthread", str(SOURCE), "-o", str(binary)], check=True)
    return binary


def _steal_ticks() -> int | None:
    """Cumulative steal time (USER_HZ ticks) of all CPUs from /proc/stat, None where there is no such file."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        return int(fields[8])
    except (OSError, IndexError, ValueError):
        return None


def topology() -> dict:
    """What the OS says about the cores: model, threads per core, hypervisor, load average."""
    info = {"machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in (
                "Model name",
                "Thread(s) per core",
                "Core(s) per socket",
                "Hypervisor vendor",
                "L2 cache",
            ):
                info[key.strip()] = value.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    if hasattr(os, "getloadavg"):
        info["loadavg"] = os.getloadavg()
    return info


AMX_SOURCE = HERE / "amx_peak_probe.c"


def has_amx() -> bool:
    """The CPU reports AMX int8 tiles (/proc/cpuinfo flags amx_int8 and amx_tile)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_int8" in flags and "amx_tile" in flags


def measure_amx(repeat: int = 3, seconds: float = 0.5) -> dict | None:
    """One core's AMX int8 peak (benchmarks/amx_peak_probe.c, the best of ``repeat`` runs), or None where the CPU
    has no AMX or the kernel refuses the tile data. The roofline of the dense convs where the compile uses AMX."""
    if platform.machine() != "x86_64" or not has_amx():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "amx_peak_probe"
        subprocess.run(["cc", "-O2", "-mamx-tile", "-mamx-int8", str(AMX_SOURCE), "-o", str(binary)], check=True)
        runs = []
        for _ in range(repeat):
            out = subprocess.run([str(binary), str(seconds)], capture_output=True, text=True)
            if out.returncode:
                return None
            runs.append(json.loads(out.stdout))
    return {"isa": runs[0]["isa"], "peak_gmacs_per_core": max(r["gmacs_per_core"] for r in runs), "runs": runs}


def run_probe(binary: Path, threads: int, seconds: float, mib: int = 256, runner: list[str] | None = None) -> dict:
    out = subprocess.run(
        [*(runner or []), str(binary), str(threads), str(seconds), str(mib)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def measure(
    threads: tuple[int, ...] = (1, 2), repeat: int = 5, seconds: float = 0.5, arm: bool = False, mib: int = 256
) -> dict:
    """Per thread count: the best of ``repeat`` runs (the least disturbed), as GMAC/s per thread (wall) and per
    CPU-second of the thread (wall rate / CPU share), and the copy bandwidth. ``peak_gmacs_per_core``: the
    1-thread rate per CPU-second, the figure the roofline divides by."""
    runner = None
    if arm:
        qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
        if qemu is None:
            raise FileNotFoundError("qemu-aarch64(-static) is not on PATH (Debian: apt-get install qemu-user-static)")
        runner = [qemu]
    with tempfile.TemporaryDirectory() as tmp:
        binary = build(Path(tmp), arm)
        steal0 = _steal_ticks()
        rows = {}
        for n in threads:
            runs = [run_probe(binary, n, seconds, mib, runner) for _ in range(repeat)]
            best = max(runs, key=lambda r: r["gmacs_per_thread_min"])
            rows[str(n)] = {
                "gmacs_per_thread": best["gmacs_per_thread_min"],
                "gmacs_total": best["gmacs_total"],
                "cpu_share": best["dot_cpu_share"],
                "gmacs_per_cpu_second": max(r["gmacs_per_thread_min"] / max(r["dot_cpu_share"], 1e-9) for r in runs),
                "copy_gbs_total": max(r["copy_gbs_total"] for r in runs),
                "copy_gbs_per_cpu_second": max(
                    r["copy_gbs_per_thread_min"] / max(r["copy_cpu_share"], 1e-9) for r in runs
                ),
                "runs": runs,
            }
        steal1 = _steal_ticks()
    isa = next(iter(rows.values()))["runs"][0]["isa"]
    one = rows.get("1")
    amx = None if arm else measure_amx()
    return {
        "amx": amx,
        "isa": isa,
        "emulated": arm,
        "seconds_per_run": seconds,
        "repeat": repeat,
        "copy_mib": mib,
        "peak_gmacs_per_core": one["gmacs_per_cpu_second"] if one else None,
        "peak_gmacs_per_core_wall": one["gmacs_per_thread"] if one else None,
        "steal_ticks_during": None if steal0 is None or steal1 is None else steal1 - steal0,
        "topology": topology(),
        "threads": rows,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--mib", type=int, default=256, help="copy buffer per thread (MiB), far above the caches")
    ap.add_argument("--arm", action="store_true", help="the aarch64 sdot probe under qemu (checks it runs only)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "peak_probe.json")
    args = ap.parse_args(argv)
    threads = tuple(int(t) for t in args.threads.split(",") if t.strip())
    result = measure(threads, args.repeat, args.seconds, args.arm, args.mib)
    result["command"] = "python benchmarks/peak_probe.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(
        f"{result['isa']}{' (emulated by qemu)' if args.arm else ''}; load average {result['topology'].get('loadavg')}"
    )
    print(
        f"{'threads':>7}{'GMAC/s/thread':>15}{'CPU share':>11}{'GMAC/CPU-s':>12}{'copy GB/s':>11}{'copy GB/CPU-s':>15}"
    )
    for n, r in result["threads"].items():
        print(
            f"{n:>7}{r['gmacs_per_thread']:>15.1f}{r['cpu_share']:>11.2f}{r['gmacs_per_cpu_second']:>12.1f}"
            f"{r['copy_gbs_total']:>11.1f}{r['copy_gbs_per_cpu_second']:>15.1f}"
        )
    if result["amx"]:
        print(f"{result['amx']['isa']}: {result['amx']['peak_gmacs_per_core']:.0f} GMAC/s on one core")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(args.json)


if __name__ == "__main__":
    main()
