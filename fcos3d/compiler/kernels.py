"""The compiler's int8 conv kernels for CPUs, in the layout the int8 dot-product instructions want.

A dense (groups=1) conv is an im2col pack and a GEMM on 32-bit words that each hold 4 int8 reduction steps:
the operand shape of x86 VNNI ``vpdpbusd`` and Arm ``sdot`` (intrinsics.py). A depthwise conv is a padded
copy, a per-row pack of 4 kernel rows into one word and the same dot product per tap column (DepthwiseSpec).
passes/legalize.py emits them, passes/schedule.py gives the TE parts their loops.
The integers equal TOPI's ``conv2d`` (int8 x int8 -> int32) exactly: tests/compiler/test_random_graphs.py.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from tvm import te, tirx
from tvm.script import tirx as T
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder.tirx import prim_func as build_prim_func

__all__ = [
    "KERNEL_ATTR",
    "DenseConvSpec",
    "DepthwiseSpec",
    "depthwise_conv",
    "depthwise_direct",
    "dot_word",
    "gemm_conv",
    "im2col_words",
    "pack_dense_weight",
    "pack_depthwise_weight",
    "pad_split",
]

# Block annotation that tells passes/schedule.py which kernel a (fused) PrimFunc holds.
KERNEL_ATTR = "fcos3d.kernel"
BYTES = 4  # int8 reduction steps per 32-bit word: one lane of vpdpbusd / sdot


@dataclass(frozen=True)
class DenseConvSpec:
    """A groups=1 conv as a GEMM ``acc[o, p] = sum_r cols[r, p] * w[o, r]``, r = (ic, kh, kw), p = (oh, ow).

    ``offset`` is added to every activation byte packed (128 makes them the uint8 that x86 ``vpdpbusd`` wants;
    0 for Arm ``sdot``, signed x signed); the product sum then exceeds the conv by ``offset * sum_r w[o, r]``,
    which the GEMM subtracts. The packed positions are padded to a multiple of ``position_block`` (vector
    lanes x tile) so that every GEMM tile is whole; the padding columns are never read back.
    """

    in_channels: int
    in_hw: tuple[int, int]
    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    out_hw: tuple[int, int]
    offset: int  # 128 (x86 VNNI) or 0 (Arm sdot, plain vectors)
    position_block: int

    def __post_init__(self):
        if self.reduction * 255 * 128 >= 2**31:
            raise ValueError(
                f"DenseConvSpec: reduction {self.reduction} (in_channels x kernel) is too long for an "
                "int32 accumulator of uint8 x int8 products (at most 65,792); split the conv"
            )

    @property
    def reduction(self) -> int:
        return self.in_channels * self.kernel[0] * self.kernel[1]

    @property
    def words(self) -> int:
        return -(-self.reduction // BYTES)

    @property
    def positions(self) -> int:
        return self.out_hw[0] * self.out_hw[1]

    @property
    def positions_padded(self) -> int:
        return -(-self.positions // self.position_block) * self.position_block

    @property
    def pointwise(self) -> bool:
        return self.kernel == (1, 1) and self.strides == (1, 1) and not any(self.pads)


def _word(byte_values: list[int]) -> int:
    """Little-endian bytes (int) -> the int32 whose memory holds them (what vpdpbusd / sdot read per lane)."""
    u = sum((b & 255) << (8 * k) for k, b in enumerate(byte_values))
    return u - (1 << 32) if u >= 1 << 31 else u


def pack_dense_weight(weight: np.ndarray, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """int8 (OC, IC, KH, KW) -> (words (OC, R/4) int32: 4 consecutive reduction steps per word, little-endian,
    R zero-padded to a multiple of 4; correction (OC,) int32 = offset * sum of each output channel's weights,
    |correction| <= 128 * R * 128 < 2**31 for R < 2**17)."""
    oc = weight.shape[0]
    flat = weight.reshape(oc, -1).astype(np.int8)
    r = flat.shape[1]
    padded = np.zeros((oc, -(-r // BYTES) * BYTES), dtype=np.int8)
    padded[:, :r] = flat
    correction = (offset * flat.astype(np.int64).sum(axis=1)).astype(np.int32)
    return np.ascontiguousarray(padded).view("<i4").astype(np.int32), correction


def _vector(n: int, limit: int = 64) -> int:
    """Vector length for a row of ``n``: its largest divisor <= limit (no tail to mask)."""
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def _bcast(value, n: int):
    return value if n == 1 else T.broadcast(value, n)


def _ramp(base, n: int):
    return base if n == 1 else T.ramp(base, 1, n)


@contextmanager
def _kernel(name: str, params: dict[str, tuple[tuple[int, ...], str]]):
    """An already-scheduled PrimFunc built with TVM's IRBuilder: yields its buffers, then ``holder[0]`` is the
    function. ``op_pattern`` 8 (opaque): FuseOps leaves it alone; noalias: inputs and outputs never overlap."""
    holder: list = []
    with IRBuilder() as ib:
        with build_prim_func(private=True):
            T.func_name(name)
            T.func_attr({"op_pattern": 8, "tirx.is_scheduled": True, "tirx.noalias": True})
            bufs = {k: T.arg(k, T.buffer(shape, dtype)) for k, (shape, dtype) in params.items()}
            with T.sblock("root"):
                T.reads()
                T.writes()
                yield bufs, holder
    holder.append(ib.get())


def pad_split(channels: int, in_hw: tuple[int, int], pads: tuple[int, int, int, int], stride_w: int) -> tirx.PrimFunc:
    """x (1, C, H, W) int8 -> (C, H + top + bottom, stride_w, Wq) int8: the zero-padded input with its columns
    split by phase, ``out[c, y, ph, q] = padded[c, y, q * stride_w + ph]``, so that a strided conv's taps read
    contiguous rows. Threads over channels; each row phase is one vector load (and, for strides > 1, one
    shuffle that picks every stride-th byte) in chunks of 64, the padding vector stores of 0."""
    (h, w), (top, left, bottom, right), sw = in_hw, pads, stride_w
    hp, wq = h + top + bottom, -(-(w + left + right) // sw)
    chunk = 64
    with _kernel("pad_split", {"x": ((1, channels, h, w), "int8"), "out": ((channels, hp, sw, wq), "int8")}) as (b, fn):
        x, out = b["x"], b["out"]
        with T.parallel(0, channels) as c:
            with T.serial(0, hp) as y:
                inside = tirx.all(y >= top, y < top + h)
                row = T.max(T.min(y - top, h - 1), 0)  # clamped: rows outside read a real row, then select 0
                for ph in range(sw):
                    lo = max(0, -(-(left - ph) // sw))  # first q whose column q * sw + ph - left >= 0
                    hi = min(wq, -(-(left + w - ph) // sw))  # first q whose column is past the input
                    if lo:
                        T.buffer_store(out, _bcast(T.int8(0), lo), [c, y, ph, _ramp(0, lo)])
                    if hi < wq:
                        T.buffer_store(out, _bcast(T.int8(0), wq - hi), [c, y, ph, _ramp(hi, wq - hi)])

                    def store(q0, n):
                        src = T.BufferLoad(x, [0, c, row, _ramp(q0 * sw + ph - left, (n - 1) * sw + 1)])
                        if sw > 1:
                            src = T.Shuffle([src], [i * sw for i in range(n)])
                        T.buffer_store(
                            out, T.Select(_bcast(inside, n), src, _bcast(T.int8(0), n)), [c, y, ph, _ramp(q0, n)]
                        )

                    full, rest = divmod(hi - lo, chunk)
                    if full:
                        with T.serial(0, full) as k:
                            store(lo + k * chunk, chunk)
                    if rest:
                        store(lo + full * chunk, rest)
    return fn[0]


def im2col_words(spec: DenseConvSpec) -> tirx.PrimFunc:
    """The GEMM's activation operand, already scheduled: word [rb, p] holds the 4 bytes ``x_r + offset`` of
    reduction steps r = 4 rb .. 4 rb + 3 at output position p (r >= R: the offset byte; p >= P: padding).
    Input: x (1, IC, H, W) for a pointwise conv, else pad_split's (IC, Hp, stride_w, Wq). Threads over words,
    vectors along output rows (every load contiguous)."""
    kh, kw = spec.kernel
    sh, sw = (1, 1) if spec.pointwise else spec.strides
    oh, ow = (1, spec.positions) if spec.pointwise else spec.out_hw
    h, w = spec.in_hw
    if spec.pointwise:
        src_shape = (1, spec.in_channels, h, w)
    else:
        top, left, bottom, right = spec.pads
        src_shape = (spec.in_channels, h + top + bottom, sw, -(-(w + left + right) // sw))
    full, rest = divmod(spec.reduction, BYTES)
    n_pos, n_padded, off = spec.positions, spec.positions_padded, spec.offset
    vec = _vector(ow)
    with _kernel("im2col", {"x": (src_shape, "int8"), "cols": ((spec.words, n_padded), "int32")}) as (b, fn):
        src, cols = b["x"], b["cols"]
        flat = T.decl_buffer((spec.in_channels, oh, 1, ow), "int8", data=src.data) if spec.pointwise else src

        def word(rb, y, x, valid):
            total = None
            for k in range(BYTES):
                if k < valid:
                    r = rb * BYTES + k
                    ic, ky, kx = r // (kh * kw), r % (kh * kw) // kw, r % kw
                    term = (T.Cast("int32", flat[ic, y * sh + ky, kx % sw, x + kx // sw]) + off) & 255
                    term = T.shift_left(term, 8 * k) if k else term
                else:  # a padding step: the offset byte, as the int32 constant it makes in place
                    term = tirx.const(_word([0] * k + [off]), "int32")
                total = term if total is None else T.bitwise_or(total, term)
            return total

        def rows(rb, valid):
            with T.serial(0, oh) as y:
                with T.serial(0, ow // vec) as xo:
                    with T.vectorized(0, vec) as xi:
                        T.buffer_store(cols, word(rb, y, xo * vec + xi, valid), [rb, y * ow + xo * vec + xi])
            if n_padded > n_pos:
                T.buffer_store(
                    cols,
                    _bcast(tirx.const(_word([off] * BYTES), "int32"), n_padded - n_pos),
                    [rb, _ramp(n_pos, n_padded - n_pos)],
                )

        if full:
            with T.parallel(0, full) as rb:
                rows(rb, BYTES)
        if rest:  # the last word holds fewer than 4 reduction steps
            rows(full, rest)
    return fn[0]


def dot_word(a, b, a_dtype: str):
    """``sum_k int32(byte_k(a)) * int32(byte_k(b))`` of two int32 words (byte k = bits 8k..8k+7, its memory
    order on little-endian CPUs), ``a``'s bytes read as ``a_dtype`` (uint8 or int8), ``b``'s as int8: one lane
    of vpdpbusd / sdot. Shared by the GEMM below and the instruction descriptions of intrinsics.py."""
    total = None
    for k in range(BYTES):
        x = tirx.Cast("int32", tirx.Cast(a_dtype, tirx.shift_right(a, 8 * k) if k else a))
        y = tirx.Cast("int32", tirx.Cast("int8", tirx.shift_right(b, 8 * k) if k else b))
        total = x * y if total is None else total + x * y
    return total


def gemm_conv(
    cols: te.Tensor, w: te.Tensor, correction: te.Tensor, spec: DenseConvSpec, packed_dtype: str
) -> te.Tensor:
    """cols (R/4, P') int32 words (im2col_words), w (OC, R/4) int32 words (pack_dense_weight), correction (OC,)
    -> (1, OC, OH, OW) int32 = the conv. ``packed_dtype``: the byte type of the activations, uint8 (offset 128)
    or int8. Overflow bound: the word sums reach R * 255 * 128 before the correction (DenseConvSpec checks
    R <= 65,792; FCOS3D's largest R is 1152), the conv itself R * 128 * 128: exact in int32."""
    rb = te.reduce_axis((0, spec.words), name="rb")
    acc = te.compute(
        (int(w.shape[0]), spec.positions_padded),
        lambda o, p: te.sum(dot_word(cols[rb, p], w[o, rb], packed_dtype), axis=rb),
        name="dot",
        attrs={KERNEL_ATTR: "int8_gemm"},
    )
    oh, ow = spec.out_hw
    return te.compute(
        (1, int(w.shape[0]), oh, ow), lambda n, o, y, x: acc[o, y * ow + x] - correction[o], name="unflatten"
    )


@dataclass(frozen=True)
class DepthwiseSpec:
    """A depthwise conv (one KH x KW filter per channel) on the int8 dot-product instructions.

    Per output row y, word ``[kb, ph, q]`` holds the bytes ``padded[y * sh + 4 kb + k, ph, q] + offset``, k = 0..3
    (4 kernel rows: ``KB = ceil(KH / 4)`` words; rows past KH hold any byte of the input, their weight byte is 0). Output
    column x of tap column kx reads word ``q = x + kx // sw`` of phase ``kx % sw``: one dot instruction per
    (kb, kx) and ``lanes`` outputs (3 for a 3x3, 10 for a 5x5), the weight word ``(w[4 kb .. 4 kb + 3, kx])``
    broadcast. The sum exceeds the conv by ``offset * sum(w)`` (subtracted). Output rows are computed to
    ``out_w_padded`` (a multiple of lanes: the instruction needs no mask), so pad_split's right padding is
    widened until every packed column exists (``right_pad``); the extra outputs are never stored.
    """

    kernel: tuple[int, int]
    strides: tuple[int, int]
    in_w: int
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    out_hw: tuple[int, int]
    offset: int
    lanes: int

    @property
    def uses_dot(self) -> bool:
        """Where the dot form paid in the 512x896 profile (PERFORMANCE.md): stride 1 and rows of at least 32
        outputs or 5 tap columns. Stride 2 (its pack covers both phases) and short rows (padded to whole
        vectors) run faster as the direct sum (depthwise_direct)."""
        return self.strides == (1, 1) and (self.out_hw[1] >= 32 or self.kernel[1] >= 5)

    @property
    def row_words(self) -> int:
        return -(-self.kernel[0] // BYTES)

    @property
    def out_w_padded(self) -> int:
        return -(-self.out_hw[1] // self.lanes) * self.lanes

    @property
    def packed_w(self) -> int:
        """Packed columns per phase: the padded outputs' reach, rounded up to whole vectors."""
        return -(-(self.out_w_padded + (self.kernel[1] - 1) // self.strides[1]) // self.lanes) * self.lanes

    @property
    def right_pad(self) -> int:
        """pad_split's right padding: at least the conv's, and enough for ``packed_w`` columns per phase."""
        _, left, _, right = self.pads
        return max(right, self.packed_w * self.strides[1] - self.in_w - left)


def pack_depthwise_weight(weight: np.ndarray, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """int8 (C, 1, KH, KW) -> (words (C, KB, KW) int32: word [c, kb, kx] = bytes w[c, 4 kb + k, kx], k = 0..3,
    rows past KH 0; correction (C,) int32 = offset * sum of the channel's weights)."""
    c, _, kh, kw = weight.shape
    kb = -(-kh // BYTES)
    rows = np.zeros((c, kb * BYTES, kw), dtype=np.int8)
    rows[:, :kh] = weight[:, 0]
    grouped = np.ascontiguousarray(rows.reshape(c, kb, BYTES, kw).transpose(0, 1, 3, 2))  # (C, KB, KW, 4)
    words = grouped.view("<i4")[..., 0].astype(np.int32)
    correction = (offset * weight.reshape(c, -1).astype(np.int64).sum(axis=1)).astype(np.int32)
    return words, correction


def depthwise_conv(
    padded: te.Tensor, w: te.Tensor, correction: te.Tensor, spec: DepthwiseSpec, packed_dtype: str
) -> te.Tensor:
    """pad_split's (C, Hp, sw, Wq) int8 (Wq >= spec.packed_w), w (C, KB, KW) int32 words and correction (C,)
    (pack_depthwise_weight) -> (1, C, OH, OW) int32 = the conv (DepthwiseSpec). The pack is a stage of its own
    (schedule.py computes it per output row, where it stays in L1). Bounds: the word sums reach
    KH * KW * 255 * 128 (2.1e7 for 25 taps) before the correction: exact in int32."""
    c = int(padded.shape[0])
    hp = int(padded.shape[1])
    kh, kw = spec.kernel
    sh, sw = spec.strides
    off, n_kb = spec.offset, spec.row_words

    def word(ch, y, kb, ph, q):
        total = None
        for k in range(BYTES):
            ky = kb * BYTES + k
            if n_kb == 1 and k >= kh:  # a row past the kernel: the offset byte (its weight byte is 0)
                term = tirx.const(_word([0] * k + [off]), "int32")
            else:
                row = y * sh + ky
                if n_kb * BYTES > kh and k >= kh % BYTES:  # maybe past the kernel (weight byte 0): in bounds
                    row = tirx.min(row, hp - 1)
                term = (padded[ch, row, ph, q].astype("int32") + off) & 255
                term = tirx.shift_left(term, 8 * k) if k else term
            total = term if total is None else tirx.bitwise_or(total, term)
        return total

    oh, ow = spec.out_hw
    words = te.compute((c, oh, n_kb, sw, spec.packed_w), word, name="dw_pack", attrs={KERNEL_ATTR: "depthwise_pack"})
    kb = te.reduce_axis((0, n_kb), name="kb")
    kx = te.reduce_axis((0, kw), name="kx")
    acc = te.compute(
        (c, oh, spec.out_w_padded),
        lambda ch, y, x: te.sum(
            dot_word(words[ch, y, kb, kx % sw, x + kx // sw], w[ch, kb, kx], packed_dtype), axis=[kb, kx]
        ),
        name="depthwise",
        attrs={KERNEL_ATTR: "depthwise_dot"},
    )
    return te.compute((1, c, oh, ow), lambda n, ch, y, x: acc[ch, y, x] - correction[ch], name="dw_unpad")


def depthwise_direct(padded: te.Tensor, w: te.Tensor, strides: tuple[int, int], out_hw: tuple[int, int]) -> te.Tensor:
    """The direct depthwise sum (where the dot form does not pay, DepthwiseSpec.uses_dot): pad_split's (C, Hp, stride_w, Wq) int8 and the (C, 1, KH, KW) int8 weights widened to int32 -> (1, C, OH,
    OW) int32, one KH x KW filter per channel (|acc| <= KH * KW * 128 * 128). Tap (ry, rx) of output column x
    reads padded column x * stride + rx = phase rx % stride, position x + rx // stride: contiguous along x."""
    c = int(padded.shape[0])
    kh, kw = int(w.shape[2]), int(w.shape[3])
    sh, sw = strides
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    return te.compute(
        (1, c, *out_hw),
        lambda n, ch, y, xx: te.sum(
            padded[ch, y * sh + ry, rx % sw, xx + rx // sw].astype("int32") * w[ch, 0, ry, rx], axis=[ry, rx]
        ),
        name="depthwise",
        attrs={KERNEL_ATTR: "depthwise"},
    )
