"""kernels: the packed operands of the int8 GEMM byte for byte against numpy (weights, padded input, im2col), the
flipped pad_split of the x86 depthwise kernel, and the nearest upsample by whole factors."""

from __future__ import annotations

import numpy as np
import pytest
import tvm

from fcos3d.compiler.kernels import (
    DenseConvSpec,
    im2col_words,
    pack_dense_weight,
    pad_nchw,
    pad_split,
    upsample_nearest,
)

TARGET = tvm.target.Target({"kind": "llvm"})


def _run(func, *arrays, out_shape, out_dtype):
    lib = tvm.tirx.build(func.with_attr("global_symbol", "kernel"), target=TARGET)
    out = tvm.runtime.tensor(np.zeros(out_shape, dtype=out_dtype))
    lib(*(tvm.runtime.tensor(a) for a in arrays), out)
    return out.numpy()


def test_weight_words_are_little_endian_groups_of_4_with_the_offset_correction():
    w = np.random.default_rng(0).integers(-128, 128, size=(3, 2, 3, 1), dtype=np.int8)  # R = 6: one padded word
    words, correction = pack_dense_weight(w, offset=128)
    assert words.shape == (3, 2) and words.dtype == np.int32
    flat = np.zeros((3, 8), dtype=np.int8)
    flat[:, :6] = w.reshape(3, 6)
    assert np.array_equal(words.view(np.int8).reshape(3, 8), flat)
    assert np.array_equal(correction, 128 * w.reshape(3, -1).astype(np.int64).sum(axis=1))


@pytest.mark.parametrize(
    ("pads", "stride"), [((1, 1, 1, 1), 1), ((1, 1, 1, 1), 2), ((2, 0, 1, 3), 2), ((0, 0, 0, 0), 1)]
)
def test_pad_split_is_the_zero_padded_input_split_by_column_phase(pads, stride):
    x = np.random.default_rng(1).integers(-128, 128, size=(1, 3, 5, 9), dtype=np.int8)
    top, left, bottom, right = pads
    padded = np.pad(x[0], ((0, 0), (top, bottom), (left, right)))
    wq = -(-padded.shape[2] // stride)
    padded = np.pad(padded, ((0, 0), (0, 0), (0, wq * stride - padded.shape[2])))
    want = np.stack([padded[:, :, ph::stride] for ph in range(stride)], axis=2)
    got = _run(pad_split(3, (5, 9), pads, stride), x, out_shape=want.shape, out_dtype=np.int8)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("flip", [False, True])
def test_pad_split_pads_with_the_zero_point(flip):
    x = np.random.default_rng(5).integers(-128, 128, size=(1, 2, 4, 7), dtype=np.int8)
    padded = np.pad(x[0].astype(np.int16), ((0, 0), (2, 1), (1, 4)), constant_values=-37)  # 12 wide: 2 x 6
    want = np.stack([padded[:, :, 0::2], padded[:, :, 1::2]], axis=2)
    if flip:
        want = want + 128
    want = want.astype(np.uint8).view(np.int8) if flip else want.astype(np.int8)
    got = _run(pad_split(2, (4, 7), (2, 1, 1, 4), 2, flip, value=-37), x, out_shape=want.shape, out_dtype=np.int8)
    assert np.array_equal(got, want)


@pytest.mark.parametrize(
    ("hw", "pads", "value"), [((4, 7), (1, 1, 1, 1), 3), ((3, 70), (0, 2, 1, 0), -128), ((1, 1), (2, 0, 0, 2), 127)]
)
def test_pad_nchw_is_numpys_constant_pad(hw, pads, value):
    x = np.random.default_rng(6).integers(-128, 128, size=(1, 3, *hw), dtype=np.int8)
    top, left, bottom, right = pads
    want = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)
    got = _run(pad_nchw(3, hw, pads, value), x, out_shape=want.shape, out_dtype=np.int8)
    assert np.array_equal(got, want)


