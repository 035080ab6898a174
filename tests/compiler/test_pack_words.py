"""A depthwise conv whose output only a pointwise conv on AMX reads writes that conv's packed words itself
(kernels.pack_words, fused into the depthwise kernel; legalize.depthwise_fed decides, schedule.py's
_schedule_depthwise_pack schedules it): no im2col between them. Compiled == simulator bit for bit, where it applies
and where it must not (a second use of the depthwise output, rows that are not whole blocks of 16); the latency
estimate drops the im2col of exactly the convs the compile packs."""

from __future__ import annotations

import pytest
import tvm
from qdq_graphs import assert_equals_simulator

from fcos3d.compiler.intrinsics import AmxGemm, dot_intrin_for
from fcos3d.compiler.kernels import DenseConvSpec

PLAIN = tvm.target.Target({"kind": "llvm"})


def _host_target():
    from fcos3d.boards import load_board
    from fcos3d.compiler.build import board_target

    return board_target(load_board("host"))


def _has_amx(target) -> bool:
    from tvm.target.codegen import target_has_features

    return target_has_features(["amx-int8", "amx-tile"], target)


def _separable(seed: int, c: int, cout: int, hw: tuple[int, int], stride: int = 1, reuse: bool = False):
    """x -> depthwise 3x3 (ReLU) -> pointwise (ReLU) [-> + the depthwise output, ``reuse``: a second use]."""
    from qdq_graphs import QDQGraphBuilder

    from fcos3d.runtime.reference.simulator import Simulator

    b = QDQGraphBuilder(seed=seed)
    x = b.input((1, c, *hw), scale=0.05)
    y = b.conv(x, c, kernel=3, stride=stride, groups=c, relu=True)
    z = b.conv(y, cout, kernel=1, stride=1, relu=True)
    if reuse:
        z = b.add(z, y)
    b.output(z)
    return Simulator(b.build())


# (channels, out channels, hw, stride, reuse, packed where the CPU has AMX)
CASES = [
    (32, 32, (8, 32), 1, False, True),  # 8 words: 1 x 4 AMX tiles (64 positions)
    (96, 32, (5, 32), 1, False, True),  # 24 words: 2 x 2 tiles; 5 rows: one row per group
    (32, 16, (16, 64), 2, False, True),  # a strided depthwise conv packs too
    (64, 8, (8, 32), 1, False, True),  # 8 output channels: the VNNI GEMM reads the packed words
    (8, 16, (128, 144), 1, False, True),  # padded planes over PACK_PLANES_BYTES: made per group of rows
    (64, 32, (8, 24), 1, False, False),  # rows of 24: not whole blocks of 16 positions
    (32, 32, (8, 32), 1, True, False),  # the depthwise output has a second use
]


def test_packed_separable_convs_equal_the_simulator(host_compile):
    """Compiled for this CPU == simulator on every element, inputs random and at -128; where the CPU has AMX, the
    packing happened exactly for the cases that allow it (a fused ``pack_words`` and no im2col)."""
    from fcos3d.compiler.pipeline import run_pipeline

    sims = {f"sep_{i}": _separable(60 + i, c, co, hw, s, reuse) for i, (c, co, hw, s, reuse, _) in enumerate(CASES)}
    assert_equals_simulator(host_compile({name: sim.graph for name, sim in sims.items()}), sims, seed=4)
    target = _host_target()
    if not _has_amx(target):
        pytest.skip("this CPU has no AMX: nothing is packed (the convs above were still compared)")
    for (name, sim), case in zip(sims.items(), CASES, strict=True):
        mod = run_pipeline(sim.graph, target).mod
        names = [gv.name_hint for gv in mod.functions]
        packed = any("depthwise" in n and "pack_words" in n for n in names)
        assert packed == case[-1], (name, names)
        assert any(n.startswith("im2col") for n in names) != case[-1], (name, names)


def test_depthwise_fed_needs_a_single_use_and_the_dot_kernel():
    from fcos3d.compiler.passes.import_int_graph import import_int_graphs
    from fcos3d.compiler.passes.legalize import depthwise_fed

    spr = tvm.target.Target({"kind": "llvm", "mcpu": "sapphirerapids"})
    one = import_int_graphs({"main": _separable(1, 32, 32, (8, 32)).graph})
    assert len(depthwise_fed(one, spr)) == 1
    reused = import_int_graphs({"main": _separable(2, 32, 32, (8, 32), reuse=True).graph})
    assert depthwise_fed(reused, spr) == frozenset()
    # a 3x3 whose rows are not whole 16-lane vectors, 16 rows or more: the AMX window kernel, which packs nothing
    windowed = import_int_graphs({"main": _separable(3, 32, 32, (16, 24)).graph})
    assert depthwise_fed(windowed, spr) == frozenset()


