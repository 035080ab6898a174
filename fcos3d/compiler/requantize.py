"""The compiler's one emitter of the integer rounding: int32 -> requantised, saturated int8 in Relax.

Every scale change of the compiled graph (conv, add, concat) goes through ``emit_requantize``, which is
TVM's ``topi.fixed_point_multiply_per_axis`` on the constants ``fixedpoint.quantize_multiplier`` made.
"""

from __future__ import annotations

import numpy as np
from tvm import relax, topi

from fcos3d.int8 import fixedpoint as fx

__all__ = ["emit_output_int8", "emit_requantize", "emit_requantize_table", "emit_saturate_int8"]


def emit_requantize(
    bb: relax.BlockBuilder, x: relax.Expr, multiplier, shift, channels: int, axis: int = 1
) -> relax.Var:
    """int32 ``x`` -> int32 ``requantize(x, m[c], shift[c])`` along ``axis`` (docs/int8.md 2; NCHW: axis 1).

    Formula (TVM ``q_multiply_shift_per_axis``, int64 inside): ``((x << ls) * m + 2**(30 + rs)) >> (31 + rs)``
    with ``ls = max(shift, 0)``, ``rs = max(-shift, 0)``; one rounding, ties toward +inf; the int64 result is
    truncated to int32, which is exact inside ``fixedpoint.requantize``'s domain (its overflow bound).
    ``multiplier``/``shift`` are scalars (per-tensor: repeated over the ``channels``) or (channels,) arrays.
    The per-axis form is used even per-tensor: the scalar ``fixed_point_multiply`` special-cases
    ``m == 2**30`` (fixedpoint.py module docstring).
    """
    m = np.broadcast_to(np.asarray(multiplier, dtype=np.int64), (channels,))
    s = np.broadcast_to(np.asarray(shift, dtype=np.int64), (channels,))
    return emit_requantize_table(bb, x, m, s, (axis,))


def emit_requantize_table(bb: relax.BlockBuilder, x: relax.Expr, multiplier, shift, axes: tuple[int, ...]) -> relax.Var:
    """As ``emit_requantize`` with constants indexed by several axes of ``x``: ``multiplier``/``shift`` are
    arrays shaped like ``x``'s dims along ``axes`` (an average pool's per-position table: axes (2, 3))."""
    m = np.asarray(multiplier, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
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
        tuple(axes),
        primfunc_name_hint="requantize",
    )


def emit_saturate_int8(bb: relax.BlockBuilder, x: relax.Expr, relu: bool) -> relax.Var:
    """int32 -> int8: ``clamp(x, 0 if relu else -128, 127)`` then cast (exact after the clamp)."""
    lo = 0 if relu else fx.INT8_MIN
    return bb.emit(relax.op.astype(relax.op.clip(x, lo, fx.INT8_MAX), "int8"))


def emit_output_int8(bb: relax.BlockBuilder, y: relax.Expr, zero_point: int, bounds: tuple[int, int]) -> relax.Var:
    """int32 requantised ``y`` -> int8 ``clamp(y + zero_point, lo, hi)`` (docs/int8.md 4.2); with zero point 0 and
    the plain ReLU / int8 bounds it emits exactly ``emit_saturate_int8`` (the symmetric path's IR)."""
    if zero_point:
        y = bb.emit(relax.op.add(y, relax.const(np.int32(zero_point), "int32")))
    lo, hi = bounds
    return bb.emit(relax.op.astype(relax.op.clip(y, int(lo), int(hi)), "int8"))
