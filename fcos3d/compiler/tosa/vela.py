"""Vela (ethos-u-vela) on a .tosa graph for one Ethos-U board: the command stream and Vela's own performance.

Vela's cycle counts depend on the system config and memory mode, so every run names all three explicitly
(accelerator config, system config, memory mode from the package's Arm/vela.ini) and records them
(notes/npu.md). ``run_vela`` returns the output file, the totals and per-op rows, and whether any op was left
to the CPU (U55/U65 have no CPU fallback for TOSA input: one unsupported op fails the compile instead).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fcos3d.errors import Fcos3dError

__all__ = ["VELA_CONFIGS", "VelaConfig", "VelaError", "VelaResult", "run_vela", "vela_ini"]


class VelaError(Fcos3dError, RuntimeError):
    """Vela failed on a .tosa file (or is not installed); the message names the file and Vela's reason."""


@dataclass(frozen=True)
class VelaConfig:
    """Vela's three settings for one board (names as in Arm/vela.ini)."""

    accelerator_config: str
    system_config: str
    memory_mode: str


# The system each Ethos-U board file describes (fcos3d/boards/*.toml: clock and memories).
VELA_CONFIGS: dict[str, VelaConfig] = {
    "ethos-u55-256": VelaConfig("ethos-u55-256", "Ethos_U55_High_End_Embedded", "Shared_Sram"),
    "ethos-u65-512": VelaConfig("ethos-u65-512", "Ethos_U65_Client_Server", "Dedicated_Sram_384KB"),
    "ethos-u85-256": VelaConfig("ethos-u85-256", "Ethos_U85_SYS_DRAM_Mid", "Dedicated_Sram_384KB"),
}


@dataclass(frozen=True)
class VelaResult:
    """What one Vela run gave. ``layers``: Vela's per-op rows (original op, target NPU/CPU, cycles, MACs, name)."""

    config: VelaConfig
    output: Path
    clock_hz: float
    total_cycles: float
    npu_cycles: float
    inference_time_s: float
    macs: int
    cpu_ops: int
    npu_ops: int
    layers: list[dict] = field(default_factory=list)
    version: str = ""

    @property
    def cpu_fallback(self) -> bool:
        return self.cpu_ops > 0 or any(r["target"] != "NPU" for r in self.layers)

    def as_dict(self) -> dict:
        return {
            "accelerator_config": self.config.accelerator_config,
            "system_config": self.config.system_config,
            "memory_mode": self.config.memory_mode,
            "output": self.output.name,
            "clock_hz": self.clock_hz,
            "total_cycles": self.total_cycles,
            "npu_cycles": self.npu_cycles,
            "inference_time_s": self.inference_time_s,
            "macs": self.macs,
            "cpu_ops": self.cpu_ops,
            "npu_ops": self.npu_ops,
            "vela_version": self.version,
        }


def vela_ini() -> Path:
    """The Arm/vela.ini that ships with ethos-u-vela."""
    import importlib.util

    spec = importlib.util.find_spec("ethosu")  # a namespace package: no __file__
    ini = [Path(p) / "config_files" / "Arm" / "vela.ini" for p in (spec.submodule_search_locations if spec else [])]
    ini = [p for p in ini if p.is_file()]
    if not ini:
        raise VelaError("ethos-u-vela is not installed: install ethos-u-vela==5.2.0 (pyproject.toml pins it)")
    return ini[0]


def _vela_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("ethos-u-vela")
    except metadata.PackageNotFoundError:
        return ""


def _reason(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip() and not ln.startswith("Warning: Consider")]
    for ln in lines:
        if "Error" in ln or "error" in ln or "could not run on NPU" in ln:
            return ln
    return lines[-1] if lines else "no output"


def run_vela(
    tosa_path: str | Path, config: VelaConfig | str, out_dir: str | Path, timeout_s: float = 600.0
) -> VelaResult:
    """``vela TOSA --accelerator-config A --config vela.ini --system-config S --memory-mode M --output-dir OUT``.

    ``config``: a ``VelaConfig`` or a board name of ``VELA_CONFIGS``. Writes ``<stem>_vela.tflite`` (the command
    stream and weights as one ethos-u custom op) and Vela's CSVs into ``out_dir``. Raises ``VelaError`` (one line:
    the file and Vela's reason) when Vela fails.
    """
    tosa_path, out_dir = Path(tosa_path), Path(out_dir)
    if isinstance(config, str):
        if config not in VELA_CONFIGS:
            raise VelaError(f"no Vela configuration for board {config!r}; known: {', '.join(VELA_CONFIGS)}")
        config = VELA_CONFIGS[config]
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-c",
        "import sys; from ethosu.vela.vela import main; sys.exit(main(sys.argv[1:]))",
        str(tosa_path),
        "--accelerator-config",
        config.accelerator_config,
        "--config",
        str(vela_ini()),
        "--system-config",
        config.system_config,
        "--memory-mode",
        config.memory_mode,
        "--output-dir",
        str(out_dir),
        "--verbose-performance",  # the per-op table and the CPU/NPU operator counts
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise VelaError(f"{tosa_path}: Vela ran past {timeout_s:.0f} s for {config.accelerator_config}") from None
    stem = tosa_path.stem
    output = out_dir / f"{stem}_vela.tflite"
    summary = out_dir / f"{stem}_summary_{config.system_config}.csv"
    if proc.returncode != 0 or not output.is_file() or not summary.is_file():
        raise VelaError(
            f"{tosa_path}: Vela failed for {config.accelerator_config} (exit {proc.returncode}): "
            f"{_reason(proc.stdout + chr(10) + proc.stderr)}"
        )
    with open(summary, newline="") as f:
        s = next(csv.DictReader(f))
    layers = []
    per_layer = out_dir / f"{stem}_per-layer.csv"
    if per_layer.is_file():
        with open(per_layer, newline="") as f:
            for row in csv.DictReader(f):
                layers.append(
                    {
                        "original_op": row["Original Operator"],
                        "vela_op": row["NNG Operator"],
                        "target": row["Target"],
                        "cycles": float(row["Op Cycles"] or 0),
                        "macs": int(float(row["MAC Count"] or 0)),
                        "name": row["Name"],
                    }
                )
    cpu_ops = npu_ops = 0
    for ln in proc.stdout.splitlines():
        if ln.startswith("CPU operators ="):
            cpu_ops = int(ln.split("=")[1].split()[0])
        elif ln.startswith("NPU operators ="):
            npu_ops = int(ln.split("=")[1].split()[0])
    return VelaResult(
        config=config,
        output=output,
        clock_hz=float(s["core_clock"]),
        total_cycles=float(s["cycles_total"]),
        npu_cycles=float(s["cycles_npu"]),
        inference_time_s=float(s["inference_time"]),
        macs=int(float(s["nn_macs"])),
        cpu_ops=cpu_ops,
        npu_ops=npu_ops,
        layers=layers,
        version=_vela_version(),
    )