def test_flipped_pad_split_is_the_padded_input_plus_128_as_uint8():
    x = np.random.default_rng(3).integers(-128, 128, size=(1, 2, 4, 7), dtype=np.int8)
    x[0, 0, 0, :2] = [-128, 127]
    want = (np.pad(x[0].astype(np.int16), ((0, 0), (1, 1), (1, 2))) + 128).astype(np.uint8).view(np.int8)
    got = _run(pad_split(2, (4, 7), (1, 1, 1, 2), 1, flip=True), x, out_shape=(2, 6, 1, 10), out_dtype=np.int8)
    assert np.array_equal(got[:, :, 0], want)


@pytest.mark.parametrize(("hw", "factors"), [((3, 5), (2, 2)), ((2, 70), (2, 2)), ((4, 3), (1, 3)), ((3, 33), (3, 1))])
def test_upsample_nearest_repeats_rows_and_columns(hw, factors):
    h, w = hw
    x = np.random.default_rng(4).integers(-128, 128, size=(1, 3, h, w), dtype=np.int8)
    want = x.repeat(factors[0], axis=2).repeat(factors[1], axis=3)
    got = _run(upsample_nearest(3, hw, factors), x, out_shape=want.shape, out_dtype=np.int8)
    assert np.array_equal(got, want)


