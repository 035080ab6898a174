"""The compiler's one emitter of the integer rounding: int32 -> requantised, saturated int8 in Relax.

Every scale change of the compiled graph (conv, add, concat) goes through ``emit_requantize``, which is
TVM's ``topi.fixed_point_multiply_per_axis`` on the constants ``fixedpoint.quantize_multiplier`` made.
"""

from __future__ import annotations

import numpy as np
from tvm import relax, topi

from fcos3d.int8 import fixedpoint as fx

__all__ = ["emit_requantize", "emit_saturate_int8"]


def emit_requantize(bb: relax.BlockBuilder, x: relax.Expr, multiplier, shift, channels: int) -> relax.Var:
    """int32 ``x`` (N, C, H, W) -> int32 ``requantize(x, m[c], shift[c])`` along axis 1 (docs/int8.md 2).

    Formula (TVM ``q_multiply_shift_per_axis``, int64 inside): ``((x << ls) * m + 2**(30 + rs)) >> (31 + rs)``
    with ``ls = max(shift, 0)``, ``rs = max(-shift, 0)``; one rounding, ties toward +inf; the int64 result is
    truncated to int32, which is exact inside ``fixedpoint.requantize``'s domain (its overflow bound).
    ``multiplier``/``shift`` are scalars (per-tensor: repeated over the C channels) or (C,) arrays.
    The per-axis form is used even per-tensor: the scalar ``fixed_point_multiply`` special-cases
    ``m == 2**30`` (fixedpoint.py module docstring).
    """
    m = np.broadcast_to(np.asarray(multiplier, dtype=np.int64), (channels,))
    s = np.broadcast_to(np.asarray(shift, dtype=np.int64), (channels,))
    if np.any((m < 0) | (m > fx.INT32_MAX)) or np.any((s < fx.MIN_SHIFT) | (s > fx.MAX_SHIFT)):
        raise ValueError("emit_requantize: (multiplier, shift) outside fixedpoint.requantize's domain")
    ls = np.maximum(s, 0).astype(np.int32)
    rs = np.maximum(-s, 0).astype(np.int32)
    consts = [relax.const(a.astype(np.int32), "int32") for a in (m, ls, rs)]
    # is_lshift_required is a compile-time flag for all channels: false skips every left shift.
    return bb.emit_te(
        topi.fixed_point_multiply_per_axis,
        x,
        *consts,
        int(np.any(ls > 0)),
        1,
        (1,),
        primfunc_name_hint="requantize",
    )


def emit_saturate_int8(bb: relax.BlockBuilder, x: relax.Expr, relu: bool) -> relax.Var:
    """int32 -> int8: ``clamp(x, 0 if relu else -128, 127)`` then cast (exact after the clamp)."""
    lo = 0 if relu else fx.INT8_MIN
    return bb.emit(relax.op.astype(relax.op.clip(x, lo, fx.INT8_MAX), "int8"))
