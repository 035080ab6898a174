"""The int8 dot-product instructions as TVM tensor intrinsics, in the operand shape of kernels.py's GEMM.

One instruction updates ``lanes`` int32 accumulators, one per output position, each with the 4-byte dot
product of that position's packed activation word and a weight word broadcast to every lane:
``C[i] += sum_k int32(byte_k(A[i])) * int32(byte_k(B))``. The depthwise form ("window") takes the words
from consecutive bytes of an input row, ``A[i + k]``, one shuffle per instruction. x86 AVX-512 VNNI ``vpdpbusd`` (16 lanes, A uint8, B int8:
kernels.DenseConvSpec.offset = 128) and Arm ``sdot`` (4 lanes, both int8). Neither saturates: the int32 sums
wrap, and stay exact because the conv's accumulator bound (docs/int8.md 4.2) is far below 2**31. Where the CPU
has Intel AMX, the GEMM instead runs on its tile registers (AmxGemm: ``tdpbsud``, 16 x 16 x 64 MACs per instruction,
the same packed operands).
TVM's own ``dot_16x4_vnni`` broadcasts the activations instead and passes LLVM 22 an outdated operand type.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm.script import tirx as T

__all__ = [
    "AmxGemm",
    "AmxWindow",
    "MMLA_CHUNK",
    "MMLA_POSITIONS",
    "MmlaGemm",
    "DotIntrin",
    "amx_channels",
    "amx_gemm_for",
    "amx_intrin",
    "amx_window_for",
    "amx_window_tiles",
    "dot_intrin_for",
    "mmla_chunk",
    "mmla_gemm_for",
    "target_is_arm",
    "vector_lanes",
    "window_intrin",
]


def vector_lanes(target, bits: int = 32) -> int:
    """Lanes of ``bits`` in one vector register of ``target`` (int32: 16 for AVX-512, 8 for AVX2, 4 for NEON);
    at least 4, and 128-bit vectors where the target (or LLVM) does not say."""
    from tvm.target.codegen import llvm_get_vector_width

    width = llvm_get_vector_width(target) if target is not None else 128
    return max((width if width > 0 else 128) // bits, 4)


@dataclass(frozen=True)
class DotIntrin:
    name: str  # registered TensorIntrin name (GEMM: packed activation words)
    window: str  # registered TensorIntrin name (depthwise: the words read from an input row at byte offsets)
    lanes: int  # int32 accumulators per instruction
    offset: int  # added to the int8 activations when packing (uint8 operand) or 0
    packed_dtype: str  # the activation bytes' type: uint8 (offset 128) or int8


def _desc(lanes: int, packed: str):
    """``C[i] += dot_word(A[i], B[0])``: the GEMM block of kernels.gemm_conv, operands 32-bit words of 4 bytes."""
    from .kernels import dot_word

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((lanes,), "int32", offset_factor=1),
        B: T.Buffer((1,), "int32", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:lanes], B[0:1])
            T.writes(C[0:lanes])
            for i in T.serial(T.int64(lanes)):  # an int64 loop, as Relax's call_te makes them
                with T.sblock("update"):
                    vi = T.axis.remap("S", [i])
                    C[vi] = C[vi] + dot_word(A[vi], B[0], packed)

    return desc


def _window_len(lanes: int, stride: int, consecutive: bool = False) -> int:
    """Bytes of the input row that ``lanes`` overlapping 4-tap words read at column ``stride`` (``consecutive``:
    lane i's word the 4 bytes from s i)."""
    return stride * (lanes - 1) + 4 if consecutive else stride * (lanes + 2) + 1


def _window_byte(i, k, stride: int, consecutive: bool):
    """Byte k of lane i's word in the window: s (i + k) (a column phase's taps), or s i + k (consecutive)."""
    return stride * i + k if consecutive else stride * (i + k)


def _window_desc(lanes: int, packed: str, stride: int = 1, consecutive: bool = False):
    """``C[i] += window_dot(A[s i .. s (i + 3)], B[0])``: the depthwise block of kernels.depthwise_conv, its operand
    every ``stride``-th of ``stride (lanes + 2) + 1`` consecutive bytes of an input row (stride 1: ``lanes + 3``
    bytes; stride s: the row of one column phase read in place from the unsplit padded row); ``consecutive``:
    ``C[i] += window_dot(A[s i .. s i + 3], B[0])`` (kernels.DepthwiseSpec.consecutive)."""
    from .kernels import window_dot

    n = _window_len(lanes, stride, consecutive)

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((n,), "int8", offset_factor=1),
        B: T.Buffer((1,), "int32", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:n], B[0:1])
            T.writes(C[0:lanes])
            for i in T.serial(T.int64(lanes)):
                with T.sblock("update"):
                    vi = T.axis.remap("S", [i])
                    C[vi] = C[vi] + window_dot(
                        lambda k: A[_window_byte(vi, k, stride, consecutive)] if stride > 1 else A[vi + k],
                        B[0],
                        packed,
                    )

    return desc


