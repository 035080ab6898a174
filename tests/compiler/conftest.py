"""Shared helpers of the compiler tests: the QDQ graph builders of tests/runtime, and a host compile helper."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))  # qdq_graphs.py


def compile_host(graphs: dict):
    """``{function name: IntGraph}`` -> a Relax VM on this CPU (one compile for many graphs)."""
    import tvm
    from tvm import relax

    from fcos3d.boards import load_board
    from fcos3d.compiler.build import board_target, build_executable
    from fcos3d.compiler.pipeline import run_pipeline

    target = board_target(load_board("host"))
    lowered = run_pipeline(graphs, target)
    return relax.VirtualMachine(build_executable(lowered.mod, target), tvm.cpu())


@pytest.fixture(scope="session")
def host_compile():
    return compile_host
