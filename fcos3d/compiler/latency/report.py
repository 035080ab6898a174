"""The perf report of an estimate: per-layer rows, JSON, CSV and one self-contained HTML page with a chart.

Returns data or writes files; prints nothing (the CLI draws the rows with rich). Optional measured per-layer
seconds (fit.measure_layers) add measured columns and the estimate's errors.
"""

from __future__ import annotations

import csv
import html
import io
import json
import statistics
from pathlib import Path

from fcos3d.io import atomic_write_text

from .estimate import Estimate

__all__ = ["PERF_FORMAT", "CSV_COLUMNS", "errors", "perf_dict", "table_rows", "write_report", "html_page"]

PERF_FORMAT = 1
CSV_COLUMNS = (
    "index",
    "name",
    "op",
    "output_shape",
    "macs",
    "work",
    "weight_bytes",
    "activation_bytes",
    "on_chip",
    "compute_cycles",
    "memory_cycles",
    "overhead_cycles",
    "cycles",
    "bound",
    "latency_ms",
    "measured_ms",
    "error",
)


def errors(est: Estimate, measured: dict | None) -> dict | None:
    """Relative errors (estimate - measured) / measured: the total, and the median of |per-layer error|.

    ``measured``: ``{"layers_s": [seconds per layer in est.layers' order], "total_s": whole-module seconds}``.
    """
    if not measured:
        return None
    per_layer = [
        layer.cycles / est.clock_hz / m - 1.0 for layer, m in zip(est.layers, measured["layers_s"], strict=True)
    ]
    return {
        "total_error": est.seconds / measured["total_s"] - 1.0,
        "median_abs_layer_error": statistics.median(abs(e) for e in per_layer) if per_layer else 0.0,
        "layer_errors": per_layer,
        "measured_total_ms": measured["total_s"] * 1e3,
        "measured_sum_of_layers_ms": sum(measured["layers_s"]) * 1e3,
    }


def perf_dict(est: Estimate, measured: dict | None = None) -> dict:
    """perf.json: board, accelerator, totals, per-layer rows; ``measurement`` when measured."""
    layers = est.layer_rows()
    err = errors(est, measured)
    for i, row in enumerate(layers):
        row["index"] = i
        row["measured_ms"] = measured["layers_s"][i] * 1e3 if measured else None
        row["error"] = err["layer_errors"][i] if err else None
    out = {
        "format": PERF_FORMAT,
        "board": est.board,
        "accelerator": est.accelerator,
        "clock_hz": est.clock_hz,
        "macs_per_cycle": est.macs_per_cycle,
        "model": "PERFORMANCE.md#latency-model",
        "totals": est.totals(),
        "layers": layers,
    }
    if err:
        out["measurement"] = {k: v for k, v in err.items() if k != "layer_errors"}
    return out


def table_rows(est: Estimate, measured: dict | None = None, limit: int | None = None) -> tuple[tuple, list[tuple]]:
    """(header, rows) of strings for a terminal table: the ``limit`` slowest layers, or all in order."""
    d = perf_dict(est, measured)
    layers = d["layers"]
    if limit is not None:
        layers = sorted(layers, key=lambda r: -r["cycles"])[:limit]
    header = ("#", "layer", "op", "out shape", "MMACs", "cycles", "bound", "ms")
    if measured:
        header += ("measured ms", "error")
    rows = []
    for r in layers:
        row = (
            str(r["index"]),
            r["name"],
            r["op"],
            "x".join(map(str, r["output_shape"][1:])),
            f"{r['macs'] / 1e6:.2f}",
            str(r["cycles"]),
            r["bound"],
            f"{r['latency_ms']:.4f}",
        )
        if measured:
            row += (f"{r['measured_ms']:.4f}", f"{r['error']:+.0%}")
        rows.append(row)
    return header, rows