def _window_bytes(A, lanes: int, stride: int = 1, consecutive: bool = False, taps: int = 4):
    """The ``lanes`` overlapping words of bytes A[s i], A[s (i + 1)], .., A[s (i + 3)] (``consecutive``: A[s i] ..
    A[s i + 3]) as 4 * lanes bytes: two in-bounds loads of ``s lanes`` bytes (from 0 and from the window's end
    less ``s lanes``: together its _window_len bytes) and one byte shuffle (x86 ``vpermt2b``, Arm ``tbl``).

    ``taps`` < 4: the word's bytes from ``taps`` on meet weight 0 and may hold anything; they repeat the last tap's
    byte. At stride 2 the consecutive words of a 3-tap row, [2i, 2i+1, 2i+2, 2i+3], are pairs of 16-bit lanes, and
    LLVM lowers that shuffle as ``vpermt2w`` (3 uops, 2 of them on port 5 of Intel cores, against 1 for
    ``vpermt2b``); [2i, 2i+1, 2i+2, 2i+2] is a byte shuffle only."""
    width = stride * lanes
    hi_at = _window_len(lanes, stride, consecutive) - width
    lo = A.vload([0], dtype=f"int8x{width}")
    hi = A.vload([hi_at], dtype=f"int8x{width}")
    idx = []
    for i in range(lanes):
        for k in range(4):
            b = _window_byte(i, min(k, taps - 1), stride, consecutive)
            idx.append(b if b < width else width + b - hi_at)
    # (TVM's Shuffle makes at most as many lanes as it is given: repeat the pair up to 4 * lanes)
    return T.Shuffle([lo, hi] * max(1, -(-2 // stride)), idx)


VPDPBUSD = "llvm.x86.avx512.vpdpbusd.512"  # LLVM 22 declares it on <64 x i8> operands (TVM's dot_16x4_vnni: <16 x i32>)
SDOT = "llvm.aarch64.neon.sdot.v4i32.v16i8"


def _impl(lanes: int, a_len: int, a_dtype: str, instruction: str, operand):
    """The instruction on (A, B, C): ``C = instruction(C, operand(A), B broadcast)``; ``operand`` makes the
    4 * lanes activation bytes from A (the packed words themselves, or _window_bytes)."""
    acc_t, bytes_t = f"int32x{lanes}", f"int8x{4 * lanes}"

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((a_len,), a_dtype, offset_factor=1),
        B: T.Buffer((1,), "int32", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:a_len], B[0:1])
            T.writes(C[0:lanes])
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(instruction),
                C.vload([0], dtype=acc_t),
                operand(A),
                T.reinterpret(T.broadcast(B[0], lanes), dtype=bytes_t),
                dtype=acc_t,
            )

    return impl


def _words(lanes: int):
    return lambda A: T.reinterpret(A.vload([0], f"int32x{lanes}"), dtype=f"int8x{4 * lanes}")


def _x86_vnni():
    return _desc(16, "uint8"), _impl(16, 16, "int32", VPDPBUSD, _words(16))


def _x86_vnni_window(stride: int = 1, consecutive: bool = False, taps: int = 4):
    n = _window_len(16, stride, consecutive)
    impl = _impl(16, n, "int8", VPDPBUSD, lambda A: _window_bytes(A, 16, stride, consecutive, taps))
    return _window_desc(16, "uint8", stride, consecutive), impl


def _arm_sdot():
    return _desc(4, "int8"), _impl(4, 4, "int32", SDOT, _words(4))


def _arm_sdot_window(stride: int = 1, consecutive: bool = False, taps: int = 4):
    n = _window_len(4, stride, consecutive)
    impl = _impl(4, n, "int8", SDOT, lambda A: _window_bytes(A, 4, stride, consecutive, taps))
    return _window_desc(4, "int8", stride, consecutive), impl


X86_VNNI = DotIntrin("fcos3d_dot_16x4_u8s8_vnni", "fcos3d_window_16x4_u8s8_vnni", 16, 128, "uint8")
ARM_SDOT = DotIntrin("fcos3d_dot_4x4_s8s8_sdot", "fcos3d_window_4x4_s8s8_sdot", 4, 0, "int8")
_BUILDERS = {
    X86_VNNI.name: _x86_vnni,
    X86_VNNI.window: _x86_vnni_window,
    ARM_SDOT.name: _arm_sdot,
    ARM_SDOT.window: _arm_sdot_window,
}


def _register(intrin: DotIntrin) -> DotIntrin:
    from tvm.s_tir import TensorIntrin

    for name in (intrin.name, intrin.window):
        if TensorIntrin.get(name, allow_missing=True) is None:
            TensorIntrin.register(name, *_BUILDERS[name]())
    return intrin


def window_intrin(intrin: DotIntrin, stride: int, consecutive: bool = False, taps: int = 4) -> str:
    """The name of ``intrin``'s window instruction for a depthwise conv of column ``stride`` (registered on first
    use): stride 1 reads the padded row, stride s every s-th byte of it (kernels.depthwise_conv, flat rows), or
    with ``consecutive`` words the 4 bytes from every s-th (kernels.DepthwiseSpec.consecutive). ``taps`` < 4 (a
    consecutive word whose bytes from ``taps`` on meet weight 0): those bytes repeat the last tap's
    (_window_bytes: a byte shuffle where the 4 bytes would pair into 16-bit lanes)."""
    from tvm.s_tir import TensorIntrin

    if stride == 1:
        return intrin.window
    taps = taps if consecutive else 4
    name = f"{intrin.window}_s{stride}" + ("_consecutive" if consecutive else "") + (f"_{taps}" if taps < 4 else "")
    if TensorIntrin.get(name, allow_missing=True) is None:
        TensorIntrin.register(name, *_BUILDERS[intrin.window](stride, consecutive, taps))
    return name


def dot_intrin_for(target) -> DotIntrin | None:
    """The dot-product instruction ``target`` has (registered on first use), or None: then the GEMM is
    scheduled as plain vector code, with the same packed layout and the same results."""
    from tvm.target.codegen import target_has_features

    if target is None or str(target.kind.name) != "llvm":
        return None
    is_arm = target_is_arm(target)
    if is_arm and target_has_features("dotprod", target):
        return _register(ARM_SDOT)
    if not is_arm and target_has_features("avx512vnni", target):
        return _register(X86_VNNI)
    return None


def target_is_arm(target) -> bool:
    """An llvm ``target`` for aarch64: its triple says so, or it has none and this machine is one."""
    triple = str(target.attrs.get("mtriple", "") or "")
    return triple.startswith("aarch64") or (not triple and _host_is_arm())


def _host_is_arm() -> bool:
    import platform

    return platform.machine().lower() in ("aarch64", "arm64")


# -- Arm i8mm: the GEMM on 2 x 2 blocks of smmla ---------------------------------------------------------------

SMMLA = "llvm.aarch64.neon.smmla.v4i32.v16i8"


@dataclass(frozen=True)
class MmlaGemm:
    """One tensorize of kernels.gemm_conv on Arm i8mm: ``C[oc, pos] += sum over ``chunk`` words of
    dot_word(A[k, pos], B[oc, k])`` for a register tile of ``oc`` channels x ``pos`` positions (both even), one
    ``smmla`` per 2 x 2 block and pair of words (a 2 x 8 by 8 x 2 int8 product: twice the MACs of an sdot). Each
    block's accumulator is loaded once, carried through the chunk's smmla in a register and stored once; the
    GEMM's reduction (``words``) runs in chunks of up to MMLA_CHUNK words (mmla_chunk)."""

    oc: int
    pos: int
    words: int
    chunk: int

    @property
    def name(self) -> str:
        return f"fcos3d_mmla_{self.oc}x{self.pos}_k{self.chunk}_s8s8"


MMLA_CHUNK = 64  # reduction words per i8mm call at most: 32 smmla per block, unrolled


def mmla_chunk(words: int) -> int:
    """Reduction words per i8mm call: all of them up to MMLA_CHUNK, else the largest even divisor below it."""
    return max(d for d in range(2, min(words, MMLA_CHUNK) + 1, 2) if words % d == 0)


def _mmla_desc(g: MmlaGemm):
    from .kernels import dot_word

    m, n, w = g.oc, g.pos, g.chunk

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (w, n), "int32", offset_factor=1)
        B = T.match_buffer(b, (m, w), "int32", offset_factor=1)
        C = T.match_buffer(c, (m, n), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:m, 0:n], A[0:w, 0:n], B[0:m, 0:w])
            T.writes(C[0:m, 0:n])
            for i, j, k in T.grid(T.int64(m), T.int64(n), T.int64(w)):
                with T.sblock("update"):
                    vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                    C[vi, vj] = C[vi, vj] + dot_word(A[vk, vj], B[vi, vk], "int8")

    return desc