@pytest.mark.parametrize(
    ("pointwise", "stride", "dilation", "pad"),
    [
        (True, 1, (1, 1), 1),
        (False, 2, (1, 1), 1),
        (False, 1, (2, 3), 2),
        (False, 2, (3, 2), 2),
        (False, 3, (2, 2), 2),
        (False, 1, (1, 1), 0),  # nothing to pad, one phase: im2col reads the input itself (reads_input)
        (False, 1, (2, 1), 0),
    ],
)
def test_im2col_words_hold_offset_activations_of_4_reduction_steps(pointwise, stride, dilation, pad):
    rng = np.random.default_rng(2)
    if pointwise:  # 5 channels: the second word has 1 real byte; 35 positions padded to 64
        spec = DenseConvSpec(5, (5, 7), (1, 1), (1, 1), (0, 0, 0, 0), (5, 7), offset=128, position_block=64)
        x = rng.integers(-128, 128, size=(1, 5, 5, 7), dtype=np.int8)
        src, cols = x, x[0].reshape(5, -1).astype(np.int32)
    else:  # a stem-like 3x3 conv, R = 27: the stem, dilated taps in every phase, unpadded
        dh, dw = dilation
        out_hw = tuple((n + 2 * pad - d * 2 - 1) // stride + 1 for n, d in zip((9, 11), dilation, strict=True))
        spec = DenseConvSpec(
            3, (9, 11), (3, 3), (stride, stride), (pad,) * 4, out_hw, offset=128, position_block=64, dilation=dilation
        )
        x = rng.integers(-128, 128, size=(1, 3, 9, 11), dtype=np.int8)
        wq = -(-(11 + 2 * pad) // stride)
        assert spec.reads_input == (pad == 0 and stride == 1)
        shape = (3, 9 + 2 * pad, stride, wq)
        src = (
            x
            if spec.reads_input
            else _run(pad_split(3, (9, 11), spec.pads, stride), x, out_shape=shape, out_dtype=np.int8)
        )
        xp = np.pad(x[0].astype(np.int32), ((0, 0), (pad, pad), (pad, pad)))
        oh, ow = out_hw
        cols = np.stack(
            [
                xp[c, ky * dh : ky * dh + oh * stride : stride, kx * dw : kx * dw + ow * stride : stride].reshape(-1)
                for c in range(3)
                for ky in range(3)
                for kx in range(3)
            ]
        )
    want = np.full((spec.words * 4, spec.positions_padded), 128, dtype=np.int64)
    want[: cols.shape[0], : spec.positions] = cols + 128
    got = _run(im2col_words(spec), src, out_shape=(spec.words, spec.cols_pitch), out_dtype=np.int32)
    got = np.ascontiguousarray(got[:, : spec.positions_padded])  # the pitch's extra columns are never written
    got_bytes = got.view(np.uint8).reshape(spec.words, spec.positions_padded, 4).transpose(0, 2, 1)
    assert np.array_equal(got_bytes.reshape(-1, spec.positions_padded), want)


# (input hw, kernel, strides, pads (top, left, bottom, right), ceil mode): windows and strides of every kind the
# vector max kernel (pad_split + max_pool_split) takes, rows past 64 and 128 bytes (chunk and tail), ceil-mode
# overhangs, a pad as long as the window (a window of padding only) and a stride larger than the window.
MAXPOOLS = [
    ((9, 9), (3, 3), (2, 2), (1, 1, 1, 1), False),
    ((8, 8), (3, 3), (2, 2), (0, 0, 0, 0), True),
    ((64, 150), (3, 3), (2, 2), (1, 1, 1, 1), False),
    ((7, 131), (2, 2), (2, 2), (0, 0, 0, 0), True),
    ((5, 70), (5, 5), (1, 1), (2, 2, 2, 2), False),
    ((6, 11), (3, 2), (3, 1), (0, 1, 2, 0), True),
    ((5, 9), (1, 1), (2, 3), (0, 0, 0, 0), False),
    ((4, 6), (2, 2), (1, 1), (2, 2, 2, 2), False),
    ((3, 200), (1, 3), (1, 1), (0, 1, 0, 1), False),
]


def test_max_pool_kernel_equals_the_simulator(host_compile):
    """MaxPool compiled (import_int_graph._maxpool: kernels.pad_split with -128 + kernels.max_pool_split) equals
    the simulator bit for bit, with inputs at the int8 extremes (a -128 input next to -128 padding)."""
    from fcos3d.int8.ops import GraphInput, GraphOutput, IntGraph, MaxPool
    from fcos3d.runtime.reference.simulator import Simulator

    graphs = {}
    for i, (hw, kernel, strides, pads, ceil) in enumerate(MAXPOOLS):
        op = MaxPool("pool", "x", "y", kernel, strides, pads, ceil)
        shape = (1, 3, *hw)
        graphs[f"pool_{i}"] = IntGraph(
            (GraphInput("x", "x", 0.1, False, shape),),
            (op,),
            (GraphOutput("y", "y", "int8", np.array([0.1])),),
            {"x": 0.1, "y": 0.1},
        )
    vm = host_compile(graphs)
    rng = np.random.default_rng(6)
    for name, graph in graphs.items():
        shape = graph.inputs[0].shape
        for x in (rng.integers(-128, 128, size=shape, dtype=np.int8), np.full(shape, -128, np.int8)):
            want = Simulator(graph).run({"x": x})["y"]
            got = vm[name](tvm.runtime.tensor(x))[0].numpy()
            assert got.shape == want.shape and np.array_equal(got, want), name


def test_packed_rows_have_a_pitch_whose_16_rows_fall_into_16_cache_sets():
    def pitch(hw):
        return DenseConvSpec(16, hw, (1, 1), (1, 1), (0, 0, 0, 0), hw, offset=128, position_block=32).cols_pitch

    # 64 x 112 = 7168 words = 28 KiB a row: all 16 rows of a tile in one set -> one line more
    assert [pitch(hw) for hw in [(64, 112), (128, 224), (32, 56), (16, 28), (8, 14)]] == [7184, 28688, 1808, 448, 144]
    for hw in [(64, 112), (32, 56), (16, 28), (8, 14), (5, 7)]:
        p = pitch(hw)
        assert p % 16 == 0 and p >= -(-hw[0] * hw[1] // 32) * 32
        assert len({(i * p // 16) % 64 for i in range(16)}) == 16
