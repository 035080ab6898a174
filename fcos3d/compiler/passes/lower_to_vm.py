"""Pass 6: dataflow Relax -> VM-ready Relax (explicit memory planning and VM builtins).

TVM's CPU dataflow-lowering and finalisation passes, in the order of its default CPU pipeline; after this the
module goes to ``relax.build(..., relax_pipeline=None)``.
"""

from __future__ import annotations

import tvm
from tvm import IRModule, relax

__all__ = ["lower_to_vm"]


def lower_to_vm(mod: IRModule) -> IRModule:
    """``call_tir`` -> explicit allocations, planned storage, shape lowering, global symbols."""
    seq = tvm.transform.Sequential(
        [
            relax.transform.RewriteDataflowReshape(),
            relax.transform.ToNonDataflow(),
            relax.transform.RemovePurityChecking(),
            relax.transform.CallTIRRewrite(),
            relax.transform.StaticPlanBlockMemory(),
            relax.transform.LowerAllocTensor(),
            relax.transform.KillAfterLastUse(),
            relax.transform.LowerRuntimeBuiltin(),
            relax.transform.ComputePrimValue(),
            relax.transform.VMShapeLower(),
            relax.transform.AttachGlobalSymbol(),
        ]
    )
    return seq(mod)
