"""Tests of fcos3d/runtime/reference/kernels.py: every kernel equals a slow loop reference exactly.

The references are the definitions written as Python loops (int64 dot products, index checks for padding,
ONNX's -inf max-pool padding); no tolerance anywhere.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fcos3d.int8 import fixedpoint as fx
from fcos3d.int8.ops import nearest_indices
from fcos3d.runtime.reference import kernels

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True)


def conv_loops(x, w, b, strides, pads, groups, pad_value=0, dilations=(1, 1)):
    """Direct definition: one Python dot product per output element, int64, padding (by ``pad_value``) by index
    checks, taps ``dilations`` apart."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    dh, dw = dilations
    ho = (h + pads[0] + pads[2] - dh * (kh - 1) - 1) // strides[0] + 1
    wo = (wd + pads[1] + pads[3] - dw * (kw - 1) - 1) // strides[1] + 1
    out = np.zeros((n, o, ho, wo), np.int64)
    for bn in range(n):
        for oc in range(o):
            g = oc // og
            for oy in range(ho):
                for ox in range(wo):
                    acc = int(b[oc])
                    for ci in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                yy, xx = oy * strides[0] - pads[0] + i * dh, ox * strides[1] - pads[1] + j * dw
                                inside = 0 <= yy < h and 0 <= xx < wd
                                v = int(x[bn, g * cg + ci, yy, xx]) if inside else pad_value
                                acc += v * int(w[oc, ci, i, j])
                    out[bn, oc, oy, ox] = acc
    return out


def _pool_size(size, k, s, pb, pe, ceil, d=1):
    """ONNX's output size, written out: floor or ceil of (size + pads - d*(k-1) - 1) / s, plus one; in ceil
    mode a last window starting in the end padding is dropped."""
    span = size + pb + pe - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    return out - 1 if ceil and (out - 1) * s >= size + pb else out


def maxpool_loops(x, kernel, strides, pads, ceil=False, dilations=(1, 1)):
    """ONNX definition: max over the real elements of each window; a window of padding only is -inf,
    which the following QuantizeLinear saturates to -128."""
    n, c, h, w = x.shape
    ho = _pool_size(h, kernel[0], strides[0], pads[0], pads[2], ceil, dilations[0])
    wo = _pool_size(w, kernel[1], strides[1], pads[1], pads[3], ceil, dilations[1])
    out = np.zeros((n, c, ho, wo), np.int8)
    for idx in np.ndindex(n, c, ho, wo):
        bn, ch, oy, ox = idx
        vals = [
            x[bn, ch, yy, xx]
            for yy in range(
                oy * strides[0] - pads[0], oy * strides[0] - pads[0] + kernel[0] * dilations[0], dilations[0]
            )
            for xx in range(
                ox * strides[1] - pads[1], ox * strides[1] - pads[1] + kernel[1] * dilations[1], dilations[1]
            )
            if 0 <= yy < h and 0 <= xx < w
        ]
        out[idx] = max(vals) if vals else -128
    return out


def window_sum_loops(x, kernel, strides, pads, ceil, zero_point):
    """sum of (x - z) over the real elements of each window (padding is the real zero)."""
    n, c, h, w = x.shape
    ho = _pool_size(h, kernel[0], strides[0], pads[0], pads[2], ceil)
    wo = _pool_size(w, kernel[1], strides[1], pads[1], pads[3], ceil)
    out = np.zeros((n, c, ho, wo), np.int64)
    for idx in np.ndindex(n, c, ho, wo):
        bn, ch, oy, ox = idx
        for yy in range(oy * strides[0] - pads[0], oy * strides[0] - pads[0] + kernel[0]):
            for xx in range(ox * strides[1] - pads[1], ox * strides[1] - pads[1] + kernel[1]):
                if 0 <= yy < h and 0 <= xx < w:
                    out[idx] += int(x[bn, ch, yy, xx]) - zero_point
    return out


