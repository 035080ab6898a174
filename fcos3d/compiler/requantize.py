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
    "emit_requantize_int32",
    "emit_requantize_table",
    "emit_saturate_int8",
    "even_odd_lowering",
    "int32_form",
    "lower_even_odd",
]


def emit_requantize(
    bb: relax.BlockBuilder, x: relax.Expr, multiplier, shift, channels: int, axis: int = 1, bound: int | None = None
) -> relax.Var:
    """int32 ``x`` -> int32 ``requantize(x, m[c], shift[c])`` along ``axis`` (docs/int8.md 2; NCHW: axis 1).

    Formula (TVM ``q_multiply_shift_per_axis``, int64 inside): ``((x << ls) * m + 2**(30 + rs)) >> (31 + rs)``
    with ``ls = max(shift, 0)``, ``rs = max(-shift, 0)``; one rounding, ties toward +inf; the int64 result is
    truncated to int32, which is exact inside ``fixedpoint.requantize``'s domain (its overflow bound).
    ``multiplier``/``shift`` are scalars (per-tensor: repeated over the ``channels``) or (channels,) arrays.
    The per-axis form is used even per-tensor: the scalar ``fixed_point_multiply`` special-cases
    ``m == 2**30`` (fixedpoint.py module docstring).
    ``bound``: a proven bound on ``|x|`` (a conv's ``128 * sum|w| + |bias|``), given only where the result is
    then saturated to int8; else None. Within ``FLOAT32_EXACT`` the x86 kernels may then compute the rounding
    in float32 (``lower_even_odd``): the same int8 results (a result beyond float32's integers, |y| > 2**24, is
    not exact there, but saturates as the exact one does; an unsaturated int32 result, such as an add's
    common domain, must not pass a bound).
    """
    m = np.broadcast_to(np.asarray(multiplier, dtype=np.int64), (channels,))
    s = np.broadcast_to(np.asarray(shift, dtype=np.int64), (channels,))
    return emit_requantize_table(bb, x, m, s, (axis,), bound)


def int32_form(multiplier: int, shift: int, lo: int, hi: int) -> tuple[int, int] | None:
    """``(odd, e)`` with ``requantize(x, multiplier, shift) == x * odd << e`` (e >= 0) or
    ``(x * odd + 2**(-e - 1)) >> -e`` (e < 0, arithmetic shift) for every int32 ``lo <= x <= hi``, with no
    intermediate leaving int32; None where some would. ``odd`` is the multiplier without its trailing zero bits:
    the exact value is ``floor(x * odd * 2**e + 1/2)`` with ``e = shift - 31 + trailing zeros``, a product and a
    power of two (docs/int8.md 2.6)."""
    m, s = int(multiplier), int(shift)
    if m <= 0 or lo > hi:
        return None
    zeros = (m & -m).bit_length() - 1
    odd, e = m >> zeros, s - 31 + zeros
    low, high = lo * odd, hi * odd
    if e >= 0:
        fits = e < 31 and low << e >= fx.INT32_MIN and high << e <= fx.INT32_MAX
    else:
        fits = -e < 31 and low >= fx.INT32_MIN and high + (1 << (-e - 1)) <= fx.INT32_MAX
    return (odd, e) if fits else None


def emit_requantize_int32(
    bb: relax.BlockBuilder, x: relax.Expr, multiplier: int, shift: int, lo: int, hi: int, channels: int
) -> relax.Var:
    """int32 ``x`` with ``lo <= x <= hi`` -> ``requantize(x, multiplier, shift)`` (per-tensor), as one int32
    multiply, add and shift where that is exact (int32_form: an add's input rescale of an int8, whose 24-bit
    multiplier times 128 fits int32; a multiplier of a power of two is a plain left shift), else emit_requantize.
    The same integers, at a fraction of the int64 form's instructions."""
    form = int32_form(multiplier, shift, lo, hi)
    if form is None:
        return emit_requantize(bb, x, multiplier, shift, channels)
    odd, e = form
    if odd != 1:
        x = bb.emit(relax.op.multiply(x, relax.const(np.int32(odd), "int32")))
    if e > 0:
        return bb.emit(relax.op.left_shift(x, relax.const(np.int32(e), "int32")))
    if e < 0:
        x = bb.emit(relax.op.add(x, relax.const(np.int32(1 << (-e - 1)), "int32")))
        return bb.emit(relax.op.right_shift(x, relax.const(np.int32(-e), "int32")))
    return x


