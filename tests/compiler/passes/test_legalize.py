"""legalize: every high-level Relax op of an imported graph becomes a call_tir of an integer PrimFunc."""

from __future__ import annotations

import tvm
from qdq_graphs import QDQGraphBuilder
from tvm import tirx

from fcos3d.compiler.passes.check_integer import check_integer
from fcos3d.compiler.passes.import_int_graph import import_int_graph
from fcos3d.compiler.passes.legalize import legalize
from fcos3d.int8.reader import parse_qdq


def imported_module():
    b = QDQGraphBuilder(seed=3)
    x = b.input((1, 4, 6, 6))
    y = b.conv(x, 4, kernel=3, relu=True)
    b.output(b.add(x, b.maxpool(y, 3, 1, 1)))
    return import_int_graph(parse_qdq(b.build()))


def test_no_high_level_op_is_left():
    mod = legalize(imported_module())
    calls = []

    def visit(expr):
        if isinstance(expr, tvm.relax.Call) and isinstance(expr.op, tvm.ir.Op):
            calls.append(expr.op.name)

    tvm.relax.analysis.post_order_visit(mod["main"].body, visit)
    assert calls and set(calls) <= {"relax.call_tir"}, sorted(set(calls))
    assert any(isinstance(f, tirx.PrimFunc) for f in mod.functions.values())
    check_integer(mod, after="legalize")  # still no float anywhere, now at the TIR level too
