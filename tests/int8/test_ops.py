"""fcos3d/int8/ops.py: the op classes' own rules (nearest-resize indices, shapes, input quantisation), exactly."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from fcos3d.int8.ops import MaxPool, ResizeNearest, nearest_indices, quantize_input


def test_a_resize_has_exactly_one_size_rule():
    for kwargs in ({}, {"scales": (Fraction(2), Fraction(2)), "like": "y"}, {"sizes": (1, 1, 2, 2), "like": "y"}):
        with pytest.raises(ValueError, match="exactly one of scales, sizes and like"):
            ResizeNearest("r", "x", "out", kwargs.get("scales"), kwargs.get("sizes"), like=kwargs.get("like"))
    with pytest.raises(ValueError, match="unsupported modes"):
        ResizeNearest("r", "x", "out", None, (1, 1, 2, 2), coordinate_mode="bilinear")


def test_like_resize_is_floor_of_dst_times_in_over_out():
    """The torch int model's former rule, ``src = floor(dst * in / out)`` in integers, for every size to 40."""
    op = ResizeNearest("r", "x", "out", None, None, like="y")
    assert op.inputs == ("x", "y")
    for out in range(1, 41):
        for inp in range(1, out + 1):
            ih, iw = op.index_maps((1, 1, inp, inp), (1, 1, out, out))
            want = np.arange(out) * inp // out
            assert np.array_equal(ih, want) and np.array_equal(iw, want)
    with pytest.raises(ValueError, match="pass its shape"):
        op.index_maps((1, 1, 2, 2))


def test_scales_sizes_and_like_agree_on_x2():
    sh = (2, 3, 5, 7)
    forms = [
        ResizeNearest("r", "x", "o", (Fraction(2), Fraction(2)), None),
        ResizeNearest("r", "x", "o", None, (2, 3, 10, 14)),
    ]
    like = ResizeNearest("r", "x", "o", None, None, like="y").index_maps(sh, (2, 3, 10, 14))
    for op in forms:
        assert op.output_shape(sh) == (2, 3, 10, 14)
        assert all(np.array_equal(a, b) for a, b in zip(op.index_maps(sh), like))
    assert np.array_equal(like[0], nearest_indices(5, 10, Fraction(2)))


def test_maxpool_output_shape_is_floor():
    assert MaxPool("p", "x", "o", (3, 3), (2, 2), (1, 1, 1, 1)).output_shape((1, 8, 5, 6)) == (1, 8, 3, 3)


def test_quantize_input_rounds_half_up_and_equals_the_torch_int_models():
    import torch

    from fcos3d.quant.intmodel import IntInferModel

    u8 = np.arange(256, dtype=np.float64).reshape(1, 1, 16, 16)
    camera = (u8 - 128) / 128
    assert np.array_equal(quantize_input(camera, 1 / 128), (u8 - 128).astype(np.int8))
    ties = np.array([0.5, -0.5, 1.5, -1.5, 200.0, -200.0]) / 128
    assert quantize_input(ties, 1 / 128).tolist() == [1, 0, 2, -1, 127, -128]
    img = torch.from_numpy(np.random.default_rng(1).normal(0, 0.6, (1, 3, 8, 8)).astype(np.float32))
    assert np.array_equal(IntInferModel.quantize_input(img).numpy(), quantize_input(img.numpy(), 1 / 128))
    with pytest.raises(ValueError, match="NaN"):
        quantize_input(np.array([np.nan]), 1 / 128)


def test_clip_bounds_round_half_up_at_the_output_scale_and_zero_point():
    from fcos3d.int8.ops import clip_bounds

    assert clip_bounds(0.0, 6.0, 6 / 127, 0) == (0, 127)  # ReLU6 whose range is the int8 range
    assert clip_bounds(0.0, 6.0, 0.1, 0) == (0, 60)
    assert clip_bounds(0.0, None, 0.1, -128) == (-128, 127)  # uint8 zero point 0: ReLU is the saturation
    assert clip_bounds(0.25, 0.75, 0.5, 3) == (4, 5)  # 0.5 -> 1 and 1.5 -> 2: ties round up
    assert clip_bounds(-1e9, 1e9, 0.1, 0) == (-128, 127)
    assert clip_bounds(float("-inf"), float("inf"), 0.1, 5) == (-128, 127)
    assert clip_bounds(3.0, 1.0, 1.0, 0) == (1, 1)  # min > max: ONNX gives max