def emit_requantize_table(
    bb: relax.BlockBuilder, x: relax.Expr, multiplier, shift, axes: tuple[int, ...], bound: int | None = None
) -> relax.Var:
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
    if float32_exact(m, bound):
        # the float32 scale m * 2**(shift - 31), exact (24 significant bits times a power of two in the normal range),
        # held as its int32 bits: the module's tensors stay integers (passes/check_integer.py)
        scale = relax.const((m * np.exp2(s - 31.0)).astype(np.float32).view(np.int32), "int32")
        return bb.emit_te(
            _requantize_float32_marked,
            x,
            *consts,
            scale,
            int(np.any(ls > 0)),
            tuple(axes),
            primfunc_name_hint="requantize",
        )
    return bb.emit_te(
        topi.fixed_point_multiply_per_axis,
        x,
        *consts,
        int(np.any(ls > 0)),
        1,
        tuple(axes),
        primfunc_name_hint="requantize",
    )


# --- the float32 form of the rounding (docs/int8.md 2.5) ------------------------------------------------------
#
# With |x| <= 2**24 (exact in float32) and a multiplier of 24 significant bits (fixedpoint.MULTIPLIER_BITS: exact
# in float32 too, and so is m * 2**(ls - 31 - rs), a power of two in the normal range), one fused multiply-add
# rounded toward -inf gives f = fl_down(x * m' + 1/2) with floor(x * m' + 1/2) <= f <= x * m' + 1/2: the integer
# floor(x * m' + 1/2) is a float32 (|.| < 2**24 + 1) and the largest one below the exact value, so converting f
# toward -inf returns exactly requantize's result (one rounding, ties up). Where the result leaves float32's
# integers (|y| > 2**24) both lie outside int8 with the same sign and saturate alike (inside requantize's domain,
# |y| < 2**31, the conversion cannot overflow). x86 with AVX-512 (embedded rounding: vfmadd213ps {rd-sae},
# vcvtps2dq {rd-sae}): 4 instructions for 16 lanes instead of the integer form's 11.

FLOAT32_EXACT = 2**24


def float32_exact(multiplier: np.ndarray, bound: int | None) -> bool:
    """The float32 form is exact for these multipliers on values ``|x| <= bound``."""
    low_bits = 2 ** (31 - fx.MULTIPLIER_BITS) - 1
    return bound is not None and bound <= FLOAT32_EXACT and not np.any(np.asarray(multiplier) & low_bits)


def _requantize_float32_marked(x, multiplier, lshift, rshift, scale, is_lshift_required: int, axes):
    """topi.fixed_point_multiply_per_axis with ``x`` cast to float32 and an 8th argument, the float32 scale
    (``multiplier * 2**(shift - 31)``, exact; ``scale`` holds its int32 bits): the same integers under any
    lowering (TVM's reads the first 7 arguments and casts the value back to int64, exactly), and the mark that
    lets lower_even_odd use the float32 form, which reads the scale as it is (one broadcast, no per-channel
    arithmetic in the kernel)."""
    from tvm import te

    def _compute(*indices):
        p = tuple(indices[a] for a in axes)
        return tirx.call_intrin(
            "int32",
            "tirx.q_multiply_shift_per_axis",
            tirx.Cast("float32", x(*indices)),
            multiplier(*p),
            lshift(*p),
            rshift(*p),
            tirx.const(31, "int32"),
            tirx.const(is_lshift_required, "bool"),
            tirx.const(1, "bool"),
            tirx.call_intrin("float32", "tirx.reinterpret", scale(*p)),
        )

    return te.compute(x.shape, _compute, name="requantize")


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


_ROUND_DOWN = 9  # _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC: the instruction's own rounding, no exceptions


def _vector_type(e) -> tuple[str, int]:
    """(element type, lanes) of an expression: ("int32", 16) for int32x16, ("int32", 1) for a scalar."""
    base, _, n = str(e.ty).partition("x")
    return base, int(n) if n.isdigit() else 1


def _float32_marked(x):
    """The int32 value of a float32-marked ``x`` (``Cast(float32, int32 value)``, _requantize_float32_marked), or
    None."""
    if isinstance(x, tirx.Cast) and _vector_type(x)[0] == "float32" and _vector_type(x.value)[0] == "int32":
        return x.value
    return None


_ZMM = 16  # float32 / int32 lanes of a 512-bit register: embedded rounding exists only at this width


def _widen(v, lanes: int):
    """A vector of ``lanes`` < 16 (or a broadcast) as 16 lanes, the rest zero; 16 lanes as it is."""
    if lanes == _ZMM:
        return v
    if isinstance(v, tirx.Broadcast):
        return tirx.Broadcast(v.value, _ZMM)
    zero = tirx.const(0, _vector_type(v)[0])
    zero = zero if lanes == _ZMM - 1 else tirx.Broadcast(zero, _ZMM - lanes)
    return tirx.Shuffle([v, zero], [tirx.const(i, "int32") for i in range(_ZMM)])


