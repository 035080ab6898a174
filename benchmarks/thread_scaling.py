"""Why 2 threads are not faster than 1: the measurements, in one script to rerun on a quiet machine.

1. The cores: lscpu's topology and benchmarks/peak_probe.c on 1 and 2 threads at once. An int8 dot-product rate per
   CPU-second that stays the same with 2 threads means the two cores do not share an execution unit (no SMT
   siblings); the copy bandwidth with 2 threads says whether they share the memory path.
2. The runtimes, as bench_runtimes.py times them (one worker process per setting, interleaved rounds):
     1 thread            every runtime 1 thread, TVM not pinning
     2 threads           every runtime 2 threads, a fresh process, TVM not pinning
     2 after TVM pinned  the other runtimes asked for 2 threads in a process whose TVM pool started with 1 thread
                         and TVM's default pinning (TVM_BIND_THREADS): the calling thread is pinned to core 0 and
                         every thread started after it inherits that (a 1-thread and a 2-thread run in one process)
   with each run's CPU share (process CPU time / (wall x threads)): on a machine other jobs share, a 2-thread run
   waits for the slower of its 2 cores at every barrier, so a low share explains a missing speed-up.
3. Ours and OpenVINO int8 each alone in its process (no other runtime's thread pool started), 1 and 2 threads,
   the processes taking turns: the speed-up a deployment sees, where one runtime owns the cores.

    .venv/bin/python benchmarks/thread_scaling.py [--size synthetic|512x896] [--runs 5] [--cycles 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_runtimes  # noqa: E402
import peak_probe  # noqa: E402

ALONE = ("ours", "openvino_int8")
SETTINGS = (  # name, threads, TVM's threads, TVM pinning
    ("1 thread", 1, 1, False),
    ("2 threads", 2, 2, False),
    ("2 after TVM pinned", 2, 1, True),
)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="synthetic")
    ap.add_argument("--runs", type=int, default=5, help="runs per cycle")
    ap.add_argument("--cycles", type=int, default=3, help="the settings in turn, this many times")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "bench_runtimes")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "thread_scaling.json")
    args = ap.parse_args(argv)
    args.ort_ours = False

    probe = peak_probe.measure(threads=(1, 2), repeat=5)
    topo = probe["topology"]
    print(
        f"{topo.get('Model name')}: {topo.get('cpus')} CPUs, {topo.get('Thread(s) per core')} thread(s) per core, "
        f"hypervisor {topo.get('Hypervisor vendor', 'none')}, load average {topo.get('loadavg')}"
    )
    for n, r in probe["threads"].items():
        print(
            f"  peak probe, {n} thread(s) at once: {r['gmacs_per_thread']:.0f} GMAC/s per thread (wall), CPU share "
            f"{r['cpu_share']:.2f}, {r['gmacs_per_cpu_second']:.0f} GMAC per CPU-second; copy {r['copy_gbs_total']:.1f} "
            f"GB/s in all ({r['copy_gbs_per_cpu_second']:.1f} GB per CPU-second per thread)"
        )

    prep = bench_runtimes.prepare(args.size, args.out)
    prep_json = args.out / args.size / "prep.json"
    prep_json.write_text(json.dumps(prep, indent=1) + "\n")
    # The settings take turns, cycle after cycle, and each pools its runs over the cycles: a burst of other work
    # on the machine then falls on every setting alike (one worker process per setting and cycle).
    results, workers = {}, []
    for _ in range(args.cycles):
        for name, threads, tvm_threads, bind in SETTINGS:
            timed = bench_runtimes.run_worker(prep_json, threads, args, tvm_threads=tvm_threads, tvm_bind=bind)
            workers.append({"setting": name, **timed})
            pooled = results.setdefault(name, {"threads": threads, "wall_s": {}, "cpu_s": {}, "notes": timed["notes"]})
            for key in ("wall_s", "cpu_s"):
                for k, v in timed[key].items():
                    pooled[key].setdefault(k, []).extend(v)
            print(
                f"  {name}: main thread's CPUs after TVM's pool started: {timed['notes']['cpus_allowed_after_tvm']}; "
                f"threads by allowed CPUs after the runs: {timed['notes']['threads_by_cpus_allowed']}"
            )

    alone = {}  # (runtime, threads) -> pooled wall seconds, each runtime alone in its process
    for _ in range(args.cycles):
        for runtime in ALONE:
            for threads in (1, 2):
                timed = bench_runtimes.run_worker(prep_json, threads, args, only=runtime)
                workers.append({"setting": f"{runtime} alone, {threads} thread(s)", **timed})
                alone.setdefault((runtime, threads), []).extend(timed["wall_s"].get(runtime, []))

    base = results["1 thread"]
    rows = []
    header = "| runtime | 1 thread ms | 2 threads ms | speed-up | CPU share 1 / 2 | 2 after TVM pinned ms | speed-up |"
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|"]
    for k in base["wall_s"]:
        med = {name: statistics.median(r["wall_s"][k]) * 1e3 for name, r in results.items()}
        share = {
            name: statistics.median(c / (w * r["threads"]) for c, w in zip(r["cpu_s"][k], r["wall_s"][k]))
            for name, r in results.items()
        }
        row = {"runtime": k, "median_ms": med, "cpu_share": share}
        rows.append(row)
        ours_note = " (TVM 1 thread)" if k == "ours" else ""
        lines.append(
            f"| {k} | {med['1 thread']:.1f} | {med['2 threads']:.1f} | {med['1 thread'] / med['2 threads']:.2f} | "
            f"{share['1 thread']:.2f} / {share['2 threads']:.2f} | {med['2 after TVM pinned']:.1f}{ours_note} | "
            f"{med['1 thread'] / med['2 after TVM pinned']:.2f} |"
        )
    lines += ["", "| runtime alone in its process | 1 thread ms | 2 threads ms | speed-up |", "|---|---:|---:|---:|"]
    alone_rows = []
    for runtime in ALONE:
        if not alone.get((runtime, 1)) or not alone.get((runtime, 2)):
            continue  # OpenVINO not installed
        one, two = (statistics.median(alone[(runtime, t)]) * 1e3 for t in (1, 2))
        alone_rows.append({"runtime": runtime, "median_ms_1": one, "median_ms_2": two, "speedup": one / two})
        lines.append(f"| {runtime} | {one:.1f} | {two:.1f} | {one / two:.2f} |")
    table = "\n".join(lines)
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "command": "python benchmarks/thread_scaling.py " + " ".join(sys.argv[1:] if argv is None else argv),
                "loadavg_end": os.getloadavg(),
                "peak_probe": probe,
                "size": args.size,
                "rows": rows,
                "alone": alone_rows,
                "table_markdown": table,
                "workers": workers,
            },
            indent=1,
        )
        + "\n"
    )
    print(args.json)


if __name__ == "__main__":
    main()