@st.composite
def conv_problems(draw):
    n = draw(st.integers(1, 2))
    groups = draw(st.integers(1, 3))
    cg = draw(st.integers(1, 3))
    og = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))  # asymmetric pads too
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    h = draw(st.integers(max(1, kh - pads[0] - pads[2]), 7))
    w = draw(st.integers(max(1, kw - pads[1] - pads[3]), 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    extreme = draw(st.booleans())  # all -128 inputs and +-127 weights: the accumulator bound itself
    if extreme:
        x = np.full((n, groups * cg, h, w), -128, np.int8)
        wt = rng.choice(np.array([-127, 127], np.int8), size=(groups * og, cg, kh, kw))
    else:
        x = rng.integers(-128, 128, size=(n, groups * cg, h, w), dtype=np.int8)
        wt = rng.integers(-127, 128, size=(groups * og, cg, kh, kw), dtype=np.int8)
    b = rng.integers(-(2**20), 2**20, size=groups * og).astype(np.int32)
    return x, wt, b, strides, pads, groups


@SETTINGS
@given(conv_problems())
def test_conv2d_int8_equals_loops(problem):
    x, w, b, strides, pads, groups = problem
    got = kernels.conv2d_int8(x, w, b, strides, pads, groups)
    assert got.dtype == np.int32
    assert np.array_equal(got, conv_loops(x, w, b, strides, pads, groups))


def test_conv2d_int8_float64_path_is_exact_at_the_bound():
    """K = 1152 (EfficientNet's largest fan-in): |acc| = 1152*128*127 > 2**24 needs the float64 GEMM."""
    x = np.full((1, 1152, 2, 2), -128, np.int8)
    w = np.full((3, 1152, 1, 1), 127, np.int8)
    w[1] = -127
    got = kernels.conv2d_int8(x, w, np.array([0, 5, -(2**20)], np.int32))
    bound = fx.accumulator_bound(1152)
    assert bound > kernels.FLOAT32_EXACT
    assert np.array_equal(got[0, :, 0, 0], [-bound, bound + 5, -bound - 2**20])


def test_conv2d_int8_depthwise_multiplier_equals_loops():
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(2, 3, 9, 8), dtype=np.int8)
    w = rng.integers(-127, 128, size=(6, 1, 5, 5), dtype=np.int8)  # 2 output channels per input channel
    b = rng.integers(-1000, 1000, size=6).astype(np.int32)
    got = kernels.conv2d_int8(x, w, b, (2, 1), (2, 1, 2, 3), groups=3)
    assert np.array_equal(got, conv_loops(x, w, b, (2, 1), (2, 1, 2, 3), 3))


def test_conv2d_int8_rejects_accumulators_beyond_int32():
    x = np.zeros((1, 4, 3, 3), np.int8)
    w = np.ones((1, 4, 3, 3), np.int8)
    with pytest.raises(ValueError, match="exceeds int32"):
        kernels.conv2d_int8(x, w, np.array([2**31 - 100], np.int32))


@SETTINGS
@given(
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(1, 3),
    st.tuples(*[st.integers(0, 3)] * 4),
    st.integers(0, 2**32 - 1),
)
def test_maxpool2d_int8_equals_onnx_definition(kh, kw, sh, sw, pads, seed):
    """Padding with -128 equals ONNX's -inf padding (even for windows made of padding only)."""
    rng = np.random.default_rng(seed)
    h = max(1, kh - pads[0] - pads[2]) + int(rng.integers(0, 5))
    w = max(1, kw - pads[1] - pads[3]) + int(rng.integers(0, 5))
    x = rng.integers(-128, 128, size=(2, 2, h, w), dtype=np.int8)
    if rng.random() < 0.3:
        x[x < 0] = -128  # many -128 inputs next to -128 padding
    got = kernels.maxpool2d_int8(x, (kh, kw), (sh, sw), pads)
    assert got.dtype == np.int8 and np.array_equal(got, maxpool_loops(x, (kh, kw), (sh, sw), pads))


@SETTINGS
@given(conv_problems(), st.integers(-128, 127), st.integers(1, 3), st.integers(1, 3))
def test_conv2d_int8_with_pad_value_and_dilation_equals_loops(problem, pad_value, dh, dw):
    """The asymmetric path's padding by the input zero point, and dilated taps (docs/int8.md 4.2)."""
    x, w, b, strides, pads, groups = problem
    kh, kw = w.shape[2:]
    if x.shape[2] + pads[0] + pads[2] < dh * (kh - 1) + 1 or x.shape[3] + pads[1] + pads[3] < dw * (kw - 1) + 1:
        return  # the dilated window does not fit
    got = kernels.conv2d_int8(x, w, b, strides, pads, groups, pad_value, (dh, dw))
    assert np.array_equal(got, conv_loops(x, w, b, strides, pads, groups, pad_value, (dh, dw)))


@SETTINGS
@given(
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(1, 3),
    st.tuples(*[st.integers(0, 1)] * 4),
    st.booleans(),
    st.integers(1, 2),
    st.integers(0, 2**32 - 1),
)
def test_maxpool2d_int8_ceil_mode_and_dilation_equal_onnx_definition(k, s, extra, pads, ceil, d, seed):
    rng = np.random.default_rng(seed)
    h, w = d * (k - 1) + extra, d * (k - 1) + extra + 1
    x = rng.integers(-128, 128, size=(1, 2, h, w), dtype=np.int8)
    got = kernels.maxpool2d_int8(x, (k, k), (s, s), pads, ceil, (d, d))
    assert np.array_equal(got, maxpool_loops(x, (k, k), (s, s), pads, ceil, (d, d)))


@SETTINGS
@given(
    st.integers(1, 3),
    st.integers(1, 3),
    st.tuples(*[st.integers(0, 1)] * 4),
    st.booleans(),
    st.integers(-128, 127),
    st.integers(0, 2**32 - 1),
)
def test_window_sums_equal_loops(k, s, pads, ceil, zero_point, seed):
    """Average-pool sums of x - z; padding and ceil-mode overhang add nothing (docs/int8.md 4.7)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(1, 2, k + int(rng.integers(0, 4)), k + int(rng.integers(0, 4))), dtype=np.int8)
    got = kernels.window_sum_int32(x, (k, k), (s, s), pads, ceil, zero_point)
    assert got.dtype == np.int32 and np.array_equal(got, window_sum_loops(x, (k, k), (s, s), pads, ceil, zero_point))


def test_nearest_upsample_x2_is_floor_half():
    """torch's nearest x2 (asymmetric, floor): y[i, j] = x[i // 2, j // 2], by loops."""
    x = np.arange(2 * 3 * 4 * 5, dtype=np.int64).reshape(2, 3, 4, 5).astype(np.int8)
    ih = nearest_indices(4, 8, Fraction(2))
    iw = nearest_indices(5, 10, Fraction(2))
    y = kernels.resize_nearest(x, ih, iw)
    for idx in np.ndindex(y.shape):
        n, c, i, j = idx
        assert y[idx] == x[n, c, i // 2, j // 2]


def test_nearest_indices_odd_sizes_equal_crop_of_x2():
    """The model's odd-size path (size = like's size): floor(i * in / out) == floor(i / 2) when in == ceil(out / 2)."""
    for out in range(1, 40):
        inp = (out + 1) // 2
        got = nearest_indices(inp, out, Fraction(out, inp))
        assert np.array_equal(got, np.arange(out) // 2)