def test_reshape_kinds_and_transpose_shapes():
    from fcos3d.int8.ops import Reshape, Transpose

    x = (2, 3, 4, 5)
    assert Reshape("r", "x", "y", "flatten", (1,)).output_shape(x) == (2, 60)
    assert Reshape("r", "x", "y", "flatten", (-1,)).output_shape(x) == (24, 5)
    assert Reshape("r", "x", "y", "reshape", (0, -1, 10)).output_shape(x) == (2, 6, 10)
    assert Reshape("r", "x", "y", "squeeze", ()).output_shape((1, 3, 1, 5)) == (3, 5)
    assert Reshape("r", "x", "y", "squeeze", (-2,)).output_shape((1, 3, 1, 5)) == (1, 3, 5)
    assert Reshape("r", "x", "y", "unsqueeze", (0, -1)).output_shape((3, 5)) == (1, 3, 5, 1)
    assert Transpose("t", "x", "y", (0, 2, 3, 1)).output_shape(x) == (2, 4, 5, 3)
    with pytest.raises(ValueError, match="cannot reshape"):
        Reshape("r", "x", "y", "reshape", (7, -1)).output_shape(x)
    with pytest.raises(ValueError, match="kind"):
        Reshape("r", "x", "y", "view", ())


def test_pool_output_size_ceil_mode_drops_a_window_that_starts_in_the_padding():
    from fcos3d.int8.ops import pool_output_size

    assert pool_output_size(8, 3, 2, 0, 0) == 3 and pool_output_size(8, 3, 2, 0, 0, ceil_mode=True) == 4
    assert pool_output_size(6, 2, 2, 1, 1, ceil_mode=True) == 4  # ceil(6/2)+1 = 4, its start 6 < 6 + 1
    assert pool_output_size(5, 2, 2, 0, 1, ceil_mode=True) == 3
    assert pool_output_size(4, 1, 2, 0, 1, ceil_mode=True) == 2  # the 3rd window would start in the end pad
    assert pool_output_size(9, 2, 1, 0, 0, dilation=2) == 7


def test_average_pool_counts_and_multipliers():
    from fcos3d.int8 import fixedpoint as fx
    from fcos3d.int8.ops import AveragePool

    pool = AveragePool("p", "x", "y", (3, 3), (2, 2), (1, 1, 1, 1), True, False, 0.02, 0, 0.01, 0)
    assert pool.output_shape((1, 2, 8, 8)) == (1, 2, 5, 5)
    counts = pool.counts((1, 2, 8, 8))  # exclude pad: 2 at the first row/column, 1 past the end (ceil)
    assert counts[0].tolist() == [4, 6, 6, 6, 2] and counts[4].tolist() == [2, 3, 3, 3, 1]
    include = AveragePool("p", "x", "y", (3, 3), (2, 2), (1, 1, 1, 1), True, True, 0.02, 0, 0.01, 0)
    assert include.counts((1, 2, 8, 8))[0].tolist() == [9, 9, 9, 9, 6]  # clipped at the padded input's end
    m, sh = pool.requant_tables((1, 2, 8, 8))
    want = fx.quantize_multiplier(np.float64(0.02) / (np.float64(0.01) * counts.astype(np.float64)))
    assert np.array_equal(m, want[0]) and np.array_equal(sh, want[1])
    glob = AveragePool("g", "x", "y", None, (1, 1), (0, 0, 0, 0), False, False, 0.02, 0, 0.01, 0)
    assert glob.output_shape((1, 2, 7, 5)) == (1, 2, 1, 1) and glob.counts((1, 2, 7, 5)).tolist() == [[35]]
