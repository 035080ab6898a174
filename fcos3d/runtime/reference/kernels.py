"""Integer kernels of the simulator: int8 conv -> int32, max pool, average-pool sums, nearest resize, in numpy.

Each kernel is the executable form of one op of docs/int8.md section 4; requantisation is not here but in
fcos3d/int8/fixedpoint.py (the one rounding rule). Docstrings state the formula, the rounding, the overflow bound.
"""

from __future__ import annotations

import numpy as np

from fcos3d.int8.fixedpoint import INT8_MIN, INT32_MAX, accumulator_bound
from fcos3d.int8.ops import conv_output_size, pool_output_size

__all__ = [
    "FLOAT32_EXACT",
    "FLOAT64_EXACT",
    "pad_nchw",
    "im2col",
    "conv2d_int8",
    "maxpool2d_int8",
    "window_sum_int32",
    "resize_nearest",
]

# Integers of magnitude <= these are exact in float32 / float64 (24 / 53 significand bits).
FLOAT32_EXACT = 2**24
FLOAT64_EXACT = 2**53


def _require_int8(name: str, x: np.ndarray, ndim: int) -> None:
    if x.dtype != np.int8 or x.ndim != ndim:
        raise TypeError(f"{name} must be an int8 array with {ndim} dims, got {x.dtype} with shape {x.shape}")


def pad_nchw(x: np.ndarray, pads: tuple[int, int, int, int], value: int) -> np.ndarray:
    """Pad the two spatial axes of NCHW ``x``; ``pads = (top, left, bottom, right)`` as ONNX orders them."""
    top, left, bottom, right = pads
    if min(pads) < 0:
        raise ValueError(f"negative pads {pads} are not supported")
    if not any(pads):
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def _conv_out_hw(x_hw, kernel, strides, pads, dilations) -> tuple[int, int]:
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    return (
        conv_output_size(x_hw[0], dh * (kh - 1) + 1, sh, pads[0], pads[2]),
        conv_output_size(x_hw[1], dw * (kw - 1) + 1, sw, pads[1], pads[3]),
    )


def im2col(
    x: np.ndarray,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    pads: tuple[int, int, int, int],
    dtype: np.dtype | type = np.float64,
    pad_value: int = 0,
    dilations: tuple[int, int] = (1, 1),
) -> tuple[np.ndarray, tuple[int, int]]:
    """Conv input patches as columns: (N, C, H, W) -> (N, C*kh*kw, Ho*Wo) in ``dtype``, padded by ``pad_value``.

    Row ``c*kh*kw + i*kw + j`` of column ``p = oy*Wo + ox`` holds ``x_pad[n, c, oy*sh + i*dh, ox*sw + j*dw]``:
    the order of a flattened OIHW weight, so ``conv = W.reshape(O, -1) @ cols``. A copy (no rounding:
    int8 values are exact in every float type). Returns ``(cols, (Ho, Wo))``.
    """
    n, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = strides
    dh, dw = dilations
    ho, wo = _conv_out_hw((h, w), kernel, strides, pads, dilations)
    xp = pad_nchw(x, pads, pad_value)
    cols = np.empty((n, c, kh * kw, ho, wo), dtype=dtype)
    for i in range(kh):
        for j in range(kw):
            y0, x0 = i * dh, j * dw
            cols[:, :, i * kw + j] = xp[:, :, y0 : y0 + sh * (ho - 1) + 1 : sh, x0 : x0 + sw * (wo - 1) + 1 : sw]
    return cols.reshape(n, c * kh * kw, ho * wo), (ho, wo)