def _mmla_operand(buf, first, second, lanes):
    """16 bytes for smmla: two 8-byte loads of ``buf`` (at ``first`` and ``second``) as int32x2, their 4 words
    in the order ``lanes`` (weights: [0, 1, 2, 3], one channel's 8 bytes then the other's; activations:
    [0, 2, 1, 3], two words of one position then of the other), as int8x16."""
    return T.reinterpret(
        T.Shuffle([buf.vload(list(first), "int32x2"), buf.vload(list(second), "int32x2")], lanes), dtype="int8x16"
    )


def _mmla_impl_builder(g: MmlaGemm):
    """Per block (i, j) one smmla chain over the chunk's word pairs q: its first operand C's two rows of the block
    (lane 2 r + s: channel 2 i + r, position 2 j + s), Vn the weight bytes of channels 2 i and 2 i + 1 (two 8-byte
    loads of B's rows), Vm the two words of positions 2 j and 2 j + 1 zipped from A's rows 2 q and 2 q + 1; the
    result stored back to C's two rows. Unrolled: LLVM keeps the chains in registers and shares the loads."""
    from tvm import tirx
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder.tirx import prim_func as build_prim_func

    m, n, w = g.oc, g.pos, g.chunk
    with IRBuilder() as ib:
        with build_prim_func():
            a, b, c = (T.arg(k, T.handle()) for k in "abc")
            sa, sb, sc = (tirx.Var(k, "int64") for k in ("sa", "sb", "sc"))
            A = T.match_buffer(a, (w, n), "int32", offset_factor=1, strides=[sa, 1])
            B = T.match_buffer(b, (m, w), "int32", offset_factor=1, strides=[sb, 1])
            C = T.match_buffer(c, (m, n), "int32", offset_factor=1, strides=[sc, 1])
            with T.sblock("root"):
                T.reads(C[0:m, 0:n], A[0:w, 0:n], B[0:m, 0:w])
                T.writes(C[0:m, 0:n])
                blocks = [(i, j) for i in range(m // 2) for j in range(n // 2)]
                acc = {
                    (i, j): T.bind(
                        T.Shuffle(
                            [C.vload([2 * i, 2 * j], "int32x2"), C.vload([2 * i + 1, 2 * j], "int32x2")], [0, 1, 2, 3]
                        )
                    )
                    for i, j in blocks
                }
                for q in range(w // 2):  # word pair by word pair: m / 2 + n / 2 vectors, then every block's smmla
                    vn = [
                        T.bind(_mmla_operand(B, (2 * i, 2 * q), (2 * i + 1, 2 * q), [0, 1, 2, 3]))
                        for i in range(m // 2)
                    ]
                    vm = [
                        T.bind(_mmla_operand(A, (2 * q, 2 * j), (2 * q + 1, 2 * j), [0, 2, 1, 3]))
                        for j in range(n // 2)
                    ]
                    for i, j in blocks:
                        acc[i, j] = T.bind(
                            T.call_llvm_pure_intrin(
                                T.llvm_lookup_intrinsic_id(SMMLA), acc[i, j], vn[i], vm[j], dtype="int32x4"
                            )
                        )
                for i, j in blocks:
                    T.buffer_store(C, T.Shuffle([acc[i, j]], [0, 1]), [2 * i, T.ramp(2 * j, 1, 2)])
                    T.buffer_store(C, T.Shuffle([acc[i, j]], [2, 3]), [2 * i + 1, T.ramp(2 * j, 1, 2)])
    return ib.get()


def mmla_gemm_for(target, channels: int, words: int) -> MmlaGemm | None:
    """The i8mm GEMM (registered on first use) for a dense conv of ``channels`` outputs and ``words`` reduction
    words on ``target``, or None (the sdot GEMM takes it): an aarch64 target with i8mm and dotprod (Armv8.6 and
    later: Cortex-A710/A720, Neoverse V1/V2/N2), an even number of channels and of words (a conv of 3-channel
    RGB, 27 steps = 7 words, stays on sdot). Register tiles of 8 channels (else 4, else 2) x 8 positions: 16
    accumulators, 4 weight and 4 activation vectors of NEON's 32 registers."""
    from tvm.s_tir import TensorIntrin
    from tvm.target.codegen import target_has_features

    if (
        target is None
        or str(target.kind.name) != "llvm"
        or not target_is_arm(target)
        or not target_has_features(["i8mm", "dotprod"], target)
        or channels % 2
        or words % 2
    ):
        return None
    g = MmlaGemm(next(t for t in (8, 4, 2) if channels % t == 0), MMLA_POSITIONS, words, mmla_chunk(words))
    if TensorIntrin.get(g.name, allow_missing=True) is None:
        TensorIntrin.register(g.name, _mmla_desc(g), _mmla_impl_builder(g))
    return g


MMLA_POSITIONS = 8  # positions per register tile of the i8mm GEMM (4 pairs)


# -- Intel AMX: the GEMM on tile registers ------------------------------------------------------------------------

AMX_WINDOW_TILES = 3  # output tiles per depthwise call: 3 accumulators + 3 input tiles + the weights: 7 of 8 tiles
AMX_ROWS = 16  # rows of a tile register (channels of an A tile, reduction words of a B tile)
AMX_WORDS = 16  # 32-bit words per tile row (64 bytes): positions of a B / C tile, reduction words of an A tile
ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA = 158, 0x1023, 18


def tile_config(shapes: dict[int, tuple[int, int]]) -> list[int]:
    """The 64-byte AMX tile configuration (palette 1) of ``{tile: (rows, bytes per row)}`` as 16 little-endian int32
    words (what ldtilecfg reads): bytes 16.. the bytes per row of tiles 0..15 (uint16), bytes 48.. their rows."""
    cfg = bytearray(64)
    cfg[0] = 1
    for t, (rows, colsb) in shapes.items():
        cfg[16 + 2 * t] = colsb & 255
        cfg[17 + 2 * t] = colsb >> 8
        cfg[48 + t] = rows
    return [int(v) for v in np.frombuffer(bytes(cfg), dtype="<i4")]


@dataclass(frozen=True)
class AmxGemm:
    """One tensorize of kernels.gemm_conv on AMX: ``C[16 mo, 16 no] = sum over all ``words`` of
    dot_word(B[k, j], A[i, k])`` with A the weight words (channels x words), B the packed activation words
    (words x positions), C int32; the reduction runs in chunks of ``chunk`` words (a divisor of ``words``, at most
    16), one ``tdpbsud`` per (A tile, B tile) per chunk: signed weights x the uint8 (+ 128) activations of the
    VNNI packing, so the layout and the correction stay those of kernels.DenseConvSpec."""

    mo: int  # channel tiles (16 channels each)
    no: int  # position tiles (16 positions each)
    words: int  # reduction words of the conv (DenseConvSpec.words)
    chunk: int
    blocked: bool = False  # B in tiles, (words / chunk, no, chunk, 16) (kernels.pack_words)

    @property
    def name(self) -> str:
        tiles = "_tiles" if self.blocked else ""
        return f"fcos3d_amx_gemm_{self.mo}x{self.no}_w{self.words}_k{self.chunk}{tiles}_u8s8"

    @property
    def registers(self) -> tuple[list[int], list[int], list[int]]:
        """Tile registers of (C, A, B): the mo x no accumulators first, then the mo weight tiles; the rest hold
        the activation tiles, reused in turn when there are fewer than ``no`` of them (1 x 4: 4 + 1 + 3)."""
        c = list(range(self.mo * self.no))
        a = list(range(len(c), len(c) + self.mo))
        rest = list(range(len(c) + len(a), 8))
        return c, a, [rest[j % len(rest)] for j in range(self.no)]

    def config_words(self) -> list[int]:
        """The 64-byte tile configuration (palette 1) as 16 little-endian int32 words: bytes 16.. the bytes per
        row of tiles 0..15 (uint16), bytes 48.. their rows (uint8)."""
        c, a, b = self.registers
        shapes = {t: (AMX_ROWS, 4 * AMX_WORDS) for t in c}
        shapes.update({t: (AMX_ROWS, 4 * self.chunk) for t in a})
        shapes.update({t: (self.chunk, 4 * AMX_WORDS) for t in b})
        return tile_config(shapes)


def amx_chunk(words: int) -> int | None:
    """Reduction words per tdpbsud for a conv of ``words``: all of them up to 16, else the largest divisor of
    ``words`` in [8, 16] (no tail tile), else None (the VNNI GEMM takes the conv)."""
    if words <= AMX_WORDS:
        return words
    best = max(d for d in range(1, AMX_WORDS + 1) if words % d == 0)
    return best if best >= 8 else None


def _amx_desc(g: AmxGemm):
    from .kernels import dot_word

    m, n, w, kc = AMX_ROWS * g.mo, AMX_WORDS * g.no, g.words, g.chunk
    # B: (words, positions), or in tiles (kernels.pack_words): (words / chunk, position tiles, chunk, 16)
    b_shape = (w // kc, g.no, kc, AMX_WORDS) if g.blocked else (w, n)

    def b_word(B, k, j):
        return B[k // kc, j // AMX_WORDS, k % kc, j % AMX_WORDS] if g.blocked else B[k, j]

    def b_all(B):
        return B[0 : w // kc, 0 : g.no, 0:kc, 0:AMX_WORDS] if g.blocked else B[0:w, 0:n]

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (m, w), "int32", offset_factor=1)
        B = T.match_buffer(b, b_shape, "int32", offset_factor=1)
        C = T.match_buffer(c, (m, n), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(b_all(B), A[0:m, 0:w])
            T.writes(C[0:m, 0:n])
            with T.init():
                for i, j in T.grid(T.int64(m), T.int64(n)):
                    with T.sblock("init"):
                        vi, vj = T.axis.remap("SS", [i, j])
                        C[vi, vj] = 0
            for i, j, k in T.grid(T.int64(m), T.int64(n), T.int64(w)):
                with T.sblock("update"):
                    vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                    C[vi, vj] = C[vi, vj] + dot_word(b_word(B, vk, vj), A[vi, vk], "uint8")

    return desc


def _amx_impl(g: AmxGemm):
    """tilezero the C tiles, per chunk load the A and B tiles and multiply every pair, store C (with its row
    stride). The tile configuration (AmxGemm.config_words) must be loaded: it is per thread and costs about
    500 cycles, so schedule.load_amx_config loads it once per parallel task, not per tile."""
    from tvm import tirx
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder.tirx import prim_func as build_prim_func

    m, n, w, kc = AMX_ROWS * g.mo, AMX_WORDS * g.no, g.words, g.chunk
    c_regs, a_regs, b_regs = g.registers
    c_tiles = [(i, j, c_regs[i * g.no + j]) for i in range(g.mo) for j in range(g.no)]
    tile = _tile

    with IRBuilder() as ib:
        with build_prim_func():
            a, b, c = (T.arg(k, T.handle()) for k in "abc")
            sa, sb, sc = (tirx.Var(k, "int64") for k in ("sa", "sb", "sc"))
            A = T.match_buffer(a, (m, w), "int32", offset_factor=1, strides=[sa, 1])
            C = T.match_buffer(c, (m, n), "int32", offset_factor=1, strides=[sc, 1])
            if g.blocked:  # tile (q, j): one contiguous piece, its rows 64 bytes apart
                st, sj = tirx.Var("st", "int64"), tirx.Var("sj", "int64")
                shape = (w // kc, g.no, kc, AMX_WORDS)
                B = T.match_buffer(b, shape, "int32", offset_factor=1, strides=[st, sj, sb, 1])

                def b_tile(q, j):
                    return T.address_of(B[q, j, 0, 0])

                b_reads = B[0 : w // kc, 0 : g.no, 0:kc, 0:AMX_WORDS]
            else:
                B = T.match_buffer(b, (w, n), "int32", offset_factor=1, strides=[sb, 1])

                def b_tile(q, j):
                    return T.address_of(B[q * kc, j * AMX_WORDS])

                b_reads = B[0:w, 0:n]
            with T.sblock("root"):
                T.reads(b_reads, A[0:m, 0:w])
                T.writes(C[0:m, 0:n])
                for _, _, t in c_tiles:
                    tile("tilezero", T.int8(t))
                with T.serial(0, w // kc) as q:
                    for i in range(g.mo):
                        tile("tileloadd64", T.int8(a_regs[i]), T.address_of(A[i * AMX_ROWS, q * kc]), sa * 4)
                    for j in range(g.no):  # each activation tile just before its products (its register may be reused)
                        tile("tileloadd64", T.int8(b_regs[j]), b_tile(q, j), sb * 4)
                        for i in range(g.mo):
                            tile("tdpbsud", T.int8(c_regs[i * g.no + j]), T.int8(a_regs[i]), T.int8(b_regs[j]))
                for i, j, t in c_tiles:
                    tile("tilestored64", T.int8(t), T.address_of(C[i * AMX_ROWS, j * AMX_WORDS]), sc * 4)
    return ib.get()


def _tile(name: str, *args) -> None:
    """One AMX instruction (LLVM's ``llvm.x86.<name>``, tile numbers as immediates) in the IRBuilder frame."""
    T.evaluate(T.call_llvm_intrin("void", f"llvm.x86.{name}", *args))


def amx_intrin(g) -> str:
    """Register (once) and name the tensor intrinsic of ``g`` (an AmxGemm or an AmxWindow)."""
    from tvm.s_tir import TensorIntrin

    if TensorIntrin.get(g.name, allow_missing=True) is None:
        desc, impl = (_amx_desc, _amx_impl) if isinstance(g, AmxGemm) else (_amx_window_desc, _amx_window_impl)
        TensorIntrin.register(g.name, desc(g), impl(g))
    return g.name


def amx_channels(channels: int) -> int:
    """The output channels an AMX GEMM computes for a dense conv of ``channels``: whole tiles of 16, the filters
    past ``channels`` zero and their outputs never stored, where that at most doubles the channels (a project
    conv of 24 or 40 channels: 32 and 48; not a head output of 1-3); else ``channels`` (then amx_gemm_for
    declines unless they are whole tiles). legalize.py pads the weights, latency/estimate.py counts the same."""
    padded = -(-channels // AMX_ROWS) * AMX_ROWS
    return padded if padded <= 2 * channels else channels


def amx_gemm_for(target, channels: int, words: int) -> AmxGemm | None:
    """The AMX GEMM for a conv of ``channels`` outputs and ``words`` reduction words on ``target``, or None (the
    VNNI / sdot GEMM takes it): an x86 target with amx-int8 (LLVM's host CPU name says so on Sapphire Rapids
    and later; ``mattr = ["-amx-int8"]`` in the board file turns it off), channels a multiple of 16 and a
    reduction of 2 words or more that splits into whole tiles (amx_chunk). Four accumulator tiles: 2 channel x 2
    position tiles (each operand tile used twice: the fewest loads) where the channels allow and the reduction is
    long, else 1 x 4 (64 positions: every channel row of the output gets whole 64-byte lines at once, which is what
    a short reduction, bound by its epilogue's stores, needs; measured per layer in PERFORMANCE.md)."""
    from tvm.target.codegen import target_has_features

    if target is None or str(target.kind.name) != "llvm" or target_is_arm(target):
        return None
    if channels % AMX_ROWS or words < 2 or not target_has_features(["amx-int8", "amx-tile"], target):
        return None  # (a 1-word reduction loop is simplified away: nothing for the intrinsic to match)
    chunk = amx_chunk(words)
    if chunk is None:
        return None
    if channels % (2 * AMX_ROWS) or words <= AMX_WORDS:
        return AmxGemm(1, 4, words, chunk)
    return AmxGemm(2, 2, words, chunk)


@dataclass(frozen=True)
class AmxWindow:
    """One tensorize of kernels.depthwise_amx: ``ty`` x ``tx`` 16 x 16 output tiles of one channel (``ty`` in rows,
    ``tx`` side by side), ``C[i, j] = sum over ky, q of window_dot(A[i + ky, 16 (j // 16) + 4 q ..], B[ky, q, j %
    16])``: per kernel row one tile load of the Toeplitz weights (shared by every tile), per tile one load of 16
    input rows (``words`` words each from the tile's first column, the row stride pad_split's) and one ``tdpbusd``
    (uint8 input x int8 weights); the ``ty tx`` accumulator chains are independent, so one tile's instruction
    latency hides behind the others' (a 16-row plane, 16 x 28: two chains instead of one)."""

    kh: int
    words: int
    ty: int = 1
    tx: int = 1

    @property
    def tiles(self) -> int:
        return self.ty * self.tx

    @property
    def name(self) -> str:
        return f"fcos3d_amx_window_kh{self.kh}_w{self.words}_t{self.ty}x{self.tx}_u8s8"

    def config_words(self) -> list[int]:
        """Tiles 0 .. n-1: C (16 x 64 bytes); 3 .. 2+n: A (16 rows x 4 words bytes); 6: B (words x 64 bytes); n =
        ty tx <= AMX_WINDOW_TILES."""
        shapes = {t: (16, 64) for t in range(self.tiles)}
        shapes.update({3 + t: (16, 4 * self.words) for t in range(self.tiles)})
        shapes[6] = (self.words, 64)
        return tile_config(shapes)


def _amx_window_desc(g: AmxWindow):
    from .kernels import window_dot

    rows, width, kh, w = AMX_ROWS * g.ty, AMX_WORDS * g.tx, g.kh, g.words
    cols = AMX_WORDS * (g.tx - 1) + 4 * w  # the last tile's window ends there

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (rows + kh - 1, 1, cols), "int8", offset_factor=1)
        B = T.match_buffer(b, (kh, w, AMX_WORDS), "int32", offset_factor=1)
        C = T.match_buffer(c, (rows, width), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(A[0 : rows + kh - 1, 0:1, 0:cols], B[0:kh, 0:w, 0:AMX_WORDS])
            T.writes(C[0:rows, 0:width])
            with T.init():
                for i, j in T.grid(T.int64(rows), T.int64(width)):
                    with T.sblock("init"):
                        vi, vj = T.axis.remap("SS", [i, j])
                        C[vi, vj] = 0
            for i, j, ky, q in T.grid(T.int64(rows), T.int64(width), T.int64(kh), T.int64(w)):
                with T.sblock("update"):
                    vi, vj, vky, vq = T.axis.remap("SSRR", [i, j, ky, q])
                    C[vi, vj] = C[vi, vj] + window_dot(
                        lambda k: A[vi + vky, 0, vj // AMX_WORDS * AMX_WORDS + vq * 4 + k],
                        B[vky, vq, vj % AMX_WORDS],
                        "uint8",
                    )

    return desc


def _amx_window_impl(g: AmxWindow):
    from tvm import tirx
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder.tirx import prim_func as build_prim_func

    rows, width, kh, w = AMX_ROWS * g.ty, AMX_WORDS * g.tx, g.kh, g.words
    cols = AMX_WORDS * (g.tx - 1) + 4 * w
    tile = _tile
    places = [(ty, tx) for ty in range(g.ty) for tx in range(g.tx)]  # tile t: rows 16 ty, columns 16 tx

    with IRBuilder() as ib:
        with build_prim_func():
            a, b, c = (T.arg(k, T.handle()) for k in "abc")
            sa, sp, sb0, sb1, sc = (tirx.Var(k, "int64") for k in ("sa", "sp", "sb0", "sb1", "sc"))
            A = T.match_buffer(a, (rows + kh - 1, 1, cols), "int8", offset_factor=1, strides=[sa, sp, 1])
            B = T.match_buffer(b, (kh, w, AMX_WORDS), "int32", offset_factor=1, strides=[sb0, sb1, 1])
            C = T.match_buffer(c, (rows, width), "int32", offset_factor=1, strides=[sc, 1])
            with T.sblock("root"):
                T.reads(A[0 : rows + kh - 1, 0:1, 0:cols], B[0:kh, 0:w, 0:AMX_WORDS])
                T.writes(C[0:rows, 0:width])
                for t in range(g.tiles):
                    tile("tilezero", T.int8(t))
                for ky in range(kh):
                    tile("tileloadd64", T.int8(6), T.address_of(B[ky, 0, 0]), sb1 * 4)
                    for t, (ty, tx) in enumerate(places):
                        tile(
                            "tileloadd64",
                            T.int8(3 + t),
                            T.address_of(A[ty * AMX_ROWS + ky, 0, tx * AMX_WORDS]),
                            sa,
                        )
                    for t in range(g.tiles):
                        tile("tdpbusd", T.int8(t), T.int8(3 + t), T.int8(6))
                for t, (ty, tx) in enumerate(places):
                    tile("tilestored64", T.int8(t), T.address_of(C[ty * AMX_ROWS, tx * AMX_WORDS]), sc * 4)
    return ib.get()


def amx_window_for(
    target, kernel: tuple[int, int], strides: tuple[int, int], out_hw: tuple[int, int]
) -> AmxWindow | None:
    """The AMX form of a depthwise conv on ``target`` (kernels.DepthwiseAmxSpec), or None (the window kernel on the
    dot-product instruction takes it): up to 3 tiles per call (AMX_WINDOW_TILES; amx_window_tiles)."""
    from tvm.target.codegen import target_has_features

    from .kernels import depthwise_amx_applies

    if target is None or str(target.kind.name) != "llvm" or target_is_arm(target):
        return None
    if not depthwise_amx_applies(kernel, strides, out_hw) or not target_has_features(["amx-int8", "amx-tile"], target):
        return None
    ty, tx = amx_window_tiles(out_hw)
    return AmxWindow(kernel[0], -(-(AMX_ROWS + kernel[1] - 1) // 4), ty, tx)


def amx_window_tiles(out_hw: tuple[int, int]) -> tuple[int, int]:
    """(row tiles, column tiles) per depthwise call for ``out_hw`` outputs: the most row tiles (up to
    AMX_WINDOW_TILES) that divide the plane's, then, in what is left of the 3 tiles, the most column tiles that
    divide its (so that a plane one tile high, 16 x 28, still runs two accumulator chains instead of one; four
    chains, 2 x 2 on 32 x 56 with an input register reused, measured: the 3x3 layers 6% faster, the 5x5 ones
    1.5x slower)."""
    rows, cols = (-(-d // AMX_ROWS) for d in out_hw)
    ty = max(t for t in range(1, AMX_WINDOW_TILES + 1) if rows % t == 0)
    tx = max(t for t in range(1, AMX_WINDOW_TILES // ty + 1) if cols % t == 0)
    return ty, tx
