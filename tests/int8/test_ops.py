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
