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
    # 33 x 33 = 1089 positions: the last vector of the last tile is partial (hoist_lane_predicates)
    "dense_ragged_positions": ((1, 3, 33, 33), dict(out_channels=16, kernel=3, relu=True)),
    "dilated_stride2": ((1, 5, 13, 17), dict(out_channels=8, kernel=3, stride=2, pad=3, dilation=3)),
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


def _predicated_vector_loops(stmt) -> list[str]:
    """Names of the blocks under a vectorized loop that carry a per-element predicate (what TVM scalarises)."""
    from tvm import s_tir

    found = []

    def walk(node, vector: bool):
        if isinstance(node, tirx.SeqStmt):
            for s in node.seq:
                walk(s, vector)
        elif isinstance(node, tirx.IfThenElse):
            walk(node.then_case, vector)
            if node.else_case is not None:
                walk(node.else_case, vector)
        elif isinstance(node, tirx.For):
            walk(node.body, vector or node.kind == tirx.ForKind.VECTORIZED)
        elif isinstance(node, s_tir.SBlockRealize):
            if vector and not (isinstance(node.predicate, tirx.IntImm) and node.predicate.value == 1):
                found.append(node.block.name_hint)
            walk(node.block.body, vector)

    walk(stmt, False)
    return found


def test_no_vector_loop_of_a_ragged_gemm_epilogue_is_predicated_per_element():
    """1089 positions in tiles of 48: every tile's epilogue is a predicated block; the predicate moves out of the
    vector loop (schedule.hoist_lane_predicates), which keeps a scalar copy only for the last vector."""
    from fcos3d.compiler.passes.fuse import fuse
    from fcos3d.compiler.passes.import_int_graph import import_int_graph
    from fcos3d.compiler.passes.legalize import legalize
    from fcos3d.compiler.passes.schedule import schedule_func

    shape, conv = CASES["dense_ragged_positions"]
    with TARGETS["host"] as target:
        fused = fuse(legalize(import_int_graph(_conv_graph(shape, seed=0, **conv).graph)))
        gemm = next(f for gv, f in fused.functions.items() if "conv2d_int8" in gv.name_hint)
        scheduled = schedule_func(gemm, target)
    body = scheduled.body
    assert _predicated_vector_loops(body) == []
    assert "T.if_then_else" in scheduled.script() or "if " in scheduled.script()  # the hoisted test is there


def _loops_over_predicated_blocks(stmt) -> list[tuple[str, int]]:
    """(kind, extent) of each loop whose body is an epilogue block (TE's "compute*", not the padding's fill) with a
    per-element predicate: a scalar tail."""
    from tvm import s_tir

    found = []

    def visit(node):
        body = node.body
        if not isinstance(body, s_tir.SBlockRealize) or not body.block.name_hint.startswith("compute"):
            return
        if not (isinstance(body.predicate, tirx.IntImm) and body.predicate.value == 1):
            found.append((str(node.kind), int(node.extent)))

    from tvm_ffi import structural_walk

    structural_walk(stmt, (tirx.For, visit))
    return found


def _scheduled(shape, conv, kernel: str):
    from fcos3d.compiler.passes.fuse import fuse
    from fcos3d.compiler.passes.import_int_graph import import_int_graph
    from fcos3d.compiler.passes.legalize import legalize
    from fcos3d.compiler.passes.schedule import schedule_func

    with TARGETS["host"] as target:
        fused = fuse(legalize(import_int_graph(_conv_graph(shape, seed=0, **conv).graph)))
        func = next(f for gv, f in fused.functions.items() if kernel in gv.name_hint)
        return schedule_func(func, target)


@pytest.mark.parametrize("hw", [(16, 28), (32, 56), (20, 37)])
def test_a_ragged_depthwise_row_ends_in_a_whole_vector_moved_back(hw):
    """An AMX depthwise conv's epilogue runs over whole output rows after the row's tiles: a row of 28, 56 or 37
    is 16-lane vectors, the last one moved back to end at the row's end (schedule._shifted_tail), so no element
    is left to a scalar loop (before: 14-lane vectors, or 8 scalar elements per row of 56). Its outputs equal the
    simulator's (test_amx_gemm.py)."""
    from fcos3d.compiler.intrinsics import amx_window_for

    if amx_window_for(TARGETS["host"], (5, 5), (1, 1), hw) is None:
        pytest.skip("this CPU has no AMX: its depthwise convs take the window kernel")
    func = _scheduled((1, 16, *hw), dict(out_channels=16, kernel=5, groups=16), "depthwise")
    script = func.script()
    assert "tdpbusd" in script and _loops_over_predicated_blocks(func.body) == []
    assert "T.vectorized(T.int64(16))" in script and "T.vectorized(T.int64(14))" not in script


def test_a_gemm_epilogue_per_tile_keeps_its_scalar_tail():
    """The GEMM's epilogue runs per position tile, inside the tile loop, on that tile's accumulator: moving its last
    vector back would read the previous tile's, which TVM allocates per tile, so _shifted_tail leaves it scalar."""
    shape, conv = CASES["dense_ragged_positions"]
    func = _scheduled(shape, conv, "conv2d_int8")
    tails = _loops_over_predicated_blocks(func.body)
    assert tails and all(kind == "0" or "SERIAL" in kind.upper() for kind, _ in tails), tails
