"""perf.{json,csv,html} of an Ethos-U artifact: our latency estimate and Vela's, side by side per layer and in total.

Both are estimates (no NPU runs here): ours is the model of PERFORMANCE.md "Latency model" on the board file's
figures, Vela's its own cycle model for the exact command stream. Vela's per-op rows are named by TOSA output
tensors; the emitter's ``op_of`` maps each back to the int8 op it was written for, so the rows line up.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from pathlib import Path

from fcos3d.io import atomic_write_text

from ..latency.estimate import Estimate
from ..latency.report import layers_csv
from .vela import VelaResult

__all__ = ["PERF_FORMAT", "CSV_COLUMNS", "side_by_side", "write_perf"]

PERF_FORMAT = 1
CSV_COLUMNS = (
    "index",
    "name",
    "op",
    "output_shape",
    "macs",
    "estimate_cycles",
    "estimate_ms",
    "vela_cycles",
    "vela_ms",
    "estimate_vs_vela",
)
SOURCES = {
    "estimate": "fcos3d latency model (PERFORMANCE.md 'Latency model'), board file figures",
    "vela": "Vela's performance estimate of the compiled command stream (no NPU hardware ran)",
}


def _owner(name: str, op_of: dict[str, str]) -> str | None:
    """The op a Vela row belongs to: its tensor's, or that of the tensor Vela derived its own from by a suffix
    (a RESCALE Vela splits writes ``<tensor>_int32``)."""
    for _ in range(3):
        if name in op_of:
            return op_of[name]
        if "_" not in name:
            break
        name = name.rsplit("_", 1)[0]
    return None


def side_by_side(est: Estimate, vela: VelaResult, op_of: dict[str, str]) -> dict:
    """One dict: totals of both and, per op of the int8 graph, our cycles and the sum of Vela's cycles of the
    TOSA ops written for it (``vela_unmatched_cycles``: rows with no owner, e.g. Vela's own reshapes)."""
    vela_by_op: dict[str, float] = defaultdict(float)
    unmatched = 0.0
    for row in vela.layers:
        owner = _owner(row["name"], op_of)
        if owner is None:
            unmatched += row["cycles"]
        else:
            vela_by_op[owner] += row["cycles"]
    layers = []
    for i, layer in enumerate(est.layers):
        v = vela_by_op.get(layer.name, 0.0)
        layers.append(
            {
                "index": i,
                "name": layer.name,
                "op": layer.op,
                "output_shape": list(layer.output_shape),
                "macs": layer.macs,
                "estimate_cycles": layer.cycles,
                "estimate_ms": layer.cycles / est.clock_hz * 1e3,
                "vela_cycles": v,
                "vela_ms": v / vela.clock_hz * 1e3,
                "estimate_vs_vela": (layer.cycles / est.clock_hz) / (v / vela.clock_hz) - 1.0 if v else None,
            }
        )
    vela_ms = vela.inference_time_s * 1e3
    return {
        "format": PERF_FORMAT,
        "board": est.board,
        "accelerator": est.accelerator,
        "sources": SOURCES,
        "vela": vela.as_dict(),
        "totals": {
            "estimate_cycles": est.cycles,
            "estimate_ms": est.seconds * 1e3,
            "vela_cycles": vela.total_cycles,
            "vela_npu_cycles": vela.npu_cycles,
            "vela_ms": vela_ms,
            "vela_sum_of_layer_cycles": sum(r["cycles"] for r in vela.layers),
            "vela_unmatched_cycles": unmatched,
            "estimate_vs_vela": est.seconds * 1e3 / vela_ms - 1.0 if vela_ms else None,
            "macs": est.macs,
            "vela_macs": vela.macs,
            "cpu_fallback": vela.cpu_fallback,
        },
        "layers": layers,
    }


def _csv_text(d: dict) -> str:
    t = d["totals"]
    total = {"index": "total", "name": "", "op": ""} | {
        k: t[k] for k in ("macs", "estimate_cycles", "estimate_ms", "vela_cycles", "vela_ms", "estimate_vs_vela")
    }
    return layers_csv(d["layers"], CSV_COLUMNS, [total])


def _html_page(d: dict) -> str:
    t, v = d["totals"], d["vela"]
    esc = html.escape
    rows = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{esc(str(x))}</td>"
            for x in (
                r["index"],
                r["name"],
                r["op"],
                "x".join(map(str, r["output_shape"])),
                r["estimate_cycles"],
                f"{r['estimate_ms']:.4f}",
                f"{r['vela_cycles']:.0f}",
                f"{r['vela_ms']:.4f}",
                "" if r["estimate_vs_vela"] is None else f"{r['estimate_vs_vela']:+.0%}",
            )
        )
        + "</tr>"
        for r in d["layers"]
    )
    ratio = "" if t["estimate_vs_vela"] is None else f" ({t['estimate_vs_vela']:+.0%})"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{esc(d["board"])}: estimate vs Vela</title>
<style>body{{font-family:sans-serif}} td,th{{padding:2px 8px;text-align:right}} td:nth-child(2),td:nth-child(3){{text-align:left}}</style>
</head><body><h1>{esc(d["board"])} ({esc(d["accelerator"])})</h1>
<p>Both columns are estimates; no NPU hardware ran. Ours: {esc(d["sources"]["estimate"])}. Vela {esc(v["vela_version"])}:
{esc(v["accelerator_config"])}, system config {esc(v["system_config"])}, memory mode {esc(v["memory_mode"])},
clock {v["clock_hz"] / 1e6:.0f} MHz; {v["npu_ops"]} NPU ops, {v["cpu_ops"]} CPU ops.</p>
<p>Total: ours {t["estimate_ms"]:.4f} ms ({t["estimate_cycles"]} cycles), Vela {t["vela_ms"]:.4f} ms
({t["vela_cycles"]:.0f} cycles){ratio}.</p>
<table><tr><th>#</th><th>layer</th><th>op</th><th>out shape</th><th>our cycles</th><th>our ms</th>
<th>Vela cycles</th><th>Vela ms</th><th>ours vs Vela</th></tr>
{rows}
</table></body></html>
"""


def write_perf(d: dict, out_dir: str | Path, stem: str = "perf") -> dict[str, Path]:
    """``perf.json``, ``perf.csv`` (a row per layer, then the totals) and ``perf.html`` into ``out_dir``."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"{stem}.json", "csv": out_dir / f"{stem}.csv", "html": out_dir / f"{stem}.html"}
    atomic_write_text(paths["json"], json.dumps(d, indent=2) + "\n")
    atomic_write_text(paths["csv"], _csv_text(d))
    atomic_write_text(paths["html"], _html_page(d))
    return paths
