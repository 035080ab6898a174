"""docs/int8.md's integer ops in torch int64: requantisation, saturation, the add rule, exact int8 conv.

The same formulas as fcos3d/int8/fixedpoint.py, on torch tensors (the torch int model); the
(multiplier, shift) pairs always come from fixedpoint, never recomputed here. No float on the value path
except the conv's float64 GEMM of integers, which is exact (below).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["requantize", "saturate_int8", "add_requantize", "conv_int8"]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def requantize(acc: torch.Tensor, multiplier: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """int32-valued ``acc`` -> ``round(acc * m * 2**(shift - 31))`` as int64, before saturation.

    Formula (int64, exact): ``ls = max(shift, 0)``, ``rs = max(-shift, 0)``,
    ``y = (((acc * m) << ls) + 2**(30 + rs)) >> (31 + rs)`` with the arithmetic (flooring) shift.
    Rounding: one rounding, to nearest, ties toward +inf (fixedpoint.requantize, TVM q_multiply_shift).
    Overflow bound: |acc| <= 2**31 and 0 <= m < 2**31 give |acc * m| < 2**62; the left shift is only
    non-zero when the result still fits int32 (fixedpoint's domain), so nothing leaves int64.
    ``multiplier``/``shift``: int64 tensors broadcastable against ``acc`` (e.g. (1, C, 1, 1) per channel).
    """
    acc = acc.to(torch.int64)
    m = multiplier.to(torch.int64)
    s = shift.to(torch.int64)
    # (acc * m) << ls == acc * (m << ls): one pass over acc instead of two (the constants are tiny tensors)
    m_eff = torch.bitwise_left_shift(m, s.clamp(min=0))
    total = 31 + (-s).clamp(min=0)
    half = torch.bitwise_left_shift(torch.ones_like(total), total - 1)
    prod = acc * m_eff
    prod += half
    return torch.bitwise_right_shift(prod, total)


def saturate_int8(y: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """``clamp(y, 0 if relu else -128, 127)`` as int8; no rounding (a fused ReLU clamps at the zero point)."""
    return y.clamp(0 if relu else -128, 127).to(torch.int8)


def _scalar(v: int, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(int(v), dtype=torch.int64, device=like.device)


def add_requantize(a: torch.Tensor, b: torch.Tensor, rescale, relu: bool = False) -> torch.Tensor:
    """int8 a + int8 b -> int8 by docs/int8.md 4.4 (``rescale``: fixedpoint.AddRescale).

    Formula: ``a32 = requantize(a, m_a, sh_a)``, ``b32 = requantize(b, m_b, sh_b)`` (common domain
    ``max(s_a, s_b) / 2**20``), ``y = saturate(requantize(a32 + b32, m_o, sh_o))``.
    Rounding: three roundings, each half up. Overflow bound: |a32 + b32| <= 2**28 + 2.
    """
    r = rescale
    a32 = requantize(a, _scalar(r.multiplier_a, a), _scalar(r.shift_a, a))
    b32 = requantize(b, _scalar(r.multiplier_b, b), _scalar(r.shift_b, b))
    y = requantize(a32 + b32, _scalar(r.multiplier_out, a), _scalar(r.shift_out, a))
    return saturate_int8(y, relu)


def conv_int8(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, pads, groups: int
) -> torch.Tensor:
    """int8 conv + int32 bias -> exact int64 accumulator (docs/int8.md 4.2), zero padding.

    Formula: ``acc = bias[o] + sum x * w`` over the window. The products are summed in a float conv:
    every partial sum, in any order, is an integer of magnitude <= K * 128 * max|w|, so float32 is exact
    when that bound is <= 2**24 and float64 when it is < 2**53 (K <= 1152 here); the dtype is chosen by
    the bound and converting back is lossless. ``pads = (top, left, bottom, right)``.
    Overflow bound: |acc| <= K * 128 * max|w| + |bias| (checked by the exporter against int32).
    """
    top, left, bottom, right = pads
    fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
    max_w = int(weight.abs().max()) if weight.numel() else 0
    bias_max = int(bias.abs().max()) if bias is not None and bias.numel() else 0
    # the bias joins the float sum when every partial sum (bias included) stays exact in that dtype
    bound = fan_in * 128 * max_w
    dtype = torch.float32 if bound <= 2**24 else torch.float64
    xd, wd = x.to(dtype), weight.to(dtype)
    exact = 2**24 if dtype == torch.float32 else 2**53
    bd = bias.to(dtype) if bias is not None and bound + bias_max <= exact else None
    if top == bottom and left == right:
        acc = F.conv2d(xd, wd, bd, stride, (top, left), 1, groups)
    else:
        acc = F.conv2d(F.pad(xd, (left, right, top, bottom)), wd, bd, stride, 0, 1, groups)
    acc = acc.to(torch.int64)
    if bias is not None and bd is None:
        acc = acc + bias.to(torch.int64).reshape(1, -1, 1, 1)
    return acc
