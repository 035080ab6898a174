"""Build: checked QDQ ONNX -> lowered Relax (pipeline.py) -> the board's shared library + meta.json.

The artifact folder (docs/ARCHITECTURE.md): ``model.so`` (Relax VM executable, cross-compiled for
cross boards), ``meta.json`` (inputs/outputs, shapes, dtypes, output scales, board, versions, ONNX sha256) and
the latency estimate ``perf.json`` / ``perf.csv`` / ``perf.html`` (latency/).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fcos3d.artifact import LIBRARY, make_meta, replaceable, write_meta
from fcos3d.boards import Board, load_board
from fcos3d.errors import Fcos3dError
from fcos3d.io import atomic_dir

from .check import check_onnx

__all__ = [
    "CompileResult",
    "board_target",
    "build_executable",
    "compile_onnx",
    "export_library",
    "host_x86_features",
    "match_x86_cpu",
    "module_output_shapes",
]


@dataclass(frozen=True)
class CompileResult:
    """Where the artifact went, its meta.json content, seconds per stage, and the dumped IR (if asked)."""

    out_dir: Path
    library: Path
    meta: dict
    seconds: dict[str, float] = field(default_factory=dict)
    dumped_ir: str | None = None
    note: str = ""


def amx_permitted() -> bool:
    """This Linux process may use the AMX tile data: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) succeeds
    (kernels before 5.16, or a hypervisor that hides the state, refuse it; a tile instruction then raises SIGILL)."""
    import ctypes
    import platform

    from .intrinsics import ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA

    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return False
    try:
        return ctypes.CDLL(None).syscall(ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0
    except (OSError, AttributeError):
        return False


# /proc/cpuinfo flag -> LLVM feature: the instruction sets our kernels and LLVM's vectoriser choose by.
X86_FLAG_FEATURES = {
    "avx2": "avx2",
    "fma": "fma",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512dq": "avx512dq",
    "avx512vl": "avx512vl",
    "avx512cd": "avx512cd",
    "avx512_vnni": "avx512vnni",
    "avx512vbmi": "avx512vbmi",
    "avx512_vbmi2": "avx512vbmi2",
    "avx512_bf16": "avx512bf16",
    "avx512_fp16": "avx512fp16",
    "avx_vnni": "avxvnni",
    "amx_tile": "amx-tile",
    "amx_int8": "amx-int8",
    "amx_bf16": "amx-bf16",
}
# LLVM x86 CPUs tried in this order when the CPU LLVM names from the CPUID model lacks (or claims) some of them;
# the oldest of a family first, so that the one picked has no extra instructions outside the table above.
X86_CPUS = (
    "sapphirerapids",
    "emeraldrapids",
    "graniterapids",
    "cooperlake",
    "icelake-server",
    "cascadelake",
    "skylake-avx512",
    "tigerlake",
    "rocketlake",
    "icelake-client",
    "znver5",
    "znver4",
    "alderlake",
    "znver3",
    "znver2",
    "haswell",
)


def host_x86_features(cpuinfo: str | None = None) -> frozenset[str] | None:
    """The LLVM names of the X86_FLAG_FEATURES this CPU reports in /proc/cpuinfo (the kernel's view: what
    the hypervisor passes through), or None where there is no such file (not Linux on x86)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return frozenset(llvm for flag, llvm in X86_FLAG_FEATURES.items() if flag in flags)
    return None


@functools.lru_cache(maxsize=8)
def match_x86_cpu(named: str, features: frozenset[str]) -> tuple[str, list[str]]:
    """The LLVM CPU and ``mattr`` to compile for a host that has exactly ``features`` (of X86_FLAG_FEATURES).

    LLVM names the host CPU from its CPUID family and model. Under a hypervisor those can name an older part
    than the one underneath (seen: a Sapphire Rapids guest reported as model 167, which LLVM calls
    "rocketlake": no AMX, so every dense conv fell back to the VNNI kernels at 1.5x the time). Keep the
    named CPU where its features are the host's; else the first of X86_CPUS whose features are exactly the
    host's; else the named CPU with ``+f`` / ``-f`` for each feature it lacks or claims."""
    import tvm
    from tvm.target.codegen import target_has_features

    def has(cpu: str) -> frozenset[str]:
        t = tvm.target.Target({"kind": "llvm", "mcpu": cpu})
        return frozenset(f for f in X86_FLAG_FEATURES.values() if target_has_features(f, t))

    if named and named != "generic" and has(named) == features:
        return named, []
    for cpu in X86_CPUS:
        if has(cpu) == features:
            return cpu, []
    base = named if named and named != "generic" else "x86-64"
    have = has(base)
    return base, [f"+{f}" for f in sorted(features - have)] + [f"-{f}" for f in sorted(have - features)]


