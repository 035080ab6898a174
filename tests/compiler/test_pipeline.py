"""pipeline.run_pipeline: the passes in order, the IR dump after a named pass, one function per graph."""

from __future__ import annotations

import pytest
import tvm
from qdq_graphs import QDQGraphBuilder

from fcos3d.compiler.pipeline import PASS_NAMES, run_pipeline
from fcos3d.int8.reader import parse_qdq


def _graph():
    b = QDQGraphBuilder(seed=2)
    x = b.input((1, 2, 5, 5))
    b.output(b.conv(x, 3, relu=True))
    return parse_qdq(b.build())


TARGET = tvm.target.Target({"kind": "llvm"})


def test_pass_names_in_order():
    assert PASS_NAMES == ("import_int_graph", "legalize", "fuse", "tune", "schedule", "lower_to_vm")


@pytest.mark.parametrize(
    ("name", "expect"),
    [
        ("import_int_graph", "R.nn.conv2d"),
        ("legalize", "R.call_tir"),
        ("fuse", "fused_conv2d_int8_add_requantize"),  # conv + bias + requantise (+ clip, cast) in one PrimFunc
        ("schedule", "T.parallel"),  # threads (and vectors) over the loops
        ("lower_to_vm", "R.vm.alloc_storage"),
    ],
)
def test_dump_ir_after_each_pass(name, expect):
    result = run_pipeline(_graph(), TARGET, dump_ir_after=name)
    assert expect in result.dumped_ir


def test_unknown_pass_is_refused_with_the_list():
    with pytest.raises(ValueError, match="legalize"):
        run_pipeline(_graph(), TARGET, dump_ir_after="nope")


def test_many_graphs_one_module():
    mod = run_pipeline({"a": _graph(), "b": _graph()}, TARGET).mod
    assert {"a", "b"} <= {gv.name_hint for gv in mod.functions}


def test_the_compile_help_names_every_pass():
    """fcos3d-compile lists the passes without importing TVM; the list must be the pipeline's."""
    from fcos3d.cli.compile import PASSES_HELP
    from fcos3d.compiler.pipeline import PASS_NAMES

    assert PASSES_HELP == PASS_NAMES