def conv2d_int8(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    strides: tuple[int, int] = (1, 1),
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    groups: int = 1,
    pad_value: int = 0,
    dilations: tuple[int, int] = (1, 1),
) -> np.ndarray:
    """int8 conv with int32 bias -> exact int32 accumulator (docs/int8.md 4.2, 4.3).

    Formula: ``acc[n, o, y, x] = bias[o] + sum_{c, i, j} x_pad[n, g*Cg + c, y*sh + i*dh, x*sw + j*dw] * w[o, c, i, j]``
    with ``g = o // (O / groups)``, ``Cg = C / groups``, padding by ``pad_value`` (the input's zero point,
    the real 0, so padding is exact; the caller folds ``-pad_value * sum(w)`` into ``bias``).
    ``pads = (top, left, bottom, right)``.
    Rounding: none; the result is the exact integer.
    Overflow bound: ``|acc| <= K * 128 * max|w| + max|bias|`` (``fixedpoint.accumulator_bound``,
    ``K = Cg * kh * kw``); ValueError if it exceeds int32 (outside the contract). The products are summed
    in a float GEMM: every partial sum, in any order, is an integer of magnitude <= ``K * 128 * max|w|``,
    so float32 is exact when that is < 2**24 and float64 when < 2**53 (the dtype is chosen by the bound;
    the bias is added afterwards in int32). Depthwise-style convs (``Cg == 1``) accumulate their
    ``kh * kw`` taps directly in int32 instead.

    Shapes: x (N, C, H, W) int8, weight (O, C/groups, kh, kw) int8, bias (O,) int32 or None ->
    (N, O, Ho, Wo) int32.
    """
    x = np.asarray(x)
    weight = np.asarray(weight)
    _require_int8("conv2d_int8: x", x, 4)
    _require_int8("conv2d_int8: weight", weight, 4)
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    if groups < 1 or c != cg * groups or o % groups:
        raise ValueError(
            f"conv2d_int8: input channels {c}, weight {weight.shape} and groups {groups} do not agree "
            "(need C == C_in/groups * groups and C_out divisible by groups)"
        )
    if bias is None:
        bias = np.zeros(o, dtype=np.int32)
    bias = np.asarray(bias)
    if bias.dtype.kind not in "iu" or bias.shape != (o,):
        raise TypeError(f"conv2d_int8: bias must be an integer array of shape ({o},), got {bias.dtype} {bias.shape}")
    fan_in = cg * kh * kw
    max_w = int(np.abs(weight.astype(np.int16)).max()) if weight.size else 0
    max_b = int(np.abs(bias.astype(np.int64)).max()) if bias.size else 0
    products_bound = accumulator_bound(fan_in, 0, max_w)
    if products_bound + max_b > INT32_MAX:
        raise ValueError(
            f"conv2d_int8: accumulator bound {products_bound} + |bias| {max_b} exceeds int32 "
            f"(fan-in {fan_in}); the quantiser must keep |bias| < 2**31 - K*128*127 (docs/int8.md 4.2)"
        )
    bias32 = bias.astype(np.int32).reshape(1, o, 1, 1)
    sh, sw = strides
    if cg == 1:  # depthwise (possibly with a channel multiplier): kh*kw int32 multiply-adds per output
        return _depthwise_int32(x, weight, bias32, strides, pads, pad_value, dilations)
    dtype = np.float32 if products_bound < FLOAT32_EXACT else np.float64
    assert products_bound < FLOAT64_EXACT  # implied by the int32 check above; kept as the stated precondition
    if kh == kw == 1 and strides == (1, 1) and not any(pads):
        cols, (ho, wo) = x.reshape(n, c, h * w).astype(dtype), (h, w)  # (N, C, H*W): 1x1 needs no patches
    else:
        cols, (ho, wo) = im2col(x, (kh, kw), strides, pads, dtype, pad_value, dilations)  # (N, C*kh*kw, Ho*Wo)
    cols = cols.reshape(n, groups, fan_in, ho * wo)  # (N, G, K, P)
    wmat = weight.reshape(groups, o // groups, fan_in).astype(dtype)  # (G, O/G, K)
    acc = np.matmul(wmat, cols)  # (N, G, O/G, P), exact integers
    return acc.reshape(n, o, ho, wo).astype(np.int32) + bias32


# Output elements per block of the depthwise loop: the block's int32 input and accumulator stay in cache.
_DEPTHWISE_BLOCK = 2**16


def _depthwise_int32(
    x: np.ndarray,
    weight: np.ndarray,
    bias32: np.ndarray,
    strides: tuple[int, int],
    pads: tuple[int, int, int, int],
    pad_value: int = 0,
    dilations: tuple[int, int] = (1, 1),
) -> np.ndarray:
    """The ``C_in / groups == 1`` case of ``conv2d_int8``, tap by tap in int32 over blocks of channels.

    Output channel ``o`` reads input channel ``o // (O / C)``. Exact: each partial sum is bounded by
    ``conv2d_int8``'s checked accumulator bound, which fits int32.
    """
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    sh, sw = strides
    dh, dw = dilations
    ho, wo = _conv_out_hw((h, w), (kh, kw), strides, pads, dilations)
    xp = pad_nchw(x, pads, pad_value)
    taps = weight.reshape(o, kh * kw).astype(np.int32)
    out = np.empty((n, o, ho, wo), dtype=np.int32)
    step = max(1, _DEPTHWISE_BLOCK // (n * ho * wo))
    for o0 in range(0, o, step):
        o1 = min(o, o0 + step)
        src = xp[:, np.arange(o0, o1) // (o // c)].astype(np.int32)  # (N, B, Hp, Wp)
        acc = out[:, o0:o1]  # (N, B, Ho, Wo) view
        acc[...] = bias32[:, o0:o1]
        tmp = np.empty_like(acc)
        for i in range(kh):
            for j in range(kw):
                y0, x0 = i * dh, j * dw
                tap = src[:, :, y0 : y0 + sh * (ho - 1) + 1 : sh, x0 : x0 + sw * (wo - 1) + 1 : sw]
                np.multiply(tap, taps[o0:o1, i * kw + j].reshape(1, -1, 1, 1), out=tmp)
                acc += tmp
    return out


def _pool_geometry(x_hw, kernel, strides, pads, ceil_mode, dilations):
    """(Ho, Wo) and the (top, left, bottom, right) pads that make every window whole (ceil-mode windows past
    the padded input get extra bottom/right padding, which the caller fills with a value that never counts)."""
    (h, w), (kh, kw), (sh, sw), (dh, dw) = x_hw, kernel, strides, dilations
    ho = pool_output_size(h, kh, sh, pads[0], pads[2], ceil_mode, dh)
    wo = pool_output_size(w, kw, sw, pads[1], pads[3], ceil_mode, dw)
    bottom = max(pads[2], (ho - 1) * sh + dh * (kh - 1) + 1 - h - pads[0])
    right = max(pads[3], (wo - 1) * sw + dw * (kw - 1) + 1 - w - pads[1])
    return (ho, wo), (pads[0], pads[1], bottom, right)


def maxpool2d_int8(
    x: np.ndarray,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    ceil_mode: bool = False,
    dilations: tuple[int, int] = (1, 1),
) -> np.ndarray:
    """int8 max pool (docs/int8.md 4.5); scale and zero point are unchanged.

    Formula: ``y[n, c, oy, ox] = max_{i, j} x_pad[n, c, oy*sh + i*dh, ox*sw + j*dw]`` with ``x_pad`` padded by
    -128; output size ``ops.pool_output_size`` (floor, or ONNX's ceil mode, whose last windows may run past
    the padded input: they are padded by -128 too, i.e. clipped).
    Why -128 is ONNX's padding: ONNX MaxPool pads with -inf. A window holding at least one real element
    has a max >= -128 anyway, so the -128 pads never win; a window made of padding only (possible in
    ONNX when a pad >= the kernel) gives -inf there, which the following QuantizeLinear saturates to
    -128 (and onnxruntime's int8 MaxPool pads with the int8 minimum): -128 again. So the result equals
    ONNX in every case. Max commutes with ``q -> (q - z) * s`` (increasing), so DQ -> MaxPool -> Q(same s, z) is
    this, for any zero point (a uint8 tensor's -inf saturates to 0, i.e. -128 in int8 form).
    Rounding: none. Overflow: none (a selection of input values). Shapes: (N, C, H, W) -> (N, C, Ho, Wo).
    """
    x = np.asarray(x)
    _require_int8("maxpool2d_int8: x", x, 4)
    kh, kw = kernel
    sh, sw = strides
    dh, dw = dilations
    (ho, wo), full_pads = _pool_geometry(x.shape[2:], kernel, strides, pads, ceil_mode, dilations)
    xp = pad_nchw(x, full_pads, INT8_MIN)
    y = None
    for i in range(kh):
        for j in range(kw):
            y0, x0 = i * dh, j * dw
            tap = xp[:, :, y0 : y0 + sh * (ho - 1) + 1 : sh, x0 : x0 + sw * (wo - 1) + 1 : sw]
            y = tap.copy() if y is None else np.maximum(y, tap, out=y)
    return y


def window_sum_int32(
    x: np.ndarray,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    pads: tuple[int, int, int, int],
    ceil_mode: bool,
    zero_point: int,
) -> np.ndarray:
    """The integer sums of an average pool (docs/int8.md 4.7): ``sum_{window} (x - z)``, padding adding 0.

    Formula: ``s[n, c, oy, ox] = sum_{i, j} (x_pad[n, c, oy*sh + i, ox*sw + j] - z)`` where the padding (and
    the part of a ceil-mode window past the padded input) holds ``z`` (the real 0): it adds nothing.
    Rounding: none. Overflow bound: ``|s| <= kh * kw * 255`` (int32 for windows up to 8,421,504 elements).
    Shapes: (N, C, H, W) int8 -> (N, C, Ho, Wo) int32.
    """
    x = np.asarray(x)
    _require_int8("window_sum_int32: x", x, 4)
    kh, kw = kernel
    sh, sw = strides
    if kh * kw * 255 > INT32_MAX:
        raise ValueError(f"window_sum_int32: a {kh}x{kw} window can overflow int32")
    (ho, wo), full_pads = _pool_geometry(x.shape[2:], kernel, strides, pads, ceil_mode, (1, 1))
    xp = pad_nchw(x.astype(np.int32) - int(zero_point), full_pads, 0)
    acc = np.zeros((x.shape[0], x.shape[1], ho, wo), dtype=np.int32)
    for i in range(kh):
        for j in range(kw):
            acc += xp[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]
    return acc


def resize_nearest(x: np.ndarray, index_h: np.ndarray, index_w: np.ndarray) -> np.ndarray:
    """Nearest resize as a gather: ``y[n, c, i, j] = x[n, c, index_h[i], index_w[j]]`` (docs/int8.md 4.5).

    The indices come from ``fcos3d.int8.ops.ResizeNearest.index_maps``. Rounding: none; overflow: none (a
    copy); the scale is unchanged. Shapes: (N, C, H, W) -> (N, C, len(index_h), len(index_w)); any dtype.
    """
    x = np.asarray(x)
    return np.take(np.take(x, index_h, axis=2), index_w, axis=3)
