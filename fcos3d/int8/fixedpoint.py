"""Fixed-point requantisation: the one definition of the project's integer rounding, in numpy.

Float scales -> per-channel (multiplier, shift); int32 accumulators -> int8 with a single rounding, ties
toward +inf, exactly as TVM 0.27's ``q_multiply_shift`` lowers. This module is the executable spec that
the torch int model, the simulator and the compiler import; docs/int8.md explains every op of the graph.

Conventions used by every function here:

- A real scale ``r`` is represented by ``multiplier * 2**(shift - 31)`` with ``multiplier`` an int32 in
  ``(2**30, 2**31)`` (a Q31 fraction in (0.5, 1)) whose low 7 bits are 0 (24 significant bits,
  ``MULTIPLIER_BITS``), or exactly ``2**29`` when ``r`` is a power of two (see ``quantize_multiplier`` for why
  not ``2**30``), or 0 for a zero/negligible scale.
- ``requantize(acc, m, shift) = floor((acc * m * 2**shift + 2**30) / 2**31)`` computed exactly in int64:
  one rounding of the exact rational ``acc * m * 2**(shift - 31)``, halves go up (toward +inf), so
  2.5 -> 3 and -2.5 -> -2. This is TVM's ``q_multiply_shift(acc, m, 31, shift)`` and
  ``q_multiply_shift_per_axis(acc, m, max(shift, 0), max(-shift, 0), 31, ...)``, bit for bit, on the
  domain documented in ``requantize`` (tests/runtime/test_fixedpoint.py builds both with TVM and checks).
- int8 activations are in [-128, 127] with a per-tensor zero point (0 on the symmetric path, docs/int8.md 1);
  weights are symmetric in [-127, 127].

No floating point is used on the integer path (``requantize``, ``round_half_up_shift``, ``saturate``,
``add_requantize``); floats appear only where float scales are turned into integers
(``quantize_multiplier`` and the ``*_multipliers`` helpers, which compute in float64).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "INT32_MIN",
    "INT32_MAX",
    "INT8_MIN",
    "INT8_MAX",
    "MAX_SCALE",
    "MIN_SHIFT",
    "MAX_SHIFT",
    "MULTIPLIER_BITS",
    "ADD_COMMON_BITS",
    "quantize_multiplier",
    "conv_multipliers",
    "round_half_up_shift",
    "requantize",
    "saturate",
    "requantize_int8",
    "accumulator_bound",
    "AddRescale",
    "add_multipliers",
    "add_requantize",
]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
INT8_MIN = -128
INT8_MAX = 127

# quantize_multiplier accepts 0 <= scale < MAX_SCALE; the largest shift it can produce is then 32.
MAX_SCALE = 2.0**30
# requantize accepts shifts in [MIN_SHIFT, MAX_SHIFT]. TVM computes the rounding constant
# 1 << (30 - shift) and the shift 31 - shift in int64: for shift < -32 the shift amount reaches 64,
# which LLVM leaves undefined (measured on x86: garbage), so -32 is the last exact right shift.
MIN_SHIFT = -32
MAX_SHIFT = 32
# Scales at or below 2**-32 round every int32 accumulator to 0 (|acc * r| <= 2**31 * 2**-32 = 1/2 and
# the one exact half, -2**31 * 2**-32, rounds up to 0): quantize_multiplier returns (0, 0) for them.
_FLUSH_SCALE = 2.0**-32

_Q31_ONE = 2**31
# Significant bits of a multiplier: those of a float32, the precision of the scales it comes from. With them a
# requantisation is exact in float32 arithmetic too (docs/int8.md 2.5: one FMA rounded toward -inf), which is
# how the x86 kernels compute it; every integer executor computes the same Q31 formula.
MULTIPLIER_BITS = 24
_POW2_MULTIPLIER = 2**29


def quantize_multiplier(real_scale: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Float scale(s) -> (multiplier int32, shift int32) with ``scale ~= multiplier * 2**(shift - 31)``.

    Formula (float64, elementwise): ``frac, exp = frexp(scale)`` so ``scale = frac * 2**exp`` with
    ``frac`` in [0.5, 1); ``multiplier = floor(frac * 2**24 + 1/2) * 2**7`` (round half up to 24
    significant bits, the precision of a float32 scale; ``frac * 2**24`` and the ``+ 1/2`` are exact in
    float64, so this is the exact rounding of the float64 value); ``shift = exp``. Then two normalisations keep every pair inside what TVM computes exactly:

    1. ``multiplier == 2**31`` (``frac`` rounded up to 1) -> ``(2**30, shift + 1)``;
    2. ``multiplier == 2**30`` (the scale is a power of two) -> ``(2**29, shift + 1)``: the same value,
       but TVM's scalar ``q_multiply_shift`` special-cases a constant multiplier of exactly 2**30 and
       then computes ``x << (shift-1)`` or ``(x + 2**(-shift)) >> (1-shift)`` in int32, which fails to
       compile for shift == 1 (scale 1.0) and overflows for x >= 2**31 - 2**(-shift). 2**29 takes the
       general int64 path, which is exact.

    Scales ``<= 2**-32`` (including 0 and subnormals) give ``(0, 0)``: every int32 accumulator then
    requantises to 0, which is also the exact round-half-up result for such a scale.

    Error: for the other scales ``|multiplier * 2**(shift-31) - scale| <= 2**-24 * scale`` (half a unit
    in the 24th bit of a fraction >= 1/2, as a float32); powers of two are exact.

    Valid range: finite ``0 <= scale < 2**30`` (MAX_SCALE). Outputs: multiplier in
    ``{0, 2**29} U (2**30, 2**31)``, a multiple of 2**7, shift in [-31, 32]. Raises ValueError for NaN, inf, negative or
    too large scales. Returns arrays shaped like ``np.asarray(real_scale)`` (0-d for a Python float).
    """
    scale = np.asarray(real_scale, dtype=np.float64)
    bad = ~np.isfinite(scale) | (scale < 0) | (scale >= MAX_SCALE)
    if np.any(bad):
        first = scale[bad].flat[0] if scale.ndim else float(scale)
        raise ValueError(
            f"quantize_multiplier: scale {first!r} is outside the valid range 0 <= scale < 2**30; "
            "a requantisation scale is s_in * s_w / s_out (or a ratio of activation scales) and must be "
            "finite and non-negative: check the observer or calibration that produced it."
        )
    frac, exp = np.frexp(scale)  # scale = frac * 2**exp, frac in [0.5, 1) (0 for scale == 0)
    # 24 significant bits (MULTIPLIER_BITS), stored as a Q31 int32: the low 7 bits are 0
    multiplier = np.floor(np.ldexp(frac, MULTIPLIER_BITS) + 0.5).astype(np.int64) << (31 - MULTIPLIER_BITS)
    shift = exp.astype(np.int64)
    carry = multiplier == _Q31_ONE
    multiplier = np.where(carry, _Q31_ONE // 2, multiplier)
    shift = shift + carry
    power_of_two = multiplier == _Q31_ONE // 2
    multiplier = np.where(power_of_two, _POW2_MULTIPLIER, multiplier)
    shift = shift + power_of_two
    flush = scale <= _FLUSH_SCALE
    multiplier = np.where(flush, 0, multiplier)
    shift = np.where(flush, 0, shift)
    return multiplier.astype(np.int32), shift.astype(np.int32)


def conv_multipliers(
    input_scale: float, weight_scales: np.ndarray | float, output_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel (multiplier, shift) for a conv: ``r[c] = (s_in * s_w[c]) / s_out``.

    The real scale is computed in float64 from the float32 scales exactly as stored (checkpoint / ONNX),
    in this order, so every room derives the same integers: always call this, never re-derive
    ``s_in * s_w / s_out`` in float32 elsewhere. Returns ``quantize_multiplier(r)``.
    """
    s_in = np.float64(input_scale)
    s_w = np.asarray(weight_scales, dtype=np.float64)
    s_out = np.float64(output_scale)
    if not s_out > 0:
        raise ValueError(f"conv_multipliers: output scale {s_out!r} must be > 0 (an int8 activation scale)")
    return quantize_multiplier((s_in * s_w) / s_out)


def round_half_up_shift(x: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """``floor((x + 2**(n-1)) / 2**n)`` for n >= 1, ``x`` for n == 0: divide by 2**n, halves toward +inf.

    Formula: ``(x + (1 << (n - 1))) >> n`` with an arithmetic (flooring) right shift in int64.
    Rounding: to nearest, ties toward +inf (1.5 -> 2, -1.5 -> -1, -2.5 -> -2).
    Overflow bound: needs ``0 <= n <= 63`` and ``x + 2**(n-1) <= 2**63 - 1``; ``requantize`` keeps
    ``|x| <= 2**62`` so any n <= 62 is safe. Returns int64.
    """
    x = np.asarray(x, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    if np.any((n < 0) | (n > 63)):
        raise ValueError(f"round_half_up_shift: shift amounts must lie in [0, 63], got {n.min()}..{n.max()}")
    half = np.where(n > 0, np.left_shift(np.int64(1), np.maximum(n - 1, 0)), np.int64(0))
    return np.right_shift(x + half, n)


def _per_channel(param, name: str, acc: np.ndarray, axis: int | None) -> np.ndarray:
    """int64 view of a per-tensor (scalar) or per-channel (1-D along ``axis``) parameter, broadcastable."""
    arr = np.asarray(param)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"requantize: {name} must be an integer array (from quantize_multiplier), got {arr.dtype}")
    arr = arr.astype(np.int64)
    if axis is None or arr.ndim == 0:
        return arr
    if arr.ndim != 1 or acc.ndim == 0:
        raise ValueError(
            f"requantize: with axis={axis}, {name} must be 1-D and acc at least 1-D, got {arr.shape} and {acc.shape}"
        )
    ax = axis % acc.ndim
    if arr.shape[0] not in (1, acc.shape[ax]):
        raise ValueError(
            f"requantize: {name} has {arr.shape[0]} channels but acc has {acc.shape[ax]} along axis {axis}"
        )
    shape = [1] * acc.ndim
    shape[ax] = arr.shape[0]
    return arr.reshape(shape)


def requantize(
    acc: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int, axis: int | None = None
) -> np.ndarray:
    """int32 accumulator -> ``round(acc * multiplier * 2**(shift - 31))`` as int64, before saturation.

    Formula (int64, exact): with ``ls = max(shift, 0)`` and ``rs = max(-shift, 0)``,
    ``y = ((acc * multiplier) << ls + 2**(30 + rs)) >> (31 + rs)`` (arithmetic shift), i.e.
    ``round_half_up_shift((acc * multiplier) << ls, 31 + rs)``.
    Rounding: one rounding of the exact product, to nearest, ties toward +inf. This is TVM 0.27's
    ``q_multiply_shift`` general path and ``q_multiply_shift_per_axis`` (src/target/intrin_rule.cc
    ``QMultiplyShift``), which casts to int64, shifts left, multiplies, adds ``1 << (total_right - 1)``
    and shifts right by ``total_right = 31 + rs``.
    Overflow bound: ``|acc| <= 2**31`` and ``0 <= multiplier < 2**31`` give ``|acc * multiplier| < 2**62``;
    the left shift is allowed only while the product stays within ``[-2**62, 2**62)`` (beyond that the
    result could not fit int32 anyway), so the rounding add cannot overflow int64.

    Domain (ValueError outside it, because TVM's int32 result would differ there): ``acc`` integer
    values in int32 range; ``0 <= multiplier <= 2**31 - 1``; ``-32 <= shift <= 32``; and the result must
    fit int32 (TVM truncates its int64 result to int32, so an out-of-range result would wrap there).

    Parameters: ``multiplier`` and ``shift`` are scalars (per-tensor) or, with ``axis``, 1-D arrays
    with one entry per index of ``acc`` along ``axis`` (per-channel, e.g. axis=1 for NCHW). With
    ``axis=None`` they are broadcast against ``acc`` by numpy's rules.
    """
    acc = np.asarray(acc)
    if acc.dtype.kind not in "iu":
        raise TypeError(f"requantize: acc must be an integer array (int32 accumulators), got {acc.dtype}")
    acc = acc.astype(np.int64)
    if acc.size and (acc.min() < INT32_MIN or acc.max() > INT32_MAX):
        raise ValueError(
            f"requantize: accumulator values {acc.min()}..{acc.max()} leave int32; TVM requantises int32 "
            "accumulators: check the accumulator bound (docs/int8.md, accumulator_bound)"
        )
    m = _per_channel(multiplier, "multiplier", acc, axis)
    s = _per_channel(shift, "shift", acc, axis)
    if np.any((m < 0) | (m > INT32_MAX)):
        raise ValueError("requantize: multipliers must lie in [0, 2**31 - 1] (use quantize_multiplier)")
    if np.any((s < MIN_SHIFT) | (s > MAX_SHIFT)):
        raise ValueError(
            f"requantize: shifts must lie in [{MIN_SHIFT}, {MAX_SHIFT}] (TVM's int64 shifts are undefined "
            f"beyond); got {s.min()}..{s.max()} (use quantize_multiplier)"
        )
    left = np.maximum(s, 0)
    right = np.maximum(-s, 0)
    prod = acc * m  # |prod| < 2**62
    # prod << left must stay in [-2**62, 2**62): arithmetic prod >> (62 - left) is then 0 or -1.
    high = np.right_shift(prod, 62 - left)
    if np.any((high != 0) & (high != -1)):
        raise ValueError("requantize: acc * multiplier * 2**shift leaves int32 (the scale is too large for acc)")
    y = round_half_up_shift(np.left_shift(prod, left), 31 + right)
    if y.size and (y.min() < INT32_MIN or y.max() > INT32_MAX):
        raise ValueError(
            f"requantize: results {y.min()}..{y.max()} leave int32; TVM would wrap them, so this is outside "
            "the bit-exact contract (the scale is too large for these accumulators)"
        )
    return y


def saturate(x: np.ndarray, lo: int = INT8_MIN, hi: int = INT8_MAX) -> np.ndarray:
    """Clamp ``x`` to ``[lo, hi]`` (default int8), keeping its dtype.

    Formula: ``min(max(x, lo), hi)``; no rounding; a fused ReLU is ``lo = 0`` (the zero point).
    """
    x = np.asarray(x)
    if lo > hi:
        raise ValueError(f"saturate: lo {lo} > hi {hi}")
    return np.clip(x, lo, hi)


def requantize_int8(
    acc: np.ndarray,
    multiplier: np.ndarray | int,
    shift: np.ndarray | int,
    axis: int | None = None,
    relu: bool = False,
    zero_point: int = 0,
    bounds: tuple[int, int] | None = None,
) -> np.ndarray:
    """int32 accumulator -> int8 activation, with an optional fused ReLU and output zero point.

    Formula: ``saturate(requantize(acc, m, shift, axis) + zero_point, lo, hi)`` with ``(lo, hi) = bounds``, or
    ``(zero_point if relu else -128, 127)``. Rounding as ``requantize`` (one rounding, ties toward +inf), then
    the zero point (an exact integer add), then saturation; a fused ReLU clamps at the zero point (the real 0)
    after requantisation. With ``zero_point`` 0 and no ``bounds`` (the symmetric path) it is
    ``saturate(requantize(acc), 0 if relu else -128, 127)``. Returns int8.
    """
    y = requantize(acc, multiplier, shift, axis=axis)
    if bounds is None:
        bounds = (int(zero_point) if relu else INT8_MIN, INT8_MAX)
    if zero_point:
        y = y + int(zero_point)
    return saturate(y, bounds[0], bounds[1]).astype(np.int8)


def accumulator_bound(fan_in: int, max_abs_bias: int = 0, max_abs_weight: int = 127) -> int:
    """Worst-case ``|acc|`` of an int8 conv: ``fan_in * 128 * max_abs_weight + max_abs_bias``.

    ``fan_in = (C_in / groups) * kh * kw``; int8 activations reach -128, weights are symmetric in
    [-127, 127]. The accumulator is exact in int32 while this is <= 2**31 - 1 (fan_in <= 132,104 with
    no bias), and exact in a float64 GEMM while it is < 2**53.
    """
    if fan_in < 0 or max_abs_bias < 0 or max_abs_weight < 0:
        raise ValueError("accumulator_bound: fan_in, max_abs_bias and max_abs_weight must be >= 0")
    return int(fan_in) * 128 * int(max_abs_weight) + int(max_abs_bias)


# ---------------------------------------------------------------------------------------------
# Add of two int8 tensors with different scales.
# ---------------------------------------------------------------------------------------------

# Bits of headroom of the common int32 domain of an add: its scale is max(s_a, s_b) / 2**20, so each
# input's rescale rounds at 2**-20 of an input step and the sum stays below 2**28 (see add_requantize).
ADD_COMMON_BITS = 20


class AddRescale(NamedTuple):
    """Per-tensor (multiplier, shift) pairs of one add: inputs a, b into the common domain, then out."""

    multiplier_a: int
    shift_a: int
    multiplier_b: int
    shift_b: int
    multiplier_out: int
    shift_out: int


def add_multipliers(scale_a: float, scale_b: float, scale_out: float) -> AddRescale:
    """The add rule's constants from the three float32 activation scales (computed in float64).

    Common domain scale ``s_c = max(s_a, s_b) * 2**-20`` (exact: a power-of-two factor). Then
    ``(m_a, sh_a) = quantize_multiplier(s_a / s_c)`` (<= 2**20; exactly 2**20 for the larger input),
    likewise for b, and ``(m_o, sh_o) = quantize_multiplier(s_c / s_out)``.
    """
    s_a, s_b, s_o = (np.float64(v) for v in (scale_a, scale_b, scale_out))
    if not (s_a > 0 and s_b > 0 and s_o > 0):
        raise ValueError(f"add_multipliers: scales must be > 0, got a={s_a!r} b={s_b!r} out={s_o!r}")
    s_c = np.ldexp(max(s_a, s_b), -ADD_COMMON_BITS)
    m_a, sh_a = quantize_multiplier(s_a / s_c)
    m_b, sh_b = quantize_multiplier(s_b / s_c)
    m_o, sh_o = quantize_multiplier(s_c / s_o)
    return AddRescale(int(m_a), int(sh_a), int(m_b), int(sh_b), int(m_o), int(sh_o))


def add_requantize(
    a: np.ndarray,
    b: np.ndarray,
    rescale: AddRescale,
    relu: bool = False,
    zero_points: tuple[int, int, int] = (0, 0, 0),
    bounds: tuple[int, int] | None = None,
) -> np.ndarray:
    """int8 a (scale s_a, zero point z_a) + int8 b (s_b, z_b) -> int8 (s_out, z_out), optional fused ReLU.

    Formula: ``a32 = requantize(a - z_a, m_a, sh_a)``, ``b32 = requantize(b - z_b, m_b, sh_b)`` (both in the
    common domain of scale ``s_c = max(s_a, s_b) / 2**20``),
    ``y = saturate(requantize(a32 + b32, m_o, sh_o) + z_out, lo, hi)`` with ``(lo, hi) = bounds``, or
    ``(z_out, 127)`` with ``relu`` and ``(-128, 127)`` without. Every step is one TVM ``q_multiply_shift``
    (per-tensor) and an int32 add or subtract, so compiled code can match it bit for bit. With all zero points
    0 (the symmetric path) the subtractions and the add are no-ops.
    Rounding: three roundings, each to nearest with ties toward +inf. The two input rescales err by at
    most ~0.56 common steps each, i.e. about ``2**-19 * max(s_a, s_b) / s_out`` output LSB together,
    so ``y`` equals the single rounding of the exact ``((a-z_a)*s_a + (b-z_b)*s_b)/s_out`` except when that
    value lies within this distance of a rounding tie (then it may differ by 1 LSB).
    Overflow bound: ``|a - z_a| <= 255``, so ``|a32|, |b32| <= 255 * 2**20 + 1 < 2**28`` and
    ``|a32 + b32| < 2**29 < 2**31`` (symmetric: ``2**28 + 2``).
    """
    a = np.asarray(a)
    b = np.asarray(b)
    for name, x in (("a", a), ("b", b)):
        if x.dtype.kind not in "iu" or (x.size and (x.min() < INT8_MIN or x.max() > INT8_MAX)):
            raise ValueError(f"add_requantize: {name} must hold int8 values, got dtype {x.dtype}")
    z_a, z_b, z_o = (int(z) for z in zero_points)
    if z_a:
        a = a.astype(np.int64) - z_a
    if z_b:
        b = b.astype(np.int64) - z_b
    a32 = requantize(a, rescale.multiplier_a, rescale.shift_a)
    b32 = requantize(b, rescale.multiplier_b, rescale.shift_b)
    y = requantize(a32 + b32, rescale.multiplier_out, rescale.shift_out)
    if bounds is None:
        bounds = (z_o if relu else INT8_MIN, INT8_MAX)
    if z_o:
        y = y + z_o
    return saturate(y, bounds[0], bounds[1]).astype(np.int8)