def board_target(board: Board):
    """The board's TVM target. For ``host`` without an ``mcpu``: the running CPU as LLVM names it (TVM's
    bundled LLVM refuses "native"), checked against the features the OS reports (match_x86_cpu), and
    ``num-cores`` from the OS; where that CPU has AMX but this OS does not grant its tile data
    (amx_permitted), the AMX features are turned off, so the compile uses the VNNI kernels."""
    import platform

    import tvm
    from tvm.target.codegen import target_has_features

    target = board.target_dict()
    if board.cross_compiler is None and "mtriple" not in target:
        if "mcpu" not in target:
            cpu = str(tvm.target.codegen.llvm_get_system_cpu() or "")
            features = host_x86_features() if platform.machine() in ("x86_64", "AMD64") else None
            if features is not None:
                cpu, mattr = match_x86_cpu(cpu, features)
                if mattr:
                    target["mattr"] = [*target.get("mattr", []), *mattr]
            if cpu and cpu != "generic":
                target["mcpu"] = cpu
        target.setdefault("num-cores", os.cpu_count() or 1)
        if target_has_features("amx-tile", tvm.target.Target(target)) and not amx_permitted():
            target["mattr"] = [*target.get("mattr", []), "-amx-tile", "-amx-int8", "-amx-bf16"]
    return tvm.target.Target(target)


def build_executable(mod, target):
    """``relax.build`` of a module already lowered by ``pipeline.run_pipeline`` (so no Relax pipeline)."""
    from tvm import relax

    from .requantize import even_odd_lowering

    with even_odd_lowering(target):
        return relax.build(mod, target, relax_pipeline=None)


def export_library(executable, path: Path, board: Board) -> Path:
    """Write the shared library; cross boards link with their cross compiler (tvm.support.cc)."""
    import shutil

    if board.cross_compiler is None:
        executable.export_library(str(path))
        return path
    if shutil.which(board.cross_compiler) is None:
        raise FileNotFoundError(
            f"board {board.name!r} needs the cross compiler {board.cross_compiler!r}, which is not on PATH "
            "(Debian: apt-get install g++-aarch64-linux-gnu)"
        )
    from tvm.support import cc

    executable.export_library(str(path), fcompile=cc.cross_compiler(board.cross_compiler))
    return path


def module_output_shapes(mod, function: str = "main") -> list[tuple[int, ...]]:
    """The static shapes of a Relax function's tuple result (the compiled outputs, in order)."""
    return [tuple(int(d) for d in f.shape) for f in mod[function].ret_ty.fields]