def test_the_estimate_drops_the_im2col_of_the_packed_convs_only():
    from fcos3d.boards import load_board
    from fcos3d.compiler.latency.estimate import host_packed_convs, layer_estimates, tensor_shapes

    host = load_board("host")
    acc = host.accelerator
    if not _has_amx(_host_target()):
        pytest.skip("this CPU has no AMX: the host compile packs nothing")
    packed = _separable(5, 32, 32, (8, 32)).graph
    reused = _separable(5, 32, 32, (8, 32), reuse=True).graph
    names = host_packed_convs(packed, tensor_shapes(packed), acc)
    assert names == {packed.ops[1].name}
    assert host_packed_convs(reused, tensor_shapes(reused), acc) == frozenset()
    # the rule is the compile's: every case above, packed where the compile packs
    for i, (c, co, hw, s, reuse, expect) in enumerate(CASES):
        g = _separable(60 + i, c, co, hw, s, reuse).graph
        assert bool(host_packed_convs(g, tensor_shapes(g), acc)) == expect, CASES[i]
    # the same pointwise conv costs less when its words come packed (no pack words, one kernel fewer)
    a, b = layer_estimates(packed, acc)[1], layer_estimates(reused, acc)[1]
    assert a.cycles < b.cycles


def test_producer_packed_specs_and_intrinsic_names():
    spec = DenseConvSpec(32, (8, 32), (1, 1), (1, 1), (0, 0, 0, 0), (8, 32), 128, 64, producer_packed=8)
    assert spec.cols_shape == (1, 16, 8, 16)  # (words / chunk, positions / 16, chunk, 16)
    wide = DenseConvSpec(256, (8, 32), (1, 1), (1, 1), (0, 0, 0, 0), (8, 32), 128, 32, producer_packed=16)
    assert wide.cols_shape == (4, 16, 16, 16)
    flat = DenseConvSpec(32, (8, 32), (1, 1), (1, 1), (0, 0, 0, 0), (8, 32), 128, 64)
    assert flat.cols_shape == (8, flat.cols_pitch)
    with pytest.raises(ValueError, match="pointwise"):
        DenseConvSpec(32, (8, 32), (3, 3), (1, 1), (1, 1, 1, 1), (8, 32), 128, 64, producer_packed=8)
    with pytest.raises(ValueError, match="whole blocks"):
        DenseConvSpec(32, (8, 24), (1, 1), (1, 1), (0, 0, 0, 0), (8, 24), 128, 64, producer_packed=8)
    with pytest.raises(ValueError, match="whole tiles"):
        DenseConvSpec(40, (8, 32), (1, 1), (1, 1), (0, 0, 0, 0), (8, 32), 128, 64, producer_packed=4)
    g = AmxGemm(2, 2, 24, 12)
    blocked = AmxGemm(2, 2, 24, 12, blocked=True)
    assert g.name != blocked.name and g.config_words() == blocked.config_words()


def test_depthwise_accumulators_start_at_the_offset_and_bias_terms():
    """schedule.fold_depthwise_start: where the CPU has a dot instruction, the depthwise accumulator's init is
    ``start[c] + bias[c]`` and the epilogue adds neither (compiled == simulator: the tests above); on plain vectors
    (the update reads the accumulator itself) nothing folds."""
    import re

    from fcos3d.compiler.pipeline import run_pipeline

    graph = _separable(9, 32, 32, (8, 32)).graph
    for target, folds in ((_host_target(), dot_intrin_for(_host_target()) is not None), (PLAIN, False)):
        mod = run_pipeline(graph, target).mod
        (name,) = [gv for gv in mod.functions if "depthwise" in gv.name_hint]
        text = mod[name].script()
        init = re.search(r"depthwise\[v_ch, v_y, v_x\] = (.*)", text).group(1)
        adds = re.findall(r"depthwise\[[^\]]*\] \+ param_", text)
        if folds:
            assert re.fullmatch(
                r"param_\d+\[v_ch\] \+ param_\d+\[T.int64\(0\), v_ch, T.int64\(0\), T.int64\(0\)\]", init
            )
            assert adds == []
        else:
            assert init == "0" and len(adds) >= 1


def test_rows_copied_by_groups_prefetch_the_next_group():
    """schedule.prefetch_next_rows: where a depthwise kernel copies its input rows group by group (planes over
    PACK_PLANES_BYTES), each 64-byte step of the copy prefetches the same columns one group of rows further down
    (clamped to the last row); whole planes copied once, and plain-vector targets, get none. The compiled results
    of both forms equal the simulator (test_packed_separable_convs_equal_the_simulator's 128x144 case)."""
    import re

    from fcos3d.compiler.pipeline import run_pipeline

    target = _host_target()
    if dot_intrin_for(target) is None or not _has_amx(target):
        pytest.skip("this CPU has no AMX: no depthwise kernel packs, none copies rows by groups")

    def prefetches(c, hw, stride, tgt):
        mod = run_pipeline(_separable(5, c, 16, hw, stride).graph, tgt).mod
        (name,) = [gv for gv in mod.functions if "depthwise" in gv.name_hint]
        return re.findall(r'T.call_llvm_intrin\("void", "llvm.prefetch[^"]*", T.address_of\(([^\n]*)\), 0, 2, 1\)',
                          mod[name].script())  # fmt: skip

    (grouped,) = prefetches(8, (128, 144), 1, target)  # 4 output rows a group: 4 rows further down
    assert re.search(r"T.min\(b_0 \* T.int64\(4\) \+ ax0_1 - T.int64\(1\) \+ T.int64\(4\), T.int64\(127\)\)", grouped)
    (strided,) = prefetches(32, (64, 256), 2, target)  # stride 2: 4 output rows are 8 input rows
    assert re.search(r"T.int64\(8\), T.int64\(63\)\)", strided)
    assert prefetches(32, (8, 32), 1, target) == []  # whole planes, made once per word
    assert prefetches(8, (128, 144), 1, PLAIN) == []
