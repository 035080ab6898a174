"""The convs on Intel AMX tiles equal the simulator bit for bit: dense convs as a GEMM (intrinsics.AmxGemm,
schedule._schedule_gemm_amx), wide stride-1 depthwise convs as a Toeplitz GEMM per channel (intrinsics.AmxWindow,
kernels.DepthwiseAmxSpec); which convs take AMX, how their work is cut into tiles, the 64-byte tile configuration,
the banded weights."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from qdq_graphs import assert_equals_simulator

from fcos3d.compiler.intrinsics import AmxGemm, AmxWindow, amx_channels, amx_chunk, amx_gemm_for, amx_window_for
from fcos3d.compiler.kernels import DepthwiseAmxSpec, pack_depthwise_toeplitz

# (in channels, out channels, kernel, stride, hw, int32 head output): reductions of 7, 36, 64, 20 and 17 words
# (17 has no whole chunk: the VNNI GEMM takes it), one and two channel tiles, positions not a multiple of 32;
# channels padded to whole tiles (intrinsics.amx_channels): 24 -> 32 (2 x 2), 40 -> 48 (1 x 4), a head of 10 -> 16;
# 3 channels stay on the VNNI GEMM
CONVS = [
    (3, 32, 3, 2, (17, 23), False),
    (16, 48, 3, 1, (9, 14), False),
    (256, 64, 1, 1, (7, 9), False),
    (80, 16, 1, 1, (11, 5), False),
    (68, 32, 1, 1, (6, 6), False),
    (64, 32, 3, 1, (5, 7), True),
    (144, 24, 1, 1, (12, 16), False),
    (96, 40, 1, 1, (9, 13), False),
    (64, 10, 1, 1, (7, 9), True),
    (64, 3, 1, 1, (7, 9), True),
    (64, 48, 1, 1, (16, 64), False),  # 16 position tiles: each channel tile sweeps a task's 8 (position_run)
]


def _host_target():
    from fcos3d.boards import load_board
    from fcos3d.compiler.build import board_target

    return board_target(load_board("host"))


def test_chunks_divide_the_reduction_into_whole_tiles():
    assert [amx_chunk(w) for w in (1, 7, 16, 20, 36, 64, 120, 168, 288)] == [1, 7, 16, 10, 12, 16, 15, 14, 16]
    assert amx_chunk(17) is None and amx_chunk(34) is None  # 17 x 1 / 17 x 2: a tail tile would be needed


def test_tile_configuration_bytes():
    g = AmxGemm(mo=2, no=2, words=36, chunk=12)
    cfg = np.array(g.config_words(), dtype="<i4").view(np.uint8)
    assert cfg[0] == 1 and not cfg[1:16].any()  # palette 1, start row 0
    colsb = cfg[16:48].view("<u2")
    rows = cfg[48:64]
    assert list(colsb[:8]) == [64] * 4 + [48] * 2 + [64] * 2  # C 16 x 64 B, A 16 x 12 words, B 12 x 16 words
    assert list(rows[:8]) == [16] * 4 + [16] * 2 + [12] * 2
    assert not colsb[8:].any() and not rows[8:].any()
    one = np.array(AmxGemm(1, 2, 7, 7).config_words(), dtype="<i4").view(np.uint8)
    assert list(one[48:56]) == [16, 16, 16, 7, 7, 0, 0, 0]  # C tiles 0, 1; A tile 2; B tiles 3, 4
    assert AmxGemm(1, 4, 7, 7).registers == ([0, 1, 2, 3], [4], [5, 6, 7, 5])  # the 4th B tile reuses the 1st
    wide = np.array(AmxGemm(1, 4, 7, 7).config_words(), dtype="<i4").view(np.uint8)
    assert list(wide[48:56]) == [16, 16, 16, 16, 16, 7, 7, 7]


def test_amx_is_chosen_only_where_it_applies():
    arm = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]})
    assert amx_gemm_for(arm, 32, 16) is None
    spr = tvm.target.Target({"kind": "llvm", "mcpu": "sapphirerapids"})
    assert amx_gemm_for(spr, 32, 36) == AmxGemm(2, 2, 36, 12)  # long reduction: 2 x 2, each operand tile used twice
    assert amx_gemm_for(spr, 32, 16) == AmxGemm(1, 4, 16, 16)  # short: 64 positions, whole output lines
    assert amx_gemm_for(spr, 48, 36) == AmxGemm(1, 4, 36, 12)  # 3 channel tiles: 1 x 4
    assert amx_gemm_for(spr, 24, 16) is None  # channels not whole tiles
    # ... which legalize.py pads to whole tiles where that at most doubles them
    assert [amx_channels(c) for c in (24, 40, 10, 9, 8, 3, 1, 16, 256)] == [32, 48, 16, 16, 16, 3, 1, 16, 256]
    assert amx_gemm_for(spr, 32, 17) is None
    assert amx_gemm_for(spr, 32, 1) is None  # 4 input channels or fewer at 1x1: the VNNI GEMM
    off = tvm.target.Target({"kind": "llvm", "mcpu": "sapphirerapids", "mattr": ["-amx-int8"]})
    assert amx_gemm_for(off, 32, 16) is None
    assert amx_gemm_for(tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"}), 32, 16) is None


# /proc/cpuinfo of a Sapphire Rapids guest whose hypervisor reports CPUID model 167 (LLVM: "rocketlake")
SPR_GUEST_CPUINFO = """processor\t: 0
model\t\t: 167
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512vbmi avx512_vbmi2
 avx512_vnni avx_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
