"""Pass 3: fuse each conv with its bias add, requantisation, clip and cast into one loop nest.

TVM's ``AnnotateTIROpPattern`` + ``FoldConstant`` + ``FuseOps`` + ``FuseTIR``: fusion changes where the int32
accumulator lives (registers instead of a buffer), never the integer arithmetic.
"""

from __future__ import annotations

import tvm
from tvm import IRModule, relax

__all__ = ["fuse"]


def fuse(mod: IRModule) -> IRModule:
    """Fuse injective/elementwise consumers into their producers (conv -> requantize -> clip -> cast)."""
    seq = tvm.transform.Sequential(
        [
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),  # evaluates constant sub-graphs with TVM itself: same integers
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
            relax.transform.DeadCodeElimination(),
        ]
    )
    return seq(mod)
