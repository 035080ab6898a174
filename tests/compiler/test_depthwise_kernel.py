"""kernels.depthwise_conv (the dot instruction per kernel row, column phase and 4 taps, its words a byte shuffle of
the padded input row, or at strides 2 and 3 of every stride-th byte of the unsplit row, or for a 3x3 at those
strides the 4 consecutive bytes from every stride-th) scheduled by passes/schedule.py, against numpy: random
depthwise convs, kernels 3 and 5, strides 1, 2 and 3, odd widths, asymmetric pads, exact equality. Both the x86
VNNI path (vpdpbusd, offset 128) where the CPU has it and the plain-vector fallback (offset 0) on a generic
target."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from fcos3d.compiler.intrinsics import dot_intrin_for, vector_lanes
from fcos3d.compiler.kernels import DepthwiseSpec, depthwise_conv, pack_depthwise_weight, pad_split, padded_input
from fcos3d.compiler.passes.schedule import schedule_func

VNNI = tvm.target.Target({"kind": "llvm", "mcpu": "cascadelake"})
PLAIN = tvm.target.Target({"kind": "llvm"})


def _reference(x, w, strides, pads):
    top, left, bottom, right = pads
    xp = np.pad(x[0].astype(np.int64), ((0, 0), (top, bottom), (left, right)))
    c, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    oh = (xp.shape[1] - kh) // strides[0] + 1
    ow = (xp.shape[2] - kw) // strides[1] + 1
    out = np.zeros((1, c, oh, ow), dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            tap = xp[
                :, ky : ky + (oh - 1) * strides[0] + 1 : strides[0], kx : kx + (ow - 1) * strides[1] + 1 : strides[1]
            ]
            out[0] += tap * w[:, 0, ky, kx].astype(np.int64)[:, None, None]
    return out


def _host_has_vnni() -> bool:
    try:
        return "avx512_vnni" in open("/proc/cpuinfo").read()
    except OSError:
        return False


def _run(target, x, w, strides, pads):
    _, c, h, wd = x.shape
    kh, kw = w.shape[2], w.shape[3]
    ref = _reference(x, w, strides, pads)
    out_hw = ref.shape[2:]
    intrin = dot_intrin_for(target)
    spec = DepthwiseSpec(
        kernel=(kh, kw),
        strides=strides,
        in_w=wd,
        pads=pads,
        out_hw=out_hw,
        offset=intrin.offset if intrin else 0,
        lanes=intrin.lanes if intrin else vector_lanes(target),
        flat=intrin is not None,
    )
    top, left, bottom, _ = pads
    flip = spec.offset != 0
    split_pads = (top, left, bottom, spec.right_pad)
    hp, wq = h + top + bottom, -(-(wd + left + spec.right_pad) // strides[1])
    assert wq >= spec.row_w
    words, start = pack_depthwise_weight(w, spec)
    packed = intrin.packed_dtype if intrin else "int8"
    consts = (words, start)
    # as passes/legalize.py: stride 1, or any stride with a dot instruction (its window reads the phases in place),
    # pads per channel inside the kernel; strided plain vectors read pad_split's phase-split copy
    inside = strides[1] == 1 or intrin is not None
    bb = relax.BlockBuilder()  # through call_te, as passes/legalize.py emits it (int64 shapes)
    shape = (1, c, h, wd) if inside else (c, hp, strides[1], wq)
    pv = relax.Var("p", relax.TensorType(shape, "int8"))
    with bb.function("main", [pv]):
        r = bb.emit_te(
            lambda pt, wt, ct: depthwise_conv(
                padded_input(pt, split_pads, flip) if inside else pt, wt, ct, spec, packed
            ),
            pv,
            relax.const(words, "int32"),
            relax.const(start, "int32"),
        )
        bb.emit_func_output(r)
    func = next(f for f in bb.get().functions.values() if isinstance(f, tvm.tirx.PrimFunc))
    with target:
        conv = schedule_func(func, target)
    conv_lib = tvm.tirx.build(conv.with_attr("global_symbol", "k"), target=target)
    if inside:
        src = tvm.runtime.tensor(x)
    else:
        split_lib = tvm.tirx.build(
            pad_split(c, (h, wd), split_pads, strides[1], flip).with_attr("global_symbol", "k"), target=target
        )
        src = tvm.runtime.tensor(np.zeros((c, hp, strides[1], wq), dtype=np.int8))
        split_lib(tvm.runtime.tensor(x), src)
    out = tvm.runtime.tensor(np.zeros(ref.shape, dtype=np.int32))
    conv_lib(src, *(tvm.runtime.tensor(a) for a in consts), out)
    _run.asm = conv_lib.inspect_source("asm") if intrin is not None else ""
    return out.numpy(), ref


CASES = [
    # (channels, h, w, kernel, stride, pads)
    (3, 9, 17, 3, 1, (1, 1, 1, 1)),
    (5, 11, 23, 3, 2, (1, 1, 1, 1)),
    (4, 8, 31, 5, 1, (2, 2, 2, 2)),
    (6, 13, 19, 5, 2, (2, 2, 2, 2)),
    (3, 7, 15, 3, 2, (0, 1, 1, 0)),  # asymmetric (TF "same" at stride 2)
    (2, 10, 37, 5, 2, (1, 2, 2, 1)),
    (3, 6, 33, 3, 1, (0, 0, 0, 0)),
    (2, 9, 5, 5, 1, (2, 0, 1, 3)),
    (2, 4, 1, 3, 1, (1, 1, 1, 1)),  # 1 wide: the row loop disappears (the epilogue must not vectorise y)
    (3, 10, 20, 3, 3, (1, 1, 1, 1)),  # stride 3: 3 phases of one tap each
    (2, 9, 11, 5, 3, (2, 2, 2, 2)),
    (2, 5, 71, 3, 2, (1, 1, 1, 1)),  # consecutive words over 3 vectors of 16 outputs (VNNI)
]


@pytest.mark.parametrize("target", ["plain", "vnni"])
@pytest.mark.parametrize(("c", "h", "w", "k", "s", "pads"), CASES)
def test_depthwise_kernel_equals_numpy(target, c, h, w, k, s, pads):
    if target == "vnni" and not _host_has_vnni():
        pytest.skip("this CPU has no AVX-512 VNNI")
    tgt = VNNI if target == "vnni" else PLAIN
    assert (dot_intrin_for(tgt) is None) == (target == "plain")
    rng = np.random.default_rng(hash((c, h, w, k, s, pads)) % 2**32)
    x = rng.integers(-128, 128, size=(1, c, h, w), dtype=np.int8)
    wt = rng.integers(-128, 128, size=(c, 1, k, k), dtype=np.int8)
    wt[0, 0, 0, 0] = -128  # the extremes: -128 x -128 and the uint8 offset's 255
    x[0, 0, 0, :] = -128
    got, ref = _run(tgt, x, wt, (s, s), pads)
    assert got.shape == ref.shape
    assert int(np.count_nonzero(got != ref)) == 0


def _spec(kernel, strides, offset, flat=False):
    return DepthwiseSpec(kernel, strides, 32, (1, 1, 1, 1), (16, 16), offset, 16, flat)


def test_depthwise_weight_words_hold_4_taps_of_a_kernel_row_and_phase():
    w = np.random.default_rng(2).integers(-128, 128, size=(2, 1, 5, 5), dtype=np.int8)
    words, start = pack_depthwise_weight(w, _spec((5, 5), (1, 1), 128))
    assert words.shape == (2, 5, 1, 2)
    b = words.view(np.int8).reshape(2, 5, 2, 4)
    assert np.array_equal(b[:, :, 0], w[:, 0, :, :4])
    assert np.array_equal(b[:, :, 1, 0], w[:, 0, :, 4])
    assert not b[:, :, 1, 1:].any()
    assert np.array_equal(start, -128 * w.reshape(2, -1).astype(np.int64).sum(axis=1))
    # stride 2: phase 0 holds taps 0, 2, 4 and phase 1 taps 1, 3 of each kernel row
    words, _ = pack_depthwise_weight(w, _spec((5, 5), (2, 2), 0))
    assert words.shape == (2, 5, 2, 1)
    b = words.view(np.int8).reshape(2, 5, 2, 4)
    assert np.array_equal(b[:, :, 0, :3], w[:, 0, :, 0::2])
    assert np.array_equal(b[:, :, 1, :2], w[:, 0, :, 1::2])
    assert not b[:, :, 0, 3].any() and not b[:, :, 1, 2:].any()
    # a 5x5 at stride 2 on flat rows: 2 words either way, so the phases stay
    assert not _spec((5, 5), (2, 2), 0, flat=True).consecutive
    with pytest.raises(ValueError, match="3x3"):
        pack_depthwise_weight(w, _spec((3, 3), (1, 1), 0))


@pytest.mark.parametrize(("kernel", "stride", "instructions"), [(3, 2, 1), (3, 3, 1), (2, 2, 1), (4, 3, 1)])
def test_consecutive_words_take_fewer_instructions_at_a_stride(kernel, stride, instructions):
    """Flat rows at a stride > 1 whose phases need more words than the row: one phase of consecutive taps (word
    j of kernel row ky = taps 4 j .. 4 j + 3), fewer dot instructions per (ky, 16 outputs); split rows
    (plain vectors) keep the phases."""
    w = np.random.default_rng(kernel * 10 + stride).integers(-128, 128, size=(3, 1, kernel, kernel), dtype=np.int8)
    flat = _spec((kernel, kernel), (stride, stride), 128, flat=True)
    split = _spec((kernel, kernel), (stride, stride), 128)
    assert flat.consecutive and not split.consecutive
    assert flat.phases * flat.words == instructions < split.phases * split.words
    words, start = pack_depthwise_weight(w, flat)
    assert words.shape == (3, kernel, 1, 1)
    b = words.view(np.int8).reshape(3, kernel, 4)
    assert np.array_equal(b[:, :, :kernel], w[:, 0]) and not b[:, :, kernel:].any()
    assert np.array_equal(start, -128 * w.reshape(3, -1).astype(np.int64).sum(axis=1))
    # the padded row holds every column the last vector's window reads: s (out_w_padded - 1) + 4 words
    assert flat.row_w * stride >= stride * (flat.out_w_padded - 1) + 4 * flat.words


@pytest.mark.parametrize(("k", "s"), [(3, 2), (3, 3), (2, 2)])
def test_consecutive_word_tails_are_a_byte_shuffle(k, s):
    """A consecutive word's bytes past the kernel's taps meet weight 0 and repeat the last tap's byte
    (intrinsics._window_bytes): at stride 2 the words [2i .. 2i + 3] would pair into 16-bit lanes, which LLVM
    shuffles with vpermt2w (3 uops on Intel cores) instead of vpermt2b (1). Exact, and no 16-bit shuffle left."""
    if not _host_has_vnni():
        pytest.skip("this CPU has no AVX-512 VNNI")
    rng = np.random.default_rng(k * 10 + s)
    x = rng.integers(-128, 128, size=(1, 4, 9, 70), dtype=np.int8)
    wt = rng.integers(-128, 128, size=(4, 1, k, k), dtype=np.int8)
    got, ref = _run(VNNI, x, wt, (s, s), (1, 1, 1, 1))
    assert int(np.count_nonzero(got != ref)) == 0
    assert "vpdpbusd" in _run.asm and "vpermt2w" not in _run.asm and "vpermw" not in _run.asm
