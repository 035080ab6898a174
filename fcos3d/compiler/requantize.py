"""The compiler's one emitter of the integer rounding: int32 -> requantised, saturated int8 in Relax.

Every scale change of the compiled graph (conv, add, concat) goes through ``emit_requantize``, which is
TVM's ``topi.fixed_point_multiply_per_axis`` on the constants ``fixedpoint.quantize_multiplier`` made.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np
from tvm import relax, tirx, topi

from fcos3d.int8 import fixedpoint as fx

__all__ = [
    "emit_output_int8",
    "emit_requantize",
    "emit_requantize_table",
    "emit_saturate_int8",
    "even_odd_lowering",
    "lower_even_odd",
]


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


# --- the vector form of the rounding on x86 -------------------------------------------------------------------
#
# TVM lowers ``q_multiply_shift_per_axis`` on an int32 x N vector by widening it to int64 x N, which LLVM splits
# into two int64 x N/2 halves (zero-extends, an extract, two multiplies, two narrows and an insert). The same
# integers come out of the even/odd form: the int32 x N vector read as int64 x N/2 holds lane 2k in the low and
# lane 2k + 1 in the high half of word k; ``(w << 32) >> 32`` and ``w >> 32`` are those lanes sign-extended, so
# each product is one ``vpmuldq``; after the rounding add and the shift, word k's low half is lane 2k's result and
# the odd results shifted up by 32 fill the high halves. Only the vector schedule changes: the formula (one
# rounding, ties up, the int64 result truncated to int32) is fixedpoint.requantize's, bit for bit
# (tests/compiler/test_requantize_lowering.py). x86 only: NEON has no 64-bit lane multiply.

_STATE = threading.local()


def _int(e) -> int | None:
    """The value of a constant (or a broadcast constant: the vectoriser broadcasts every argument)."""
    if isinstance(e, tirx.Broadcast):
        e = e.value
    return int(e.value) if isinstance(e, tirx.IntImm) else None


def _halves(v, half: int):
    """int32 x 2h -> (even lanes, odd lanes) as sign-extended int64 x h."""
    if isinstance(v, tirx.Broadcast):
        scalar = tirx.Cast("int64", v.value)
        return tirx.Broadcast(scalar, half), tirx.Broadcast(scalar, half)
    w = tirx.call_intrin(f"int64x{half}", "tirx.reinterpret", v)
    c32 = tirx.Broadcast(tirx.const(32, "int64"), half)
    return tirx.shift_right(tirx.shift_left(w, c32), c32), tirx.shift_right(w, c32)


def lower_even_odd(op):
    """The even/odd form of a vector ``q_multiply_shift_per_axis(x, m, ls, rs, 31, False, rshift)`` (int32 x N,
    N 8 or 16); ``op`` itself (TVM's own lowering then runs) for anything else or outside even_odd_lowering."""
    if not getattr(_STATE, "active", False):
        return op
    x, m, _ls, rs, q, lshift, rshift = op.args
    base, _, n = str(x.ty).partition("x")  # "int32x16"
    lanes = int(n) if n.isdigit() else 1
    if base != "int32" or lanes not in (8, 16) or _int(q) != 31 or _int(lshift) != 0:
        return op
    half = lanes // 2
    xe, xo = _halves(x, half)
    me, mo = _halves(m, half)
    if _int(rshift):
        re, ro = _halves(rs, half)
    else:
        re = ro = tirx.Broadcast(tirx.const(0, "int64"), half)
    one = tirx.Broadcast(tirx.const(1, "int64"), half)

    def rounded(prod, r):
        total = tirx.Broadcast(tirx.const(31, "int64"), half) + r
        return tirx.shift_right(prod + tirx.shift_left(one, total - one), total)

    even = rounded(xe * me, re)
    odd = rounded(xo * mo, ro)
    low = tirx.Broadcast(tirx.const(0xFFFFFFFF, "int64"), half)
    c32 = tirx.Broadcast(tirx.const(32, "int64"), half)
    word = tirx.bitwise_or(tirx.shift_left(odd, c32), tirx.bitwise_and(even, low))
    return tirx.call_intrin(f"int32x{lanes}", "tirx.reinterpret", word)


_REGISTERED = []


@contextmanager
def even_odd_lowering(target):
    """Within the block, builds for an x86 ``target`` lower the vector requantisation in the even/odd form
    (lower_even_odd); other targets keep TVM's lowering."""
    import tvm

    if not _REGISTERED:
        tvm.tirx.op.register_intrin_lowering(
            "tirx.q_multiply_shift_per_axis", target="llvm", f=lower_even_odd, level=99
        )
        _REGISTERED.append(True)
    from .intrinsics import target_is_arm

    x86 = target is not None and str(target.kind.name) == "llvm" and not target_is_arm(target)
    previous = getattr(_STATE, "active", False)
    _STATE.active = x86
    try:
        yield
    finally:
        _STATE.active = previous