def compile_onnx(
    onnx_path: str | Path,
    board: Board | str,
    out_dir: str | Path,
    dump_ir_after: str | None = None,
    run_simplify: bool = True,
    tune_trials: int = 0,
    tuning_db: str | Path | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    layer_outputs: bool = False,
) -> CompileResult:
    """The whole compile: check -> passes -> relax.build -> export -> meta.json. Returns data; prints nothing.
    ``tune_trials`` / ``tuning_db``: MetaSchedule trials for the functions the database folder lacks, and
    the folder (kept: a later compile reuses it; with 0 trials it is only applied). See tuning.py.
    ``input_shapes``: {input name: shape} for inputs with symbolic dims (check.py; InputShapeError without).
    ``layer_outputs``: the debug build (`fcos3d-compile --debug-outputs`): every layer's output is also an output of
    the module (fcos3d.int8.layers.with_layer_outputs), and meta.json's ``layer_outputs`` maps each op name to its
    output, so that the tracer (fcos3d trace) can find the first layer that differs from the simulator."""
    from .pipeline import run_pipeline
    from .tuning import Tuning

    tuning = Tuning(tune_trials, Path(tuning_db) if tuning_db is not None else None)
    board = load_board(board) if isinstance(board, str) else board
    if tune_trials and board.cross_compiler is not None:
        raise ValueError(f"tuning measures candidates on this machine: tune for board 'host', not {board.name!r}")

    board = load_board(board) if isinstance(board, str) else board
    from .tosa.vela import VELA_CONFIGS

    if board.name in VELA_CONFIGS:  # an Ethos-U NPU: TOSA + Vela (compiler/tosa), not a TVM library
        if tune_trials or dump_ir_after:
            raise ValueError(
                f"board {board.name!r} compiles through TOSA and Vela: --tune-trials and "
                "--dump-ir-after are TVM options"
            )
        from .tosa.artifact import compile_tosa_artifact

        t = time.perf_counter()
        art = compile_tosa_artifact(
            onnx_path,
            board,
            out_dir,
            input_shapes=input_shapes,
            run_simplify=run_simplify,
            layer_outputs=layer_outputs,
        )
        return CompileResult(
            Path(out_dir),
            art.tosa,
            art.meta,
            {"tosa" if layer_outputs else "tosa+vela": time.perf_counter() - t},
            None,
            "",
        )
    if board.estimate_only:
        raise ValueError(
            f"board {board.name!r} is an estimate-only profile (nothing compiled here runs on its accelerator): "
            f"use `fcos3d perf --target {board.name} MODEL.onnx`"
        )
    replaceable(Path(out_dir))  # a folder that is not an artifact fails before the long compile
    seconds = {}
    t = time.perf_counter()
    checked = check_onnx(onnx_path, run_simplify=run_simplify, input_shapes=input_shapes)
    seconds["check"] = time.perf_counter() - t
    graph, layer_map = checked.graph, None
    if layer_outputs:
        from fcos3d.int8.layers import with_layer_outputs

        graph, layer_map = with_layer_outputs(graph)
    target = board_target(board)
    t = time.perf_counter()
    lowered = run_pipeline(graph, target, dump_ir_after=dump_ir_after, tuning=tuning)
    seconds["passes"] = time.perf_counter() - t
    t = time.perf_counter()
    executable = build_executable(lowered.mod, target)
    seconds["build"] = time.perf_counter() - t
    path_text = None if hasattr(onnx_path, "graph") else str(onnx_path)
    onnx_info = {"path": path_text, "sha256": checked.sha256, "opset": checked.opset, "simplified": checked.simplified}
    meta = make_meta(
        graph,
        board=board.name,
        target=_target_json(target),
        onnx=onnx_info,
        output_shapes=module_output_shapes(lowered.mod),
    )
    if layer_map is not None:
        meta["layer_outputs"] = layer_map  # {op name: output name}, in op order (the debug build)
    meta["tuning"] = {"trials": tuning.trials, "database": None if tuning.database is None else str(tuning.database)}
    # Written whole or not at all: every file goes into a temp folder beside out_dir, meta.json last (with the
    # sha256 of the others), then the folder replaces out_dir in one rename. A failed link, a full disk or a kill
    # leaves the previous artifact as it was.
    out_dir = Path(out_dir)
    replaceable(out_dir)
    with atomic_dir(out_dir) as tmp:
        t = time.perf_counter()
        try:
            export_library(executable, tmp / LIBRARY, board)
        except RuntimeError as exc:  # TVM reports a failed link (a full disk too) as a RuntimeError with its log
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            why = [ln for ln in lines if "No space left" in ln] or [ln for ln in lines[1:] if "error" in ln.lower()]
            why = (why or lines or [type(exc).__name__])[0]
            raise Fcos3dError(
                f"{out_dir / LIBRARY}: linking failed ({why[:200]}); is the disk full? Free space and re-run; the "
                "previous artifact there is unchanged"
            ) from None
        seconds["export"] = time.perf_counter() - t
        if board.accelerator is not None:
            from .latency.estimate import estimate
            from .latency.report import write_report

            write_report(estimate(checked.graph, board), tmp)
        write_meta(tmp, meta)  # records meta["files"]: the sha256 of model.so and the reports
    return CompileResult(out_dir, out_dir / LIBRARY, meta, seconds, lowered.dumped_ir, checked.note)


def debug_build(
    onnx_path: str | Path, board: str, out_dir: str | Path, echo: Callable[[str], None] = lambda m: None
) -> Path:
    """``out_dir`` holding a ``--debug-outputs`` build of ``onnx_path`` for ``board`` (what fcos3d trace runs),
    compiled when missing, stale, of another board or not a debug build; a current one is reused."""
    from fcos3d.artifact import compiled_from, read_meta

    out_dir = Path(out_dir)
    if compiled_from(out_dir, onnx_path):
        meta, _ = read_meta(out_dir)
        if meta.get("layer_outputs") and meta.get("board") == board:
            return out_dir
    echo(f"compiling a debug build (every layer an output) of {onnx_path} for {board} into {out_dir}")
    compile_onnx(onnx_path, board, out_dir, layer_outputs=True)
    return out_dir


def _target_json(target) -> dict:
    """The target as JSON-able dict (what was actually compiled for, mcpu filled in)."""
    out = {}
    for k, v in dict(target.export()).items():
        if k in ("host", "keys", "tag", "features") or k.startswith("feature."):  # derived by TVM
            continue
        if isinstance(v, (int, float, str, bool)):
            out[k] = v
        elif isinstance(v, (list, tuple)) or hasattr(v, "__len__") and not isinstance(v, dict):
            try:
                out[k] = [str(x) for x in v]
            except TypeError:
                out[k] = str(v)
        else:
            out[k] = str(v)
    return out
