"""Pass 3: fuse each conv with its bias add, requantisation, clip and cast into one loop nest.

TVM's ``AnnotateTIROpPattern`` + ``FoldConstant`` + ``FuseOps`` + ``FuseTIR``: fusion changes where the int32
accumulator lives (registers instead of a buffer), never the integer arithmetic.
"""

from __future__ import annotations

import tvm
from tvm import IRModule, relax

__all__ = ["FUSE_AS_ELEMWISE", "fuse"]

# PrimFunc attribute: FuseOps is to see the function as elementwise (op_pattern 0, which AnnotateTIROpPattern
# would overwrite), so that it joins the conv before it (kernels.pack_words into its depthwise conv)
FUSE_AS_ELEMWISE = "fcos3d.fuse_as_elementwise"


@tvm.transform.module_pass(opt_level=0, name="MarkElementwise")
def _mark_elementwise(mod: IRModule, _ctx) -> IRModule:
    out = IRModule(dict(mod.functions.items()), attrs=mod.attrs)
    for gv, func in mod.functions.items():
        if isinstance(func, tvm.tirx.PrimFunc) and func.attrs is not None and FUSE_AS_ELEMWISE in func.attrs:
            out[gv] = func.with_attr("op_pattern", 0)
    return out


def fuse(mod: IRModule) -> IRModule:
    """Fuse injective/elementwise consumers into their producers (conv -> requantize -> clip -> cast)."""
    seq = tvm.transform.Sequential(
        [
            relax.transform.AnnotateTIROpPattern(),
            _mark_elementwise,
            relax.transform.FoldConstant(),  # evaluates constant sub-graphs with TVM itself: same integers
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
            relax.transform.DeadCodeElimination(),
        ]
    )
    return seq(mod)
