"""Arm i8mm: which dense convs take the smmla GEMM (intrinsics.mmla_intrin_for) and that the compile for an i8mm
board lowers them to it. Bit-exactness on the emulated board: tests/runtime/test_arm_board.py."""

from __future__ import annotations

import tvm
from qdq_graphs import QDQGraphBuilder

from fcos3d.boards import load_board
from fcos3d.compiler.build import board_target
from fcos3d.compiler.intrinsics import MMLA_POSITIONS, SMMLA, MmlaGemm, mmla_chunk, mmla_gemm_for
from fcos3d.compiler.passes.schedule import position_block
from fcos3d.compiler.pipeline import run_pipeline
from fcos3d.runtime.reference.simulator import Simulator


def test_i8mm_is_chosen_only_where_it_applies():
    a720 = board_target(load_board("cortex-a720ae"))
    assert mmla_gemm_for(a720, 48, 16) == MmlaGemm(8, 8, 16, 16)  # 8 x 8 tiles: 16 accumulators of 2 x 2
    assert [mmla_gemm_for(a720, c, 4).oc for c in (256, 12, 6, 2)] == [8, 4, 2, 2]
    assert [mmla_chunk(w) for w in (8, 64, 144, 288, 70)] == [8, 64, 48, 48, 14]  # whole chunks, at most 64
    assert mmla_gemm_for(a720, 3, 16) is None  # odd channels: 2 x 2 blocks need pairs
    assert mmla_gemm_for(a720, 16, 7) is None  # odd words (27 steps of an RGB 3x3): sdot
    assert mmla_gemm_for(board_target(load_board("cortex-a55")), 48, 16) is None  # Armv8.2: no i8mm
    assert mmla_gemm_for(tvm.target.Target({"kind": "llvm", "mcpu": "sapphirerapids"}), 48, 16) is None
    assert position_block(48, 100, 4, None, mmla=True) == MMLA_POSITIONS


def _lowered(board: str) -> str:
    b = QDQGraphBuilder(seed=5)
    x = b.input((1, 32, 9, 10), scale=0.05)
    b.output(b.conv(b.conv(x, 16, kernel=1, pad=0, relu=True), 8, kernel=3, relu=True))
    graph = Simulator(b.build()).graph
    return run_pipeline({"m": graph}, board_target(load_board(board))).mod.script()


def test_an_i8mm_board_lowers_dense_convs_to_smmla():
    assert "smmla" in _lowered("cortex-a720ae") and SMMLA.startswith("llvm.aarch64.neon.smmla")
    assert "smmla" not in _lowered("cortex-a55")
