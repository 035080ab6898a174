"""fuse: a conv with its bias, requantisation, clip and cast ends in fewer kernels, with unchanged integers."""

from __future__ import annotations

import numpy as np
import tvm
from qdq_graphs import QDQGraphBuilder
from tvm import relax, tirx

from fcos3d.boards import load_board
from fcos3d.compiler.build import board_target, build_executable
from fcos3d.compiler.passes.fuse import fuse
from fcos3d.compiler.passes.import_int_graph import import_int_graph
from fcos3d.compiler.passes.legalize import legalize
from fcos3d.compiler.passes.lower_to_vm import lower_to_vm
from fcos3d.runtime.reference.simulator import Simulator


def _prim_funcs(mod) -> int:
    return sum(isinstance(f, tirx.PrimFunc) for f in mod.functions.values())


def test_fusion_reduces_kernels_and_keeps_the_integers():
    b = QDQGraphBuilder(seed=4, tie=True)
    x = b.input((1, 4, 8, 8))
    b.output(b.conv(b.conv(x, 8, kernel=3, relu=True), 4, kernel=1, pad=0))
    sim = Simulator(b.build())
    legal = legalize(import_int_graph(sim.graph))
    fused = fuse(legal)
    assert _prim_funcs(fused) < _prim_funcs(legal)

    target = board_target(load_board("host"))
    x_np = np.random.default_rng(0).integers(-128, 128, size=(1, 4, 8, 8), dtype=np.int8)
    want = list(sim.run(x_np).values())[0]
    for mod in (legal, fused):  # lower_to_vm is what the pipeline runs last; it must accept both forms
        vm = relax.VirtualMachine(build_executable(lower_to_vm(mod), target), tvm.cpu())
        got = vm["main"](tvm.runtime.tensor(x_np))[0]  # main returns a tuple of the graph's outputs
        assert np.array_equal(got.numpy(), want)
