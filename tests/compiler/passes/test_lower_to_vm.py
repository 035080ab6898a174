"""lower_to_vm: no dataflow blocks and no call_tir remain (explicit allocations and VM builtins instead)."""

from __future__ import annotations

import tvm
from test_legalize import imported_module
from tvm import relax

from fcos3d.compiler.passes.fuse import fuse
from fcos3d.compiler.passes.legalize import legalize
from fcos3d.compiler.passes.lower_to_vm import lower_to_vm


def test_lowered_module_is_vm_ready():
    mod = lower_to_vm(fuse(legalize(imported_module())))
    main = mod["main"]
    assert not any(isinstance(block, relax.DataflowBlock) for block in main.body.blocks)
    ops = set()

    def visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            ops.add(expr.op.name)

    relax.analysis.post_order_visit(main.body, visit)
    assert "relax.call_tir" not in ops
    assert any(name.startswith("relax.vm.") for name in ops), sorted(ops)  # explicit VM allocations
    assert main.attrs["global_symbol"] == "main"
