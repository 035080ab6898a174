"""The compiler's int8 conv kernels for CPUs, in the layout the int8 dot-product instructions want.

A dense (groups=1) conv is an im2col pack and a GEMM on 32-bit words that each hold 4 int8 reduction steps:
the operand shape of x86 VNNI ``vpdpbusd`` and Arm ``sdot`` (intrinsics.py). A depthwise conv is a padded
copy (+ 128 on x86; made per channel inside the conv's own kernel, padded_input, or, for plain vectors at a
column stride > 1, pad_split's kernel) and the same dot product per kernel row, its activation words the input
row read at byte offsets (DepthwiseSpec).
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
    "WINDOW_CONSECUTIVE_ATTR",
    "WINDOW_TAPS_ATTR",
    "WINDOW_STRIDE_ATTR",
    "DenseConvSpec",
    "DepthwiseSpec",
    "depthwise_conv",
    "dot_word",
    "gemm_conv",
    "im2col_words",
    "max_pool_split",
    "pack_dense_weight",
    "pack_depthwise_weight",
    "pack_words",
    "packs_words",
    "pad_split",
    "padded_input",
    "upsample_nearest",
    "window_dot",
]

# Block annotation that tells passes/schedule.py which kernel a (fused) PrimFunc holds.
KERNEL_ATTR = "fcos3d.kernel"
WINDOW_STRIDE_ATTR = "fcos3d.window_stride"  # depthwise_conv: 1, or the column stride its window reads in place
WINDOW_CONSECUTIVE_ATTR = "fcos3d.window_consecutive"  # depthwise_conv: 1 where its words are consecutive taps
WINDOW_TAPS_ATTR = "fcos3d.window_taps"  # depthwise_conv: real taps of its one consecutive word per row (< 4), else 4
BYTES = 4  # int8 reduction steps per 32-bit word: one lane of vpdpbusd / sdot
L1_LINE_WORDS = 16  # 32-bit words per 64-byte cache line (also the rows of an AMX tile)
L1_SETS = 64  # sets of a 48 KiB 12-way (x86) or 64 KiB 4-way (Arm Cortex-A) L1 data cache of 64-byte lines


@dataclass(frozen=True)
class DenseConvSpec:
    """A groups=1 conv as a GEMM ``acc[o, p] = sum_r cols[r, p] * w[o, r]``, r = (ic, kh, kw), p = (oh, ow);
    tap (ky, kx) of output (oy, ox) reads padded input (oy sh + ky dh, ox sw + kx dw) (``dilation`` (dh, dw)).

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
    dilation: tuple[int, int] = (1, 1)
    # > 0: the words come packed from the producer's epilogue (pack_words) in tiles of this many words (the AMX
    # GEMM's chunk; up to 16 for the VNNI GEMM); 0: im2col_words packs them
    producer_packed: int = 0

    def __post_init__(self):
        if self.producer_packed and (
            not packs_words(self.in_channels, self.kernel, self.strides, self.pads, self.out_hw, self.position_block)
            or self.words % self.producer_packed
        ):
            raise ValueError(
                "DenseConvSpec: producer-packed words need a pointwise conv over whole position blocks, its rows "
                f"whole blocks of {PACK_BLOCK}, its words whole tiles"
            )
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
    def cols_pitch(self) -> int:
        """Words from one row of the packed activations to the next (>= positions_padded): the first multiple of
        16 words whose 16 consecutive rows, the rows a GEMM tile reads at once, fall into 16 different sets of a
        64-set L1 cache (a pitch of 4 KiB multiples, e.g. 7168 positions at 64 x 112, would put every row of a tile
        into one 12-way set: the AMX tile loads then miss; measured 10% on a 256-channel 1x1 conv,
        PERFORMANCE.md). The columns past positions_padded are never written or read."""
        pitch = -(-self.positions_padded // L1_LINE_WORDS) * L1_LINE_WORDS
        while len({(i * pitch // L1_LINE_WORDS) % L1_SETS for i in range(L1_LINE_WORDS)}) < L1_LINE_WORDS:
            pitch += L1_LINE_WORDS
        return pitch

    @property
    def cols_shape(self) -> tuple[int, ...]:
        """The packed activations: (words, cols_pitch); producer-packed (pack_words): AMX tiles, (words / kc,
        positions / 16, kc, 16) for kc = producer_packed words per tile."""
        kc = self.producer_packed
        if kc:
            return (self.words // kc, self.positions // PACK_BLOCK, kc, PACK_BLOCK)
        return (self.words, self.cols_pitch)

    def col(self, cols, rb, p):
        """Word ``rb`` at position ``p`` of ``cols`` (cols_shape)."""
        kc = self.producer_packed
        if kc:
            return cols[rb // kc, p // PACK_BLOCK, rb % kc, p % PACK_BLOCK]
        return cols[rb, p]

    @property
    def pointwise(self) -> bool:
        return self.kernel == (1, 1) and self.strides == (1, 1) and not any(self.pads)

    @property
    def reads_input(self) -> bool:
        """im2col reads x (1, IC, H, W) itself: nothing to pad and one column phase (else pad_split's copy)."""
        return not any(self.pads) and self.strides[1] == 1


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


def _row_chunks(start: int, stop: int, chunk: int, store) -> None:
    """``store(q0, n)`` over columns ``start .. stop`` of a row: a serial loop of ``chunk``-wide vectors, then one
    narrower vector for the rest (no mask, no tail loop)."""
    full, rest = divmod(stop - start, chunk)
    if full:
        with T.serial(0, full) as k:
            store(start + k * chunk, chunk)
    if rest:
        store(start + full * chunk, rest)


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


def pad_split(
    channels: int,
    in_hw: tuple[int, int],
    pads: tuple[int, int, int, int],
    stride_w: int,
    flip: bool = False,
    value: int = 0,
) -> tirx.PrimFunc:
    """x (1, C, H, W) int8 -> (C, H + top + bottom, stride_w, Wq) int8: the input padded with ``value`` (an
    asymmetric input's zero point: its real 0) with its columns split by phase, ``out[c, y, ph, q] = padded[c, y,
    q * stride_w + ph]``, so that a strided conv's taps read contiguous rows. Threads over channels; each row phase
    is one vector load (and, for strides > 1, one shuffle that picks every stride-th byte) in chunks of 64, the
    padding vector stores of ``value``. ``flip``: every byte (padding included) xor 0x80, i.e. ``byte + 128`` read
    as uint8 (the operand x86 ``vpdpbusd`` wants, made here for free instead of once per tap in the depthwise
    kernel). With stride_w 1 the output's memory is the padded NCHW tensor (pad_nchw)."""
    (h, w), sw = in_hw, stride_w
    top, left, bottom, right = pads
    hp, wq = h + top + bottom, -(-(w + left + right) // sw)
    with _kernel("pad_split", {"x": ((1, channels, h, w), "int8"), "out": ((channels, hp, sw, wq), "int8")}) as (b, fn):
        _pad_split_body(b["x"], b["out"], channels, in_hw, pads, sw, flip, value)
    return fn[0]


def pad_nchw(channels: int, in_hw: tuple[int, int], pads: tuple[int, int, int, int], value: int) -> tirx.PrimFunc:
    """x (1, C, H, W) int8 -> (1, C, H + top + bottom, W + left + right) int8 padded with ``value``: pad_split's
    loops for stride 1 (vector row copies, vector pad stores) instead of TOPI's pad, which tests every element
    (an asymmetric conv's zero-point pad: 0.5 bytes per cycle there)."""
    (h, w), (top, left, bottom, right) = in_hw, pads
    hp, wp = h + top + bottom, w + left + right
    with _kernel("pad", {"x": ((1, channels, h, w), "int8"), "out": ((1, channels, hp, wp), "int8")}) as (b, fn):
        out = T.decl_buffer((channels, hp, 1, wp), "int8", data=b["out"].data)
        _pad_split_body(b["x"], out, channels, in_hw, pads, 1, False, value)
    return fn[0]


def _pad_split_body(x, out, channels, in_hw, pads, sw, flip, value) -> None:
    (h, w), (top, left, bottom, right) = in_hw, pads
    hp, wq = h + top + bottom, -(-(w + left + right) // sw)
    chunk = 64
    if not -128 <= value <= 127:
        raise ValueError(f"pad_split: pad value {value} is not an int8")
    fill = T.int8(value ^ -128) if flip else T.int8(value)  # ^ -128: the int8 xor 0x80
    flip_mask = T.int8(-128)
    with T.parallel(0, channels) as c:
        with T.serial(0, hp) as y:
            inside = tirx.all(y >= top, y < top + h)
            row = T.max(T.min(y - top, h - 1), 0)  # clamped: rows outside read a real row, then select the fill
            for ph in range(sw):
                lo = max(0, -(-(left - ph) // sw))  # first q whose column q * sw + ph - left >= 0
                hi = min(wq, -(-(left + w - ph) // sw))  # first q whose column is past the input
                if lo:
                    T.buffer_store(out, _bcast(fill, lo), [c, y, ph, _ramp(0, lo)])
                if hi < wq:
                    T.buffer_store(out, _bcast(fill, wq - hi), [c, y, ph, _ramp(hi, wq - hi)])

                def store(q0, n):
                    src = T.BufferLoad(x, [0, c, row, _ramp(q0 * sw + ph - left, (n - 1) * sw + 1)])
                    if sw > 1:
                        src = T.Shuffle([src], [i * sw for i in range(n)])
                    if flip:
                        src = T.bitwise_xor(src, _bcast(flip_mask, n))
                    T.buffer_store(out, T.Select(_bcast(inside, n), src, _bcast(fill, n)), [c, y, ph, _ramp(q0, n)])

                _row_chunks(lo, hi, chunk, store)


def upsample_nearest(channels: int, in_hw: tuple[int, int], factors: tuple[int, int]) -> tirx.PrimFunc:
    """x (1, C, H, W) int8 -> (1, C, H * fh, W * fw) int8, ``out[c, y, x] = x[c, y // fh, x // fw]``: a nearest resize
    by whole factors (import_int_graph uses it where the resize's index maps are exactly these). Threads over
    channels; per output row, vector loads of the input row and one shuffle that repeats each byte fw times."""
    (h, w), (fh, fw) = in_hw, factors
    chunk = max(1, 64 // fw)  # input bytes per shuffle: 64 output bytes
    params = {"x": ((1, channels, h, w), "int8"), "out": ((1, channels, h * fh, w * fw), "int8")}
    with _kernel("upsample_nearest", params) as (b, fn):
        x, out = b["x"], b["out"]
        with T.parallel(0, channels) as c:
            with T.serial(0, h * fh) as y:
                row = tirx.floordiv(y, fh) if fh > 1 else y

                def store(q0, n):
                    src = T.BufferLoad(x, [0, c, row, _ramp(q0, n)])
                    if fw > 1:  # (TVM's Shuffle makes at most as many lanes as it is given)
                        src = T.Shuffle([src] * fw, [i // fw for i in range(n * fw)])
                    T.buffer_store(out, src, [0, c, y, _ramp(q0 * fw, n * fw)])

                _row_chunks(0, w, chunk, store)
    return fn[0]


def max_pool_split(
    channels: int,
    padded: tuple[int, int, int],
    kernel: tuple[int, int],
    strides: tuple[int, int],
    out_hw: tuple[int, int],
) -> tirx.PrimFunc:
    """pad_split's (C, Hp, stride_w, Wq) int8 (padded with -128) -> (1, C, OH, OW) int8, ``out[c, y, x] = max over
    ky, kx of padded[c, y * sh + ky, kx % sw, x + kx // sw]``: a max pool (no dilation) whose taps of one kernel row
    and phase read consecutive bytes of the phase-split row. Threads over channels; per output row, one vector
    load and one vector max per tap, 64 outputs at a time (TVM's default pool tests the padding per element)."""
    hp, sw, wq = padded
    (kh, kw), (sh, _), (oh, ow) = kernel, strides, out_hw
    if oh and ((oh - 1) * sh + kh > hp or ow - 1 + (kw - 1) // sw >= wq):
        raise ValueError(f"max_pool_split: a {kh}x{kw} window at {out_hw} reads past the padded input {padded}")
    chunk = 64
    params = {"x": ((channels, hp, sw, wq), "int8"), "out": ((1, channels, oh, ow), "int8")}
    with _kernel("max_pool_split", params) as (b, fn):
        x, out = b["x"], b["out"]
        with T.parallel(0, channels) as c:
            with T.serial(0, oh) as y:

                def store(q0, n):
                    best = None
                    for ky in range(kh):
                        for kx in range(kw):
                            tap = T.BufferLoad(x, [c, y * sh + ky, kx % sw, _ramp(q0 + kx // sw, n)])
                            best = tap if best is None else T.max(best, tap)
                    T.buffer_store(out, best, [0, c, y, _ramp(q0, n)])

                _row_chunks(0, ow, chunk, store)
    return fn[0]


def im2col_words(spec: DenseConvSpec) -> tirx.PrimFunc:
    """The GEMM's activation operand, already scheduled: word [rb, p] holds the 4 bytes ``x_r + offset`` of
    reduction steps r = 4 rb .. 4 rb + 3 at output position p (r >= R: the offset byte; p >= P: padding).
    Input: x (1, IC, H, W) when ``spec.reads_input``, else pad_split's (IC, Hp, stride_w, Wq). Threads over words,
    vectors along output rows (every load contiguous)."""
    kh, kw = spec.kernel
    sh, sw = (1, 1) if spec.pointwise else spec.strides
    dh, dw = spec.dilation
    oh, ow = (1, spec.positions) if spec.pointwise else spec.out_hw
    h, w = spec.in_hw
    if spec.reads_input:
        src_shape = (1, spec.in_channels, h, w)
    else:
        top, left, bottom, right = spec.pads
        src_shape = (spec.in_channels, h + top + bottom, sw, -(-(w + left + right) // sw))
    full, rest = divmod(spec.reduction, BYTES)
    n_pos, n_padded, off = spec.positions, spec.positions_padded, spec.offset
    vec = _vector(ow)
    cols_shape = (spec.words, spec.cols_pitch)
    with _kernel("im2col", {"x": (src_shape, "int8"), "cols": (cols_shape, "int32")}) as (b, fn):
        src, cols = b["x"], b["cols"]
        if spec.pointwise:  # the positions as one row
            flat = T.decl_buffer((spec.in_channels, oh, 1, ow), "int8", data=src.data)
        elif spec.reads_input:  # (IC, H, 1, W): the one column phase
            flat = T.decl_buffer((spec.in_channels, h, 1, w), "int8", data=src.data)
        else:
            flat = src

        def word(rb, y, x, valid):
            total = None
            for k in range(BYTES):
                if k < valid:
                    r = rb * BYTES + k
                    ic, ky, kx = r // (kh * kw), r % (kh * kw) // kw, r % kw
                    col = kx * dw  # the tap's column offset in the padded row: phase col % sw, word col // sw
                    term = (T.Cast("int32", flat[ic, y * sh + ky * dh, col % sw, x + col // sw]) + off) & 255
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


PACK_BLOCK = 16  # positions per block of pack_words' layout: one AMX tile's columns


def packs_words(in_channels: int, kernel, strides, pads, out_hw, position_block: int) -> bool:
    """A conv whose words pack_words' layout can hold: pointwise, whole words of channels, rows of whole blocks of
    16 positions, whole position tiles of its GEMM (``position_block``). Shared by legalize.py (the compile) and
    latency/estimate.py (the same rule on the integer graph)."""
    return (
        in_channels % BYTES == 0
        and tuple(kernel) == (1, 1)
        and tuple(strides) == (1, 1)
        and not any(pads)
        and out_hw[1] % PACK_BLOCK == 0
        and (out_hw[0] * out_hw[1]) % position_block == 0
    )


def pack_words(x: te.Tensor, offset: int, chunk: int) -> te.Tensor:
    """x (1, C, H, W) int8 (C a multiple of 4 ``chunk``, W of 16) -> the AMX tiles of a pointwise conv's words,
    (C / 4 / chunk, H W / 16, chunk, 16) int32 (DenseConvSpec.cols_shape): word [t, b, i, r] holds the bytes
    ``x[4 (t chunk + i) + k, y, 16 xb + r] + offset``, k = 0..3, (y, xb) = divmod(b, W / 16), i.e. word t chunk +
    i at position 16 b + r; a tile (chunk words x 16 positions) is one contiguous piece, and a word's blocks lie
    chunk x 64 bytes apart (not 4 KiB: no cache-set aliasing when the producer writes them). A TE stage that
    fuses into the producer of x: legalize.py emits it where x is a depthwise conv's output with no other use,
    and the depthwise kernel's epilogue writes the words, 4 channels at a time (schedule.py), instead of im2col
    reading x back."""
    _, c, h, w = (int(d) for d in x.shape)
    if c % (BYTES * chunk) or w % PACK_BLOCK:
        raise ValueError(f"pack_words: {c} channels x {w} columns are not whole tiles of {chunk} words x 16")
    per_row = w // PACK_BLOCK

    def word(t, b, i, r):
        q = t * chunk + i
        total = None
        for k in range(BYTES):
            v = x[0, q * BYTES + k, b // per_row, b % per_row * PACK_BLOCK + r]
            term = (tirx.Cast("int32", v) + offset) & 255
            term = tirx.shift_left(term, 8 * k) if k else term
            total = term if total is None else tirx.bitwise_or(total, term)
        return total

    shape = (c // BYTES // chunk, h * per_row, chunk, PACK_BLOCK)
    return te.compute(shape, word, name="pack_words", attrs={KERNEL_ATTR: "pack_words"})


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
    cols: te.Tensor,
    w: te.Tensor,
    correction: te.Tensor,
    spec: DenseConvSpec,
    packed_dtype: str,
    channels: int | None = None,
) -> te.Tensor:
    """cols (R/4, pitch >= P') int32 words (im2col_words), w (OC, R/4) int32 words (pack_dense_weight), correction (OC,)
    -> (1, OC, OH, OW) int32 = the conv; ``channels`` < OC: the first ``channels`` only (the filters past them
    pad OC to whole AMX tiles: intrinsics.amx_channels). ``packed_dtype``: the byte type of the activations,
    uint8 (offset 128) or int8. Overflow bound: the word sums reach R * 255 * 128 before the correction (DenseConvSpec checks
    R <= 65,792; FCOS3D's largest R is 1152), the conv itself R * 128 * 128: exact in int32."""
    rb = te.reduce_axis((0, spec.words), name="rb")
    acc = te.compute(
        (int(w.shape[0]), spec.positions_padded),
        lambda o, p: te.sum(dot_word(spec.col(cols, rb, p), w[o, rb], packed_dtype), axis=rb),
        name="dot",
        attrs={KERNEL_ATTR: "int8_gemm"},
    )
    oh, ow = spec.out_hw
    return te.compute(
        (1, channels or int(w.shape[0]), oh, ow),
        lambda n, o, y, x: acc[o, y * ow + x] - correction[o],
        name="unflatten",
    )


def window_dot(load, b, a_dtype: str):
    """``sum_k int32(load(k)) * int32(byte_k(b))``, k = 0..3: 4 consecutive input columns (``load(k)`` an int8
    element, read as ``a_dtype``) against the 4 weight bytes of the int32 word ``b``: one lane of vpdpbusd / sdot
    whose activation word is the input row read at a byte offset. Shared by kernels.depthwise_conv and the
    window instructions of intrinsics.py."""
    total = None
    for k in range(BYTES):
        x = tirx.Cast("int32", tirx.Cast(a_dtype, load(k)))
        y = tirx.Cast("int32", tirx.Cast("int8", tirx.shift_right(b, 8 * k) if k else b))
        total = x * y if total is None else total + x * y
    return total


@dataclass(frozen=True)
class DepthwiseSpec:
    """A depthwise conv (one KH x KW filter per channel) on the int8 dot-product instructions.

    The padded input's columns fall into phases (column = q * stride + phase); the taps of one kernel row with
    the same phase (kx = (4 j + k) * stride + phase) read columns q = x + 4 j + k of that phase, so they are
    grouped 4 at a time (``words`` per phase, the taps past KW weight 0). ``lanes`` outputs take one instruction
    per (ky, ph, j): a byte shuffle of the padded row (every stride-th byte from the phase's first column, in
    place; pad_split's phase-split rows for plain vectors) makes the ``lanes`` overlapping words (3 instructions
    for a 3x3 at stride 1, 6 in phases at stride 2, 3 in consecutive words (below); 10 for a 5x5), with no pack
    stage. On x86 the padded copy holds the input + 128 (``flip``) and the sum exceeds the conv by
    ``offset * sum(w)`` (pack_depthwise_weight's ``start`` is its negation, added). Output rows are
    computed to ``out_w_padded`` (a multiple of lanes: the instruction needs no mask), so the right padding is
    widened until every word read exists (``right_pad``); the extra outputs are never stored.

    ``flat``: the window instruction reads the unsplit padded rows (legalize: where the target has one). At a
    column stride s > 1 whose phases need more words than the kernel row itself (a 3x3 at stride 2: 2 phases of
    one word each against one word of 3 taps), the words are ``consecutive``: output x's word j holds the 4
    consecutive columns s x + 4 j .. s x + 4 j + 3 (taps 4 j .. 4 j + 3, past KW weight 0), one instruction per
    (ky, j) and one phase; the ``lanes`` words are a byte shuffle of the s (lanes - 1) + 4 bytes from s x.
    """

    kernel: tuple[int, int]
    strides: tuple[int, int]
    in_w: int
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    out_hw: tuple[int, int]
    offset: int
    lanes: int
    flat: bool = False

    @property
    def consecutive(self) -> bool:
        """Words of consecutive taps (class docstring): flat rows at a stride > 1, and fewer instructions."""
        sw, kw = self.strides[1], self.kernel[1]
        phase_taps = -(-kw // sw)
        split = min(sw, kw) * -(-phase_taps // BYTES)
        return self.flat and sw > 1 and -(-kw // BYTES) < split

    @property
    def phases(self) -> int:
        """Column phases with taps: min(stride, KW); 1 where the words are consecutive."""
        return 1 if self.consecutive else min(self.strides[1], self.kernel[1])

    @property
    def words(self) -> int:
        """4-tap groups per (kernel row, phase): phase 0 has the most taps, ceil(KW / stride); ceil(KW / 4) where
        the words are consecutive."""
        taps = self.kernel[1] if self.consecutive else -(-self.kernel[1] // self.strides[1])
        return -(-taps // BYTES)

    @property
    def out_w_padded(self) -> int:
        return -(-self.out_hw[1] // self.lanes) * self.lanes

    @property
    def row_w(self) -> int:
        """Columns per phase read: the last vector's last word ends at out_w_padded + 4 words - 1. Consecutive
        words: the last vector's window ends at column s (out_w_padded - 1) + 4 words (in whole strides)."""
        if self.consecutive:
            sw = self.strides[1]
            return -(-(sw * (self.out_w_padded - 1) + BYTES * self.words) // sw)
        return self.out_w_padded + BYTES * self.words - 1

    @property
    def right_pad(self) -> int:
        """pad_split's right padding: at least the conv's, and enough for ``row_w`` columns per phase."""
        _, left, _, right = self.pads
        return max(right, self.row_w * self.strides[1] - self.in_w - left)


def pack_depthwise_weight(weight: np.ndarray, spec: DepthwiseSpec) -> tuple[np.ndarray, np.ndarray]:
    """int8 (C, 1, KH, KW) -> (words (C, KH, P, J) int32 (P phases, J words: ``spec``): word [c, ky, ph, j] =
    bytes w[c, ky, (4 j + k) * stride + ph], k = 0..3, taps past KW 0 (consecutive words: w[c, ky, 4 j + k]);
    start (C,) int32 = -spec.offset * sum of the channel's weights: what the conv adds to the word sums)."""
    c, _, kh, kw = weight.shape
    if (kh, kw) != tuple(spec.kernel):
        raise ValueError(
            f"pack_depthwise_weight: a {kh}x{kw} weight for a {spec.kernel[0]}x{spec.kernel[1]} DepthwiseSpec"
        )
    sw = 1 if spec.consecutive else spec.strides[1]
    taps = np.zeros((c, kh, spec.phases, spec.words * BYTES), dtype=np.int8)
    for ph in range(spec.phases):
        cols = weight[:, 0, :, ph::sw]  # (C, KH, taps of this phase)
        taps[:, :, ph, : cols.shape[2]] = cols
    words = np.ascontiguousarray(taps).view("<i4").astype(np.int32)  # (C, KH, P, J)
    start = (-spec.offset * weight.reshape(c, -1).astype(np.int64).sum(axis=1)).astype(np.int32)
    return words, start


def padded_input(x: te.Tensor, pads: tuple[int, int, int, int], flip: bool, value: int = 0) -> te.Tensor:
    """x (1, C, H, W) int8 -> (C, H + top + bottom, 1, W + left + right) int8 (``pads`` = top, left, bottom, right):
    the padded rows, unsplit (a strided window reads its column phases in place), as a TE stage of the depthwise
    kernel itself; ``flip``: xor 0x80, as pad_split's. passes/schedule.py computes it per channel, in a buffer that
    stays in L1 for the channel's conv, the fill and the in-bound copy apart (decompose_padding): the padded
    tensor never goes through memory."""
    _, c, h, w = (int(d) for d in x.shape)
    top, left, bottom, right = pads
    if not -128 <= value <= 127:
        raise ValueError(f"padded_input: pad value {value} is not an int8")
    fill = tirx.const(value ^ -128 if flip else value, "int8")  # ^ -128: the int8 xor 0x80

    def element(ch, y, _, q):
        col = q - left
        v = x[0, ch, y - top, col]
        if flip:
            v = tirx.bitwise_xor(v, tirx.const(-128, "int8"))
        inside = tirx.all(y >= top, y < top + h, col >= 0, col < w)
        return tirx.if_then_else(inside, v, fill)

    shape = (c, h + top + bottom, 1, w + left + right)
    return te.compute(shape, element, name="pad", attrs={KERNEL_ATTR: "pad"})


def depthwise_conv(
    padded: te.Tensor, w: te.Tensor, start: te.Tensor, spec: DepthwiseSpec, packed_dtype: str
) -> te.Tensor:
    """The padded input, w (C, KH, P, J) int32 words and start (C,) (pack_depthwise_weight) -> (1, C, OH, OW)
    int32 = the conv (DepthwiseSpec). The padded input (+ 128 when ``packed_dtype`` is uint8) is pad_split's
    (C, Hp, stride, Wq) phase-split rows (Wq >= spec.row_w), or, at a column stride s > 1, the unsplit rows
    (C, Hp, 1, Wp >= s row_w), phase ph's column q read in place at s q + ph (the window instruction of that
    stride: intrinsics.window_intrin; the block's WINDOW_STRIDE_ATTR says which). Bounds: the word sums reach
    KH * KW * 255 * 128 (2.1e7 for 25 taps), to which ``start`` (-offset * sum(w)) is added: exact in int32
    (passes/schedule.py's fold_depthwise_start makes ``start`` the accumulators' first value instead)."""
    c = int(padded.shape[0])
    kh, _ = spec.kernel
    sh, sw = spec.strides
    oh, ow = spec.out_hw
    flat = sw > 1 and int(padded.shape[2]) == 1
    ky = te.reduce_axis((0, kh), name="ky")
    ph = te.reduce_axis((0, spec.phases), name="ph")
    j = te.reduce_axis((0, spec.words), name="j")

    if spec.consecutive and not flat:
        raise ValueError("depthwise_conv: consecutive words read the unsplit padded rows (DepthwiseSpec.flat)")

    def byte(ch, y, x, phase, j, k):
        if spec.consecutive:
            return padded[ch, y * sh + ky, 0, x * sw + j * BYTES + k]
        q = x + j * BYTES + k
        return padded[ch, y * sh + ky, 0, q * sw + phase] if flat else padded[ch, y * sh + ky, phase, q]

    acc = te.compute(
        (c, oh, spec.out_w_padded),
        lambda ch, y, x: te.sum(
            window_dot(lambda k: byte(ch, y, x, ph, j, k), w[ch, ky, ph, j], packed_dtype),
            axis=[ky, ph, j],
        ),
        name="depthwise",
        attrs={
            KERNEL_ATTR: "depthwise_dot",
            WINDOW_STRIDE_ATTR: sw if flat else 1,
            WINDOW_CONSECUTIVE_ATTR: int(spec.consecutive),
            WINDOW_TAPS_ATTR: spec.kernel[1] if spec.consecutive and spec.words == 1 else BYTES,
        },
    )
    return te.compute((1, c, oh, ow), lambda n, ch, y, x: acc[ch, y, x] + start[ch], name="dw_unpad")


# -- depthwise convs on AMX tiles (a Toeplitz GEMM per channel) -----------------------------------------------------

AMX_TILE = 16  # output rows and columns per tile of kernels.depthwise_amx


@dataclass(frozen=True)
class DepthwiseAmxSpec:
    """A stride-1 depthwise conv as one AMX GEMM per (channel, kernel row, 16 x 16 output tile): C[y, x] +=
    sum_q A[y, q] * B[q, x] with A[y, q] = the padded input (+ 128, uint8) at row y + ky, column xb + q (q < 4
    ``words``: the 16 + KW - 1 columns the tile's 16 outputs read, rounded up to whole words) and B[q, x] =
    w[ky, q - x] where 0 <= q - x < KW, else 0: a banded (Toeplitz) weight matrix, the same for every tile of the
    channel. A's rows are input rows read in place (row stride: pad_split's padded width), so the window needs
    no shuffle; of each tile instruction's 16 x 16 x 4 ``words`` MAC slots, 256 KW are real MACs (18% for a 3x3).
    The outputs are computed to whole tiles (``out_hw_padded``); pad_split pads the input so that every row and
    word read exists (``bottom_pad``, ``right_pad``); the extra outputs are never stored."""

    kernel: tuple[int, int]
    in_hw: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    out_hw: tuple[int, int]
    offset: int  # 128: the input is pad_split's flipped (uint8) copy

    @property
    def words(self) -> int:
        return -(-(AMX_TILE + self.kernel[1] - 1) // BYTES)

    @property
    def out_hw_padded(self) -> tuple[int, int]:
        return tuple(-(-d // AMX_TILE) * AMX_TILE for d in self.out_hw)

    @property
    def bottom_pad(self) -> int:
        return self.pads[2] + self.out_hw_padded[0] - self.out_hw[0]

    @property
    def right_pad(self) -> int:
        """Columns read: the last tile's words end at out_w_padded - 16 + 4 words; the row a multiple of 4."""
        _, left, _, right = self.pads
        width = max(self.in_hw[1] + left + right, self.out_hw_padded[1] - AMX_TILE + BYTES * self.words)
        return -(-width // BYTES) * BYTES - self.in_hw[1] - left


AMX_MIN_KERNEL_W = 5  # narrower windows take tiles only where the window kernel's rows are not whole vectors


def depthwise_amx_applies(kernel: tuple[int, int], strides: tuple[int, int], out_hw: tuple[int, int]) -> bool:
    """Stride 1, a window whose 16 outputs read at most one tile row (64 bytes), at least one tile of 16 output
    rows (a smaller plane is mostly padding: the synthetic size's 5x5 layers at 8x12 took 129 us on tiles, 70 us
    on the window kernel), and one where tiles were measured faster than the window kernel (PERFORMANCE.md
    "Depthwise convs on AMX tiles"): at least AMX_MIN_KERNEL_W wide (5x5 layers about 2x faster), or a 3x3 whose
    rows are not whole 16-lane vectors (32x56 and 16x28 layers 1.3-1.5x faster; 64x112 and wider ones 5-15%
    slower, 8x14 and smaller slower)."""
    if strides != (1, 1) or AMX_TILE + kernel[1] - 1 > 64 or out_hw[0] < AMX_TILE:
        return False
    return kernel[1] >= AMX_MIN_KERNEL_W or out_hw[1] % AMX_TILE != 0


def pack_depthwise_toeplitz(weight: np.ndarray, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """int8 (C, 1, KH, KW) -> (B (C, KH, words, 16) int32: word [c, ky, q4, x] = bytes w[c, ky, 4 q4 + k - x],
    k = 0..3, 0 outside the window (DepthwiseAmxSpec); correction (C,) int32 = offset * sum of the weights)."""
    c, _, kh, kw = weight.shape
    words = -(-(AMX_TILE + kw - 1) // BYTES)
    band = np.zeros((c, kh, words * BYTES, AMX_TILE), dtype=np.int8)  # [c, ky, q, x]
    for x in range(AMX_TILE):
        band[:, :, x : x + kw, x] = weight[:, 0]
    b = np.ascontiguousarray(band.reshape(c, kh, words, BYTES, AMX_TILE).transpose(0, 1, 2, 4, 3))
    correction = (offset * weight.reshape(c, -1).astype(np.int64).sum(axis=1)).astype(np.int32)
    return b.view("<i4").reshape(c, kh, words, AMX_TILE).astype(np.int32), correction


def depthwise_amx(padded: te.Tensor, b: te.Tensor, correction: te.Tensor, spec: DepthwiseAmxSpec) -> te.Tensor:
    """The padded (C, Hp, 1, Wq) uint8 (+ 128) copy (padded_input), B (C, KH, words, 16) and correction (C,)
    (pack_depthwise_toeplitz) -> (1, C, OH, OW) int32 = the conv. The sum over (ky, q) is the tile GEMM that
    intrinsics.AmxWindow tensorizes per 16 x 16 outputs."""
    c = int(padded.shape[0])
    kh, _ = spec.kernel
    ohp, owp = spec.out_hw_padded
    oh, ow = spec.out_hw
    ky = te.reduce_axis((0, kh), name="ky")
    q = te.reduce_axis((0, spec.words), name="q")
    acc = te.compute(
        (c, ohp, owp),
        lambda ch, y, x: te.sum(
            window_dot(
                lambda k: padded[ch, y + ky, 0, x // AMX_TILE * AMX_TILE + q * BYTES + k],
                b[ch, ky, q, x % AMX_TILE],
                "uint8",
            ),
            axis=[ky, q],
        ),
        name="depthwise",
        attrs={KERNEL_ATTR: "depthwise_amx"},
    )
    return te.compute((1, c, oh, ow), lambda n, ch, y, x: acc[ch, y, x] - correction[ch], name="dw_unpad")