""".replace("\n ", " ")


def test_a_guest_reported_as_an_older_cpu_compiles_for_the_features_it_has():
    from tvm.target.codegen import target_has_features

    from fcos3d.compiler.build import host_x86_features, match_x86_cpu

    features = host_x86_features(SPR_GUEST_CPUINFO)
    assert {"amx-int8", "amx-tile", "avx512vnni", "avx512bw"} <= features
    # LLVM's CPUID name lacks AMX: the CPU whose features are exactly the host's replaces it
    assert match_x86_cpu("rocketlake", features) == ("sapphirerapids", [])
    assert match_x86_cpu("sapphirerapids", features) == ("sapphirerapids", [])  # a right name is kept
    cpu, mattr = match_x86_cpu("rocketlake", features)
    assert amx_gemm_for(tvm.target.Target({"kind": "llvm", "mcpu": cpu, "mattr": mattr}), 32, 16) is not None
    # no LLVM CPU has exactly these: the named one, with the differences spelled out
    odd = frozenset({"avx2", "fma", "avx512f", "avx512cd", "amx-tile", "amx-int8"})
    cpu, mattr = match_x86_cpu("skylake-avx512", odd)
    assert cpu == "skylake-avx512" and {"+amx-int8", "+amx-tile", "-avx512bw", "-avx512vl"} <= set(mattr)
    t = tvm.target.Target({"kind": "llvm", "mcpu": cpu, "mattr": mattr})
    assert target_has_features("amx-int8", t) and not target_has_features("avx512bw", t)
    assert host_x86_features("processor\t: 0\n") is None  # no flags line: nothing to go by


@pytest.mark.slow
def test_amx_convs_equal_the_simulator(host_compile):
    """Compiled for this CPU (AMX where it has it) == simulator on every element, inputs random and at -128."""
    from qdq_graphs import QDQGraphBuilder

    from fcos3d.runtime.reference.simulator import Simulator

    target = _host_target()
    sims, uses_amx = {}, []
    for i, (cin, cout, k, s, hw, head) in enumerate(CONVS):
        b = QDQGraphBuilder(seed=40 + i)
        x = b.input((1, cin, *hw), scale=0.05)
        y = b.conv(x, cout, kernel=k, stride=s, relu=not head, int32_output=head)
        if not head:
            b.output(y)
        sims[f"conv_{i}"] = Simulator(b.build())
        uses_amx.append(amx_gemm_for(target, amx_channels(cout), -(-cin * k * k // 4)) is not None)
    vm = host_compile({name: sim.graph for name, sim in sims.items()})
    assert_equals_simulator(vm, sims)
    if not any(uses_amx):
        pytest.skip("this CPU has no AMX: the convs above ran on the VNNI / plain GEMM (still compared)")
    assert uses_amx == [True, True, True, True, False, True, True, True, True, False, True]


def test_a_channel_tile_sweeps_runs_of_position_tiles_that_fit_l2():
    from fcos3d.compiler.passes.schedule import RUN_BYTES, position_run

    assert position_run(8, 4096) == 8  # every block of the task
    assert position_run(1792, 4096) == 64  # 256 KiB of 16-word blocks: 64 of them
    assert position_run(7, RUN_BYTES) == 1  # one block is more than the budget: one at a time
    assert position_run(10, 65536) == 2  # the most that divide the task and fit


@pytest.mark.slow
@pytest.mark.parametrize("amx", [True, False])
def test_gemm_runs_shorter_than_a_task_equal_the_simulator(host_compile, monkeypatch, amx):
    """Runs of a few position tiles (the run budget cut to 8 KiB: on AMX 2 of a task's 8), on AMX and on the
    VNNI GEMM: still the simulator's integers."""
    from qdq_graphs import QDQGraphBuilder

    from fcos3d.compiler import build
    from fcos3d.compiler.passes import schedule
    from fcos3d.runtime.reference.simulator import Simulator

    monkeypatch.setattr(schedule, "RUN_BYTES", 8192)
    if not amx:
        monkeypatch.setattr(build, "amx_permitted", lambda: False)
    b = QDQGraphBuilder(seed=61)
    x = b.input((1, 64, 16, 64), scale=0.05)
    b.output(b.conv(x, 48, kernel=1, pad=0, relu=True))
    sims = {"runs": Simulator(b.build())}
    assert_equals_simulator(host_compile({"runs": sims["runs"].graph}), sims)


# (channels, hw, kernel, pad): 5x5, 7x7 and 3x3 on odd widths (1, 2 and 3 row tiles a call; 2 and 3 column tiles a
# call on planes one tile high), rows and columns not whole tiles
DEPTHWISE = [
    (3, (20, 37), 5, 2),
    (32, (17, 16), 5, 2),
    (8, (40, 33), 7, 0),
    (16, (48, 9), 5, 1),
    (24, (32, 56), 3, 1),
    (16, (16, 28), 5, 2),
    (8, (16, 45), 3, 1),
]


def test_toeplitz_weights_are_the_window_shifted_per_output_column():
    w = np.random.default_rng(1).integers(-128, 128, size=(2, 1, 3, 5), dtype=np.int8)
    bands, correction = pack_depthwise_toeplitz(w, 128)
    assert bands.shape == (2, 3, 5, 16)  # 16 + 5 - 1 = 20 columns read: 5 words
    band = bands.view(np.int8).reshape(2, 3, 5, 16, 4).transpose(0, 1, 2, 4, 3).reshape(2, 3, 20, 16)  # [c, ky, q, x]
    for x in range(16):
        for q in range(20):
            want = w[:, 0, :, q - x] if 0 <= q - x < 5 else np.zeros((2, 3), np.int8)
            assert np.array_equal(band[:, :, q, x], want), (q, x)
    assert np.array_equal(correction, 128 * w.reshape(2, -1).astype(np.int64).sum(axis=1))


def test_depthwise_tiles_pad_rows_and_columns_so_every_read_exists():
    spec = DepthwiseAmxSpec((5, 5), (20, 37), (2, 2, 2, 2), (20, 37), 128)
    assert spec.words == 5 and spec.out_hw_padded == (32, 48)
    # rows: the last tile's 16 rows + 4 read up to row 35 of the padded input: bottom pad 2 + 12
    assert spec.bottom_pad == 14 and 20 + 2 + spec.bottom_pad == 32 + 5 - 1
    # columns: the last tile starts at 32 and reads 20 bytes: 52, rounded to whole words
    assert 37 + 2 + spec.right_pad == 52
    cfg = np.array(AmxWindow(5, 5, 2).config_words(), dtype="<i4").view(np.uint8)
    assert list(cfg[48:56]) == [16, 16, 0, 16, 16, 0, 5, 0]  # C tiles 0, 1; A tiles 3, 4; B tile 6
    assert list(cfg[16:48].view("<u2")[:8]) == [64, 64, 0, 20, 20, 0, 64, 0]
    wide = np.array(AmxWindow(3, 5, 1, 3).config_words(), dtype="<i4").view(np.uint8)
    assert list(wide[48:56]) == [16, 16, 16, 16, 16, 16, 5, 0]  # 3 tiles side by side: C 0-2, A 3-5, B 6


def test_depthwise_amx_is_chosen_for_wide_stride_1_windows():
    spr = tvm.target.Target({"kind": "llvm", "mcpu": "sapphirerapids"})
    assert amx_window_for(spr, (5, 5), (1, 1), (64, 112)) == AmxWindow(5, 5, 2)
    assert amx_window_for(spr, (5, 5), (1, 1), (48, 9)) == AmxWindow(5, 5, 3)
    assert amx_window_for(spr, (7, 7), (1, 1), (16, 16)) == AmxWindow(7, 6, 1)
    # 3x3: tiles only where the rows are not whole vectors and the layer is not mostly padding
    assert amx_window_for(spr, (3, 3), (1, 1), (64, 112)) is None
    assert amx_window_for(spr, (3, 3), (1, 1), (32, 56)) == AmxWindow(3, 5, 2)
    # a plane one tile high: its column tiles share a call (two or three accumulator chains instead of one)
    assert amx_window_for(spr, (5, 5), (1, 1), (16, 28)) == AmxWindow(5, 5, 1, 2)
    assert amx_window_for(spr, (3, 3), (1, 1), (16, 45)) == AmxWindow(3, 5, 1, 3)
    assert amx_window_for(spr, (3, 3), (1, 1), (8, 14)) is None
    assert amx_window_for(spr, (5, 5), (1, 1), (8, 12)) is None  # less than one tile of rows: the window kernel
    assert amx_window_for(spr, (5, 5), (2, 2), (64, 112)) is None
    skx = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"})
    assert amx_window_for(skx, (5, 5), (1, 1), (64, 112)) is None


@pytest.mark.slow
def test_amx_depthwise_convs_equal_the_simulator(host_compile):
    from qdq_graphs import QDQGraphBuilder

    from fcos3d.runtime.reference.simulator import Simulator

    target = _host_target()
    sims = {}
    for i, (c, hw, k, pad) in enumerate(DEPTHWISE):
        b = QDQGraphBuilder(seed=60 + i)
        x = b.input((1, c, *hw), scale=0.05)
        b.output(b.conv(x, c, kernel=k, groups=c, pad=pad, relu=True))
        sims[f"dw_{i}"] = Simulator(b.build())
    vm = host_compile({name: sim.graph for name, sim in sims.items()})
    assert_equals_simulator(vm, sims)
    if amx_window_for(target, (5, 5), (1, 1), (16, 16)) is None:
        pytest.skip("this CPU has no AMX: the depthwise convs above ran on the window kernel (still compared)")


def test_a_cpu_with_amx_that_the_os_does_not_grant_compiles_without_it(monkeypatch):
    """arch_prctl refused (a kernel before 5.16): the host target turns AMX off, the convs take the VNNI kernels
    (no tile instruction that would raise SIGILL) and stay exact."""
    from qdq_graphs import QDQGraphBuilder
    from tvm import relax

    import fcos3d.compiler.build as build
    from fcos3d.boards import load_board
    from fcos3d.compiler.pipeline import run_pipeline
    from fcos3d.runtime.reference.simulator import Simulator

    monkeypatch.setattr(build, "amx_permitted", lambda: False)
    target = build.board_target(load_board("host"))
    assert amx_gemm_for(target, 32, 16) is None and amx_window_for(target, (5, 5), (1, 1), (16, 16)) is None
    b = QDQGraphBuilder(seed=70)
    x = b.input((1, 64, 6, 7), scale=0.05)
    b.output(b.conv(b.conv(x, 32, kernel=1, pad=0, relu=True), 32, kernel=5, groups=32, pad=2, relu=True))
    sims = {"pair": Simulator(b.build())}
    lowered = run_pipeline({"pair": sims["pair"].graph}, target)
    assert "tdpbsud" not in lowered.mod.script() and "tdpbusd" not in lowered.mod.script()
    assert_equals_simulator(relax.VirtualMachine(build.build_executable(lowered.mod, target), tvm.cpu()), sims)