def _float32_form(x, scale, lanes: int):
    """requantize on float32 x ``lanes`` (<= 16; fewer are widened to 16 and narrowed back), module comment above:
    ``cvt_down(fma_down(x, scale, 1/2))``."""
    i32, f32 = f"int32x{_ZMM}", f"float32x{_ZMM}"
    half = tirx.Broadcast(tirx.const(0.5, "float32"), _ZMM)
    rounding = tirx.const(_ROUND_DOWN, "int32")
    value = tirx.call_llvm_pure_intrin(
        f32, "llvm.x86.avx512.vfmadd.ps.512", _widen(x, lanes), _widen(scale, lanes), half, rounding
    )
    zero = tirx.Broadcast(tirx.const(0, "int32"), _ZMM)
    y = tirx.call_llvm_pure_intrin(
        i32, "llvm.x86.avx512.mask.cvtps2dq.512", value, zero, tirx.const(-1, "int16"), rounding
    )
    return y if lanes == _ZMM else tirx.Shuffle([y], [tirx.const(i, "int32") for i in range(lanes)])


def _in_registers(op, lanes: int):
    """A call on ``lanes`` > 16 (an int8 row of 64) as 16-lane calls, each lowered by lower_even_odd, concatenated."""

    def part(v, k):
        if _vector_type(v)[1] == 1:  # a scalar flag or constant
            return v
        if isinstance(v, tirx.Broadcast):
            return tirx.Broadcast(v.value, _ZMM)
        if isinstance(v, tirx.Cast):  # keeps the float32 mark (_float32_marked) on each part
            return tirx.Cast(f"{_vector_type(v)[0]}x{_ZMM}", part(v.value, k))
        return tirx.Shuffle([v], [tirx.const(k * _ZMM + i, "int32") for i in range(_ZMM)])

    base = _vector_type(op)[0]
    parts = [
        lower_even_odd(
            tirx.call_intrin(f"{base}x{_ZMM}", "tirx.q_multiply_shift_per_axis", *[part(a, k) for a in op.args])
        )
        for k in range(lanes // _ZMM)
    ]
    return tirx.Shuffle(parts, [tirx.const(i, "int32") for i in range(lanes)])


def lower_even_odd(op):
    """The vector forms of ``q_multiply_shift_per_axis(x, m, ls, rs, 31, lshift, rshift)`` on x86:

    - a float32-marked ``x`` (emit_requantize's proven bound) on 2-16 lanes with AVX-512: the float32 form;
    - a float32-marked ``x`` otherwise: the same call on the int32 value (the mark removed);
    - int32 x N, N even, 4-16: the even/odd form (a left shift applied to the 64-bit product);
    - a multiple of 16 lanes beyond 16 (an int8 row of 64): each 16 lanes as above;
    - ``op`` itself (TVM's own lowering then runs) for anything else or outside even_odd_lowering."""
    x, m, ls, rs, q, lshift, rshift, *scale = op.args
    base, lanes = _vector_type(x)
    if lanes > _ZMM and lanes % _ZMM == 0 and getattr(_STATE, "active", False):
        return _in_registers(op, lanes)
    value = _float32_marked(x)
    if value is not None and len(scale) == 1:
        if getattr(_STATE, "float32", False) and 2 <= lanes <= _ZMM and _int(q) == 31:
            return _float32_form(x, scale[0], lanes)
        return tirx.call_intrin(str(op.ty), "tirx.q_multiply_shift_per_axis", value, m, ls, rs, q, lshift, rshift)
    if not getattr(_STATE, "active", False):
        return op
    if base != "int32" or lanes % 2 or not 4 <= lanes <= _ZMM or _int(q) != 31:
        return op
    half = lanes // 2
    xe, xo = _halves(x, half)
    me, mo = _halves(m, half)
    even, odd = xe * me, xo * mo
    if _int(lshift):  # (x << ls) * m == (x * m) << ls in int64 (both modulo 2**64), after the one 32 x 32 multiply
        le, lo = _halves(ls, half)
        even, odd = tirx.shift_left(even, le), tirx.shift_left(odd, lo)
    if _int(rshift):
        re, ro = _halves(rs, half)
    else:
        re = ro = tirx.Broadcast(tirx.const(0, "int64"), half)
    one = tirx.Broadcast(tirx.const(1, "int64"), half)

    def rounded(prod, r):
        total = tirx.Broadcast(tirx.const(31, "int64"), half) + r
        return tirx.shift_right(prod + tirx.shift_left(one, total - one), total)

    even, odd = rounded(even, re), rounded(odd, ro)
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
    from tvm.target.codegen import target_has_features

    from .intrinsics import target_is_arm

    x86 = target is not None and str(target.kind.name) == "llvm" and not target_is_arm(target)
    previous = getattr(_STATE, "active", False), getattr(_STATE, "float32", False)
    _STATE.active = x86
    _STATE.float32 = x86 and target_has_features("avx512f", target)
    try:
        yield
    finally:
        _STATE.active, _STATE.float32 = previous
