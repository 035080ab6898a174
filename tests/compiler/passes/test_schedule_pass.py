"""schedule: every PrimFunc gets loops for the CPU, the GEMM the dot-product instruction, and the integers stay
exact, on the shapes where tiles, vectors and padding have edges (one position, tails, odd channel counts)."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from qdq_graphs import QDQGraphBuilder
from tvm import relax, tirx

from fcos3d.boards import load_board
from fcos3d.compiler.build import board_target, build_executable
from fcos3d.compiler.intrinsics import dot_intrin_for
from fcos3d.compiler.pipeline import run_pipeline
from fcos3d.runtime.reference.simulator import Simulator


def _conv_graph(shape, seed, **conv):
    b = QDQGraphBuilder(seed=seed)
    y = b.conv(b.input(shape), **conv)
    if not conv.get("int32_output"):
        b.output(y)
    return Simulator(b.build())


# (input shape, conv arguments): the edges the schedules must get right
CASES = {
    "pointwise_one_position": ((1, 32, 1, 1), dict(out_channels=32, kernel=1, pad=0, relu=True)),
    "pointwise_tail_odd_channels": ((1, 10, 5, 7), dict(out_channels=20, kernel=1, pad=0)),
    "stem_3x3_stride2": ((1, 3, 9, 11), dict(out_channels=16, kernel=3, stride=2, relu=True)),
    "dense_5x5": ((1, 8, 6, 6), dict(out_channels=24, kernel=5)),
    "head_int32": ((1, 16, 3, 5), dict(out_channels=3, kernel=1, pad=0, int32_output=True)),
    "depthwise_3x3_stride2": ((1, 8, 9, 13), dict(out_channels=8, kernel=3, stride=2, groups=8, relu=True)),
    "depthwise_5x5": ((1, 24, 6, 19), dict(out_channels=24, kernel=5, groups=24)),
}
# The host (AVX-512 VNNI where the machine has it) and a CPU without int8 dot products (plain vector code).
TARGETS = {"host": board_target(load_board("host")), "avx2": tvm.target.Target({"kind": "llvm", "mcpu": "haswell"})}


@pytest.fixture(scope="module", params=list(TARGETS))
def compiled(request):
    target = TARGETS[request.param]
    sims = {name: _conv_graph(shape, seed=i, **conv) for i, (name, (shape, conv)) in enumerate(CASES.items())}
    lowered = run_pipeline({name: s.graph for name, s in sims.items()}, target, dump_ir_after="schedule")
    vm = relax.VirtualMachine(build_executable(lowered.mod, target), tvm.cpu())
    return target, sims, vm, lowered.dumped_ir


@pytest.mark.parametrize("case", list(CASES))
def test_scheduled_convs_equal_the_simulator(compiled, case):
    _, sims, vm, _ = compiled
    sim = sims[case]
    x = np.random.default_rng(1).integers(-128, 128, size=CASES[case][0], dtype=np.int8)
    want = list(sim.run(x).values())
    got = [g.numpy() for g in vm[case](tvm.runtime.tensor(x))]
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))


def test_the_gemm_uses_the_dot_instruction_and_every_loop_nest_has_threads(compiled):
    target, _, _, ir = compiled
    assert "T.parallel" in ir and "T.vectorized" in ir
    intrin = dot_intrin_for(target)
    assert (intrin is not None) == ("vpdpbusd" in ir or "sdot" in ir)


def test_every_function_is_marked_scheduled_and_a_second_run_changes_nothing():
    from fcos3d.compiler.passes.fuse import fuse
    from fcos3d.compiler.passes.import_int_graph import import_int_graph
    from fcos3d.compiler.passes.legalize import legalize
    from fcos3d.compiler.passes.schedule import schedule

    shape, conv = CASES["stem_3x3_stride2"]
    sim = _conv_graph(shape, seed=0, **conv)
    with TARGETS["host"]:
        out = schedule(fuse(legalize(import_int_graph(sim.graph))))
        again = schedule(out)
    funcs = {gv: f for gv, f in out.functions.items() if isinstance(f, tirx.PrimFunc)}
    assert funcs and all(f.attrs.get("tirx.is_scheduled") for f in funcs.values())
    assert all(again[gv].same_as(f) for gv, f in funcs.items())  # MetaSchedule's functions are kept likewise
