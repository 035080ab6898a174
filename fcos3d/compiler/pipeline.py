"""The compiler's lowering as one readable list of named passes, with a graph check after each.

``run_pipeline(graphs, target)``: IntGraph(s) (from fcos3d.int8.reader.parse_qdq) -> VM-ready
Relax IRModule; ``dump_ir_after`` returns the TVMScript of the module after the named pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import tvm
from tvm import IRModule

from fcos3d.int8.ops import IntGraph

from .passes.check_integer import check_integer
from .passes.fuse import fuse
from .passes.import_int_graph import import_int_graphs
from .passes.legalize import legalize
from .passes.lower_to_vm import lower_to_vm
from .passes.schedule import schedule
from .tuning import Tuning, apply_tuning

__all__ = ["PASS_NAMES", "PipelineResult", "passes", "run_pipeline"]


def passes(target: tvm.target.Target | None = None, tuning: Tuning | None = None):
    """The passes after the import, in order. Each: IRModule -> IRModule; check_integer runs after every one.
    ``tuning``: MetaSchedule options for the ``tune`` pass (None: it changes nothing)."""
    return (
        ("legalize", legalize),  # Relax ops -> TIR PrimFuncs (TOPI; kernels.py's int8 convs on CPUs)
        ("fuse", fuse),  # conv + bias + requantise + clip + cast -> one PrimFunc
        ("tune", lambda mod: apply_tuning(mod, target, tuning)),  # MetaSchedule's best from a database
        ("schedule", schedule),  # loops for the CPU: threads, vectors, dot-product instructions
        ("lower_to_vm", lower_to_vm),  # memory planning and VM builtins
    )


PASS_NAMES: tuple[str, ...] = ("import_int_graph",) + tuple(name for name, _ in passes())


@dataclass(frozen=True)
class PipelineResult:
    """The lowered module, and the TVMScript text after ``dump_ir_after`` (None when not asked)."""

    mod: IRModule
    dumped_ir: str | None


def run_pipeline(
    graphs: IntGraph | Mapping[str, IntGraph],
    target: tvm.target.Target,
    dump_ir_after: str | None = None,
    tuning: Tuning | None = None,
) -> PipelineResult:
    """IntGraph (function ``main``) or ``{function name: IntGraph}`` -> VM-ready IRModule for ``target``;
    ``tuning``: tune / apply a MetaSchedule database (tuning.py) before the default schedules."""
    if dump_ir_after is not None and dump_ir_after not in PASS_NAMES:
        raise ValueError(f"--dump-ir-after {dump_ir_after!r}: no such pass; passes are {', '.join(PASS_NAMES)}")
    if isinstance(graphs, IntGraph):
        graphs = {"main": graphs}
    dumped = None
    mod = check_integer(import_int_graphs(graphs), after="import_int_graph")
    if dump_ir_after == "import_int_graph":
        dumped = mod.script()
    with target:  # TOPI strategies and FoldConstant read the current target
        for name, run in passes(target, tuning):
            mod = check_integer(run(mod), after=name)
            if dump_ir_after == name:
                dumped = mod.script()
    return PipelineResult(mod, dumped)
