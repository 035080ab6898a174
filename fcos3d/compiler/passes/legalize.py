"""Pass 2: Relax operators (conv2d, add, clip, astype, take, max_pool2d, concat) -> TIR PrimFuncs.

TVM's ``LegalizeOps`` with its TOPI compute definitions; integer dtypes are kept as the ops declare them.
"""

from __future__ import annotations

from tvm import IRModule, relax

__all__ = ["legalize"]


def legalize(mod: IRModule) -> IRModule:
    """Every high-level Relax call becomes a ``call_tir`` of a PrimFunc (no float op appears: checked after)."""
    return relax.transform.LegalizeOps()(mod)