def layers_csv(rows, columns, extra_rows=(), **fields) -> str:
    """One CSV row per layer dict (only ``columns``; None as an empty cell, ``output_shape`` as HxW-style text),
    ``fields`` ({column: row -> value}) overriding columns, then ``extra_rows`` (e.g. a total) as they are. Shared by
    perf.csv, the Ethos-U perf.csv and profile.csv."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        row = {**r, "output_shape": "x".join(map(str, r["output_shape"]))}
        writer.writerow(row | {k: f(r) for k, f in fields.items()})
    for r in extra_rows:
        writer.writerow(r)
    return buf.getvalue()


def _csv_text(d: dict) -> str:
    return layers_csv(d["layers"], CSV_COLUMNS)


def _svg_chart(d: dict, width: int = 900, bar_h: int = 12) -> str:
    """Horizontal bars, one per layer: estimated ms (compute-bound blue, memory-bound orange), measured as a
    black tick when present. Inline SVG: the page needs no image file and no script."""
    layers = d["layers"]
    label_w, pad = 260, 4
    vmax = max([r["latency_ms"] for r in layers] + [r["measured_ms"] or 0 for r in layers] + [1e-12])
    scale = (width - label_w - 80) / vmax
    height = len(layers) * (bar_h + pad) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="chart" '
        f'font-family="sans-serif" font-size="10">'
    ]
    for i, r in enumerate(layers):
        y = 20 + i * (bar_h + pad)
        color = "#3b75af" if r["bound"] == "compute" else "#ef8636"
        name = html.escape(r["name"][-40:])
        w = max(r["latency_ms"] * scale, 0.5)
        parts.append(f'<text x="{label_w - 4}" y="{y + bar_h - 2}" text-anchor="end">{name}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}">'
            f"<title>{name}: {r['latency_ms']:.4f} ms ({r['bound']}-bound)</title></rect>"
        )
        if r["measured_ms"] is not None:
            x = label_w + r["measured_ms"] * scale
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y - 1}" y2="{y + bar_h + 1}" stroke="black" stroke-width="2"/>'
            )
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 2}">{r["latency_ms"]:.3f}</text>')
    parts.append(
        f'<text x="{label_w}" y="12">estimated ms per layer (blue: compute-bound, orange: memory-bound'
        f"{'; black tick: measured' if layers and layers[0]['measured_ms'] is not None else ''})</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts)


def html_page(d: dict) -> str:
    """A self-contained page: totals, the per-layer chart (inline SVG) and the per-layer table."""
    t = d["totals"]
    totals = [
        ("latency", f"{t['latency_ms']:.4f} ms"),
        ("FPS", f"{t['fps']:.1f}"),
        ("GMACs", f"{t['gmacs']:.4f}"),
        ("weights", f"{t['weight_bytes']:,} bytes"),
        ("peak activations", f"{t['peak_activation_bytes']:,} bytes"),
        ("MAC utilisation", f"{t['mac_utilisation']:.1%}"),
        ("cycles", f"{t['cycles']:,}"),
    ]
    if t.get("call_overhead_cycles"):  # the host's once-per-inference cost, in the total but in no layer row
        totals.append(("of which once per call", f"{t['call_overhead_cycles']:,} cycles"))
    if "measurement" in d:
        m = d["measurement"]
        totals += [
            ("measured latency", f"{m['measured_total_ms']:.4f} ms"),
            ("total error", f"{m['total_error']:+.1%}"),
            ("median |layer error|", f"{m['median_abs_layer_error']:.1%}"),
        ]
    rows_totals = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in totals)
    cols = [c for c in CSV_COLUMNS if c not in ("measured_ms", "error") or "measurement" in d]
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = []
    for r in d["layers"]:
        cells = []
        for c in cols:
            v = r[c]
            v = "x".join(map(str, v)) if c == "output_shape" else f"{v:.4f}" if isinstance(v, float) else v
            cells.append(f"<td>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    title = f"fcos3d perf: {html.escape(d['board'])} ({html.escape(d['accelerator'])})"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}} th{{background:#f3f3f3}}</style></head>
<body><h1>{title}</h1>
<p>Analytic estimate: per layer max(compute, memory) + overhead cycles (PERFORMANCE.md, "Latency model").</p>
<h2>Totals</h2><table>{rows_totals}</table>
<h2>Latency per layer</h2>
{_svg_chart(d)}
<h2>Layers</h2><table><tr>{head}</tr>
{chr(10).join(body)}
</table></body></html>
"""


def write_report(
    est: Estimate, out_dir: str | Path, measured: dict | None = None, stem: str = "perf"
) -> dict[str, Path]:
    """Write ``perf.json``, ``perf.csv`` (one row per layer) and ``perf.html`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    d = perf_dict(est, measured)
    paths = {"json": out_dir / f"{stem}.json", "csv": out_dir / f"{stem}.csv", "html": out_dir / f"{stem}.html"}
    # Each file whole or not at all (a kill leaves the previous report, never half of one).
    atomic_write_text(paths["json"], json.dumps(d, indent=2) + "\n")
    atomic_write_text(paths["csv"], _csv_text(d))
    atomic_write_text(paths["html"], html_page(d))
    return paths
