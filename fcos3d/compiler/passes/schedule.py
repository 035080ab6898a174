"""Pass 5: give every fused PrimFunc a CPU schedule (loop order, threads, vectors, dot-product instructions).

Plain legalised TIR is one serial scalar loop nest per op (7.5x slower than onnxruntime, notes/tvm.md). Here,
by the kernel a function holds (kernels.KERNEL_ATTR on its anchor block):
  int8_gemm   output tiles of (channels x positions) in registers, the reduction in 4-byte steps by the dot
              instruction (intrinsics.py) or plain vectors, the requantising epilogue applied per tile;
              threads over tiles, the im2col pack threaded and vectorised on its own; on a CPU with Intel
              AMX (and channels in whole tiles) 16 x 16 int32 tiles of the tile unit instead, the whole
              reduction per tile in one tensorized call (intrinsics.AmxGemm, load_amx_config)
  depthwise   threads over channels; the channel's padded copy first (kernels.padded_input, in L1), then per
              group of 4 (or 2) output rows the dot instruction per (row, kernel row, column phase, 4 taps), its
              words a byte shuffle of the input row (or plain vectors), the epilogue per group of rows; where
              the epilogue packs the next pointwise conv's words (kernels.pack_words), threads over words and
              the 4 channels of a word per group of rows, the words written as whole 64-byte vectors
  (other)     injective chains inlined into one loop, threads over the outer part, vectors inside;
              reductions (max pool, TOPI convs) threaded over their outer spatial loop
Only loops change, never the arithmetic: results stay bit-exact (tests/compiler/test_random_graphs.py).
Functions MetaSchedule tuned (pipeline.py, --tune-trials) arrive marked ``tirx.is_scheduled`` and are kept.
"""

from __future__ import annotations

import dataclasses
import math
from contextvars import ContextVar

import tvm
from tvm import IRModule, s_tir, tirx
from tvm.ir.expr import TensorLoad
from tvm.s_tir.schedule import ScheduleError
from tvm.sym.pattern import detect_linear_equation
from tvm_ffi import structural_equal, structural_mutate, structural_walk

from ..intrinsics import (
    ARCH_PRCTL,
    ARCH_REQ_XCOMP_PERM,
    MMLA_POSITIONS,
    XFEATURE_XTILEDATA,
    AmxWindow,
    amx_gemm_for,
    amx_intrin,
    amx_window_tiles,
    dot_intrin_for,
    mmla_gemm_for,
    vector_lanes,
    window_intrin,
)
from ..kernels import KERNEL_ATTR, WINDOW_CONSECUTIVE_ATTR, WINDOW_STRIDE_ATTR, WINDOW_TAPS_ATTR

__all__ = ["apply_default_schedule", "gemm_tile", "load_amx_config", "position_block", "schedule", "schedule_func"]

ACCUMULATOR_REGISTERS = 24  # of the 32 vector registers of AVX-512 and NEON: the rest hold operands
MAX_CHANNEL_TILE = 8
# Output rows a depthwise conv computes together per vector column, the first that divides its rows: 4 rows were
# 5% faster than 1 on the 512x896 FCOS3D, 8 no better than 4 (PERFORMANCE.md, session 14)
DEPTHWISE_ROWS = (4, 2)
RUN_BYTES = 256 * 1024  # activations one channel tile of a GEMM sweeps before the next (from L2; position_run)
AMX_TASKS = 16  # at most this many parallel tasks of an AMX kernel (each loads the tile configuration: ~190 ns)
_SPACE: ContextVar[bool] = ContextVar("fcos3d_schedule_space", default=False)  # apply_default_schedule(space=)
# kernels.pack_words in a depthwise kernel: the padded planes of a word's 4 channels are made once where they take
# at most this much (the 64x112 head: 34 KiB, 0.94-0.97x the whole 512x896 model against per-group rows)
PACK_PLANES_BYTES = 64 * 1024
AMX_CONFIG_ATTR = "fcos3d.amx_config"  # task loop annotation: the tile configuration, for load_amx_config


def _extent(sch: s_tir.Schedule, loop) -> int:
    return int(sch.get(loop).extent)


def _kernel_block(sch: s_tir.Schedule, kind: str):
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        if sch.get(block).annotations.get(KERNEL_ATTR) == kind:
            return block
    return None


def _blocks(sch: s_tir.Schedule) -> list:
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def _inline_after(sch: s_tir.Schedule, anchor) -> object:
    """Inline the injective blocks after ``anchor`` into the last block (the one writing the output);
    returns the last block (``anchor`` itself when nothing follows)."""
    blocks = _blocks(sch)
    names = [sch.get(b).name_hint for b in blocks]
    after = blocks[names.index(sch.get(anchor).name_hint) + 1 :]
    for block in after[:-1]:
        sch.compute_inline(block)
    return after[-1] if after else anchor


def _row_lanes(width: int, lanes: int) -> int:
    """Vector length for a row of ``width``: the whole row when short, else the largest divisor of the width
    in [lanes/2, lanes] (no tail to mask), else ``lanes`` (a tail the vectoriser scalarises)."""
    if width <= lanes:
        return width
    for d in range(lanes, lanes // 2 - 1, -1):
        if width % d == 0:
            return d
    return lanes


def _vectorize_inner(sch: s_tir.Schedule, block, lanes: int) -> None:
    loop = sch.get_loops(block)[-1]
    n = _extent(sch, loop)
    if n > lanes:
        _, loop = sch.split(loop, [None, _row_lanes(n, lanes)])
    if _extent(sch, loop) > 1:
        sch.vectorize(loop)


def _vectorize_row(sch: s_tir.Schedule, block, lanes: int) -> None:
    """The block's innermost loop in whole vectors of ``lanes``: a ragged row's last vector is predicated here and
    moved back to end at the row's end by hoist_lane_predicates (_shifted_tail) where that is safe."""
    loop = sch.get_loops(block)[-1]
    if _extent(sch, loop) > lanes:
        _, loop = sch.split(loop, [None, lanes])
    sch.vectorize(loop)


def gemm_tile(channels: int, positions: int, lanes: int) -> tuple[int, int]:
    """(channels, position vectors) per register tile of a ``channels`` x ``positions`` GEMM. Each reduction step
    of a tile issues t_oc * t_pos dot instructions, t_oc weight broadcasts, t_pos activation loads and 2 loop
    instructions; the positions are padded to whole tiles (legalize.py pads the packed columns to
    ``lanes * t_pos``). The tile minimises padded vectors x instructions per dot, within the accumulator
    registers: 8 x 3 for 256 channels at 64x112 (7168 positions: 450 vectors, 1.54 instructions per dot, not
    8 x 2 without padding: 448 vectors, 1.75), 6 x 4 for 96 channels, 4 x 4 for 7 vectors."""
    vectors = -(-positions // lanes)
    best = None
    for t_pos in (1, 2, 3, 4):
        padded = -(-vectors // t_pos) * t_pos
        for t_oc in range(1, MAX_CHANNEL_TILE + 1):
            if channels % t_oc or t_oc * t_pos > ACCUMULATOR_REGISTERS:
                continue
            cost = padded * (1 + (t_oc + t_pos + 2) / (t_oc * t_pos))
            if best is None or (cost, -t_oc) < best[0]:
                best = ((cost, -t_oc), (t_oc, t_pos))
    return best[1]


def position_block(channels: int, positions: int, lanes: int, amx, mmla: bool = False) -> int:
    """Positions per tile of a dense conv's GEMM, to which legalize.py pads the packed columns: 16 x the AMX
    position tiles (``amx``, intrinsics.AmxGemm), MMLA_POSITIONS on Arm i8mm (``mmla``), else ``lanes`` x
    gemm_tile's position vectors."""
    if amx is not None:
        return 16 * amx.no
    return MMLA_POSITIONS if mmla else lanes * gemm_tile(channels, positions, lanes)[1]


def _schedule_gemm(sch: s_tir.Schedule, target) -> None:
    """kernels.gemm_conv: tiles of acc[o, p] (channels x vectors of positions) in registers, threads over
    tiles, the reduction in 4-byte words by the dot instruction, the epilogue per tile. Each channel tile
    sweeps a run of position tiles (position_run) before the next, as on AMX."""
    intrin = dot_intrin_for(target)
    lanes = intrin.lanes if intrin else vector_lanes(target)
    dot = _kernel_block(sch, "int8_gemm")
    out = _inline_after(sch, dot)
    oc, positions, rb = sch.get_loops(dot)
    n_oc, n_pos = _extent(sch, oc), _extent(sch, positions)
    # The epilogue over flattened positions, the loop the tiles run over (the output is (1, OC, OH, OW)).
    _, _, out_h, out_w = (int(d) for d in sch.get(out).writes[0].source.shape)
    sch.transform_block_layout(out, lambda n, o, y, x: (n, o, y * out_w + x))
    amx = amx_gemm_for(target, n_oc, _extent(sch, rb)) if intrin else None
    if amx is not None:
        if any(len(r.source.shape) == 4 for r in sch.get(dot).reads):  # kernels.pack_words' tiles
            amx = dataclasses.replace(amx, blocked=True)
        _schedule_gemm_amx(sch, dot, out, amx, lanes, target)
        return
    mmla = mmla_gemm_for(target, n_oc, _extent(sch, rb)) if intrin else None
    if mmla is not None:
        _schedule_gemm_mmla(sch, dot, out, mmla, lanes)
        return
    t_oc, t_pos = gemm_tile(n_oc, out_h * out_w, lanes)
    if n_pos % (t_pos * lanes):
        raise ValueError(f"GEMM: {n_pos} packed positions are not whole {t_oc} x {t_pos} tiles (legalize.py pads them)")
    po, pm, pi = sch.split(positions, [None, t_pos, lanes])
    oo, oi = sch.split(oc, [None, t_oc])
    _sweep_channel_tiles(sch, po, oo, (rb, oi, pm, pi), out, t_pos * lanes * 4 * _extent(sch, rb))
    if intrin is None:
        sch.vectorize(pi)  # before decompose_reduction: vectorize wants a block with its init
    init = sch.decompose_reduction(dot, rb)
    if intrin is not None:
        sch.tensorize(pi, intrin.name)
    sch.unroll(oi)
    sch.unroll(pm)
    sch.vectorize(sch.get_loops(init)[-1])
    _vectorize_inner(sch, out, lanes)


def _sweep_channel_tiles(sch: s_tir.Schedule, po, oo, inner, out, tile_bytes: int) -> None:
    """Order a register-tiled GEMM's loops: channel tiles ``oo`` sweep runs of position tiles ``po`` (position_run
    of tiles of ``tile_bytes`` activations), then ``inner``; threads over (run group, channel tile), the epilogue
    ``out`` per run (or per tile where there is one position tile per run or one channel tile)."""
    run = position_run(_extent(sch, po), tile_bytes)
    if run > 1 and _extent(sch, oo) > 1:
        pg, at = sch.split(po, [None, run])
        sch.reorder(pg, oo, at, *inner)
        tile = sch.fuse(pg, oo)
    else:
        sch.reorder(po, oo, *inner)
        tile = at = sch.fuse(po, oo)
    sch.parallel(tile)
    sch.reverse_compute_at(out, at)


def _schedule_gemm_mmla(sch: s_tir.Schedule, dot, out, mmla, lanes: int) -> None:
    """kernels.gemm_conv on Arm i8mm (intrinsics.MmlaGemm): register tiles of mmla.oc channels x MMLA_POSITIONS
    positions, the reduction in chunks of mmla.chunk words, one tensorized call per tile and chunk (its
    accumulators in registers through the chunk); channel tiles sweep runs of position tiles (position_run),
    threads over tiles, the epilogue per tile (as _schedule_gemm)."""
    oc, positions, rb = sch.get_loops(dot)
    if _extent(sch, positions) % mmla.pos:
        raise ValueError(f"i8mm GEMM: {_extent(sch, positions)} packed positions are not whole tiles (legalize.py)")
    po, pi = sch.split(positions, [None, mmla.pos])
    oo, oi = sch.split(oc, [None, mmla.oc])
    rbo, rbi = sch.split(rb, [None, mmla.chunk])
    _sweep_channel_tiles(sch, po, oo, (rbo, oi, pi, rbi), out, mmla.pos * 4 * mmla.words)
    init = sch.decompose_reduction(dot, rbo)
    sch.tensorize(oi, mmla.name)
    sch.vectorize(sch.get_loops(init)[-1])
    _vectorize_inner(sch, out, lanes)


def _amx_task_count(n: int, target) -> int:
    """Parallel tasks for ``n`` units of an AMX kernel: each task loads the tile configuration (ldtilecfg, about
    190 ns measured), so as few as keep every core busy: the smallest divisor of ``n`` that is at least the
    target's cores (whole units per task), else the largest divisor below that; at most AMX_TASKS."""
    cores = int(target.attrs.get("num-cores", 1) or 1) if target is not None else 1
    divisors = [d for d in range(1, min(n, AMX_TASKS) + 1) if n % d == 0]
    enough = [d for d in divisors if d >= cores]
    return enough[0] if enough else divisors[-1]


def position_run(blocks: int, block_bytes: int) -> int:
    """Position tiles (of ``block_bytes`` activation words each) one channel tile of a GEMM (AMX or dot
    instruction) sweeps before the next channel tile reads them again: the most that divide ``blocks`` and
    whose activations fit RUN_BYTES. Sweeping one position tile through every channel tile in turn wrote 48-64
    bytes into each of up to 256 channel planes per tile: the 16 -> 96 conv at 256x448 took 2.65 ms on AMX,
    with runs 1.44 ms; the 512x896 model 0.926x on AMX, 0.91x on the VNNI GEMM (PERFORMANCE.md, session 18)."""
    return max(r for r in range(1, blocks + 1) if blocks % r == 0 and (r == 1 or r * block_bytes <= RUN_BYTES))


def _schedule_gemm_amx(sch: s_tir.Schedule, dot, out, amx, lanes: int, target) -> None:
    """kernels.gemm_conv on AMX tiles (intrinsics.AmxGemm): per tile of 16 mo channels x 16 no positions the
    whole reduction in one tensorized call (tile registers, stored to a small local accumulator), then the
    epilogue of that tile in vectors. Each channel tile sweeps a run of position tiles (position_run)
    before the next channel tile reads the same run again from L2, so the output is written 16 channel rows
    at a time in long runs rather than 64 bytes into every channel row in turn. Threads over runs of position
    tiles, as few as keep the cores busy (_amx_task_count), each loading the tile configuration once
    (load_amx_config)."""
    oc, positions, rb = sch.get_loops(dot)
    if _extent(sch, positions) % (16 * amx.no):
        raise ValueError(f"AMX GEMM: {_extent(sch, positions)} packed positions are not whole tiles (legalize.py)")
    po, pi = sch.split(positions, [None, 16 * amx.no])
    n = _extent(sch, po)
    task, po = sch.split(po, [_amx_task_count(n, target), None])
    oo, oi = sch.split(oc, [None, 16 * amx.mo])
    run = position_run(_extent(sch, po), 16 * amx.no * 4 * amx.words)
    if _extent(sch, oo) > 1 and run > 1:
        pg, pr = sch.split(po, [None, run])
        sch.reorder(task, pg, oo, pr, oi, pi, rb)
        sch.reverse_compute_at(out, pr)
    else:
        sch.reorder(task, po, oo, oi, pi, rb)
        sch.reverse_compute_at(out, oo)
    sch.parallel(task)
    sch.tensorize(oi, amx_intrin(amx))
    _vectorize_inner(sch, out, lanes)
    sch.annotate(task, AMX_CONFIG_ATTR, amx.config_words())  # a schedule step: MetaSchedule's traces keep it


_KEEP = object()


def _with_body(realize, body, alloc=(), init=_KEEP):
    """The block ``realize`` with ``body`` (and the buffers ``alloc`` allocated besides its own; ``init`` replacing
    its init when given)."""
    b = realize.block
    block = s_tir.SBlock(
        b.iter_vars,
        b.reads,
        b.writes,
        b.name_hint,
        body,
        b.init if init is _KEEP else init,
        [*b.alloc_buffers, *alloc],
        b.match_buffers,
        b.annotations,
    )
    return s_tir.SBlockRealize(realize.iter_values, realize.predicate, block)


def _rewrite(stmt, visit):
    """``stmt`` rebuilt through its sequences, loops and blocks, each node first offered to ``visit``: a node it
    returns replaces that one (not entered), None enters it."""
    new = visit(stmt)
    if new is not None:
        return new
    if isinstance(stmt, tirx.SeqStmt):
        return tirx.SeqStmt([_rewrite(s, visit) for s in stmt.seq])
    if isinstance(stmt, s_tir.SBlockRealize):
        return _with_body(stmt, _rewrite(stmt.block.body, visit))
    if isinstance(stmt, tirx.For):
        body = _rewrite(stmt.body, visit)
        return tirx.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind, body, stmt.thread_binding, stmt.annotations)
    return stmt


def _drop_tile_init(stmt):
    """A block that zeroes its tile itself (a tensorized AMX call: ``tilezero``, then ``tilestored`` over the whole
    accumulator) without its init: tensorize keeps the reduction's init, a memset of the 1 KiB tile before every
    call. None for any other node."""
    if isinstance(stmt, s_tir.SBlockRealize) and stmt.block.init is not None:
        if "llvm.x86.tilezero" in stmt.block.body.script():
            return _with_body(stmt, stmt.block.body, init=None)
    return None


def load_amx_config(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """A function with AMX tiles (its task loop annotated by _schedule_gemm_amx) gets, on entry, Linux's
    permission (arch_prctl ARCH_REQ_XCOMP_PERM: without it the first tile instruction raises SIGILL; an
    idempotent system call, so any process that loads the library, ours or an RPC server, may run it) and the
    64-byte tile configuration in memory; each parallel task loads it (``ldtilecfg``, per thread: about 500
    cycles, too many for every tile) before its tiles. schedule_func runs it; tuning.py leaves the AMX convs
    out of MetaSchedule's tasks."""
    root = func.body
    if not isinstance(root, s_tir.SBlockRealize):
        return func
    cfg = tirx.decl_buffer((16,), "int32", name="amx_config")
    load = tirx.Evaluate(
        tirx.call_llvm_intrin("void", "llvm.x86.ldtilecfg", tirx.address_of(tirx.BufferLoad(cfg, [0])))
    )
    found: list = []

    def task(stmt):
        """The task loop annotated by the AMX rule: without the annotation, loading the configuration first."""
        if not isinstance(stmt, tirx.For) or AMX_CONFIG_ATTR not in stmt.annotations:
            return None
        annotations = dict(stmt.annotations)
        found.append([int(v) for v in annotations.pop(AMX_CONFIG_ATTR)])
        body = tirx.SeqStmt([load, _rewrite(stmt.body, _drop_tile_init)])
        return tirx.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind, body, stmt.thread_binding, annotations)

    body = _rewrite(root.block.body, task)
    if not found:
        return func
    if any(words != found[0] for words in found):
        raise ValueError("load_amx_config: one function with two AMX tile configurations")
    ask = tirx.call_extern("int64", "syscall", ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
    stores = [tirx.BufferStore(cfg, tirx.const(v, "int32"), [q]) for q, v in enumerate(found[0])]
    body = tirx.SeqStmt([tirx.Evaluate(ask), *stores, body])
    return func.with_body(_with_body(root, body, alloc=[cfg]))


def _pad_per_channel(sch: s_tir.Schedule, loop) -> None:
    """kernels.padded_input, when the kernel holds it: computed under ``loop`` (one channel), so that its buffer
    shrinks to one channel's padded planes and stays in L1 for the conv that reads it; the fill and the in-bound
    copy apart (decompose_padding: no test per element), both in vectors of whole cache lines."""
    pad = _kernel_block(sch, "pad")
    if pad is None:
        return
    sch.compute_at(pad, loop)
    if _SPACE.get():  # MetaSchedule's design space: TVM 0.27 fails to print a trace with decompose_padding
        return
    outer = sch.get(loop)
    depth = 1 + next(i for i, lp in enumerate(sch.get_loops(pad)) if sch.get(lp).same_as(outer))
    fill = sch.decompose_padding(pad, sch.get_loops(pad)[depth])
    inner = sch.get_loops(fill)[depth:]
    plane = sch.fuse(*inner) if len(inner) > 1 else inner[0]
    # a memset of the channel's planes in whole cache lines (the tail: hoist_lane_predicates)
    if _extent(sch, plane) > 64:
        _, plane = sch.split(plane, [None, 64])
    sch.vectorize(plane)
    # the in-bound copy: rows in vectors of 64 bytes, a ragged row's last vector moved back to end at the row's end
    # (hoist_lane_predicates; a row of 112 was two vectors of 56, each three loads and stores)
    _vectorize_row(sch, pad, 64)


def _schedule_depthwise_dot(sch: s_tir.Schedule, target) -> None:
    """kernels.depthwise_conv: threads over channels; per group of DEPTHWISE_ROWS output rows (4 or 2 where they
    divide the rows, else 1), vectors of ``lanes`` outputs of each row, one dot instruction (its words a shuffle of
    the input row) or plain vectors per (kernel row, 4-tap group), the epilogue per group of rows."""
    intrin = dot_intrin_for(target)
    conv = _kernel_block(sch, "depthwise_dot")
    out = _inline_after(sch, conv)
    c, y, x, ky, ph, j = sch.get_loops(conv)
    lanes = intrin.lanes if intrin else vector_lanes(target)
    rows = next((r for r in DEPTHWISE_ROWS if _extent(sch, y) % r == 0), 1)
    if _is_pack(sch, out):
        _schedule_depthwise_pack(sch, conv, out, rows, lanes, intrin)
        return
    xo, xi = sch.split(x, [None, lanes])
    if rows > 1:  # several output rows per vector column: their dot instructions interleave (unrolled)
        y, yi = sch.split(y, [None, rows])
        sch.reorder(c, y, xo, yi, ky, ph, j, xi)
        sch.unroll(yi)
    else:
        sch.reorder(c, y, xo, ky, ph, j, xi)
    sch.parallel(c)
    _pad_per_channel(sch, c)
    sch.reverse_compute_at(out, y)
    if len(sch.get_loops(out)) > 2:  # a row loop under y (an output 1 wide has none: y must stay serial)
        _vectorize_inner(sch, out, lanes)
    if intrin is None:
        sch.vectorize(xi)  # before decompose_reduction: vectorize wants a block with its init
    init = sch.decompose_reduction(conv, ky)
    if intrin is not None:
        sch.tensorize(xi, _window_intrin(sch, conv, intrin))
    for loop in (ky, ph, j):
        sch.unroll(loop)
    sch.vectorize(sch.get_loops(init)[-1])


def _window_intrin(sch: s_tir.Schedule, conv, intrin) -> str:
    """The window instruction of a depthwise_dot block: its column stride and word form (kernels.depthwise_conv)."""
    notes = sch.get(conv).annotations
    stride = int(notes.get(WINDOW_STRIDE_ATTR, 1))
    consecutive = bool(int(notes.get(WINDOW_CONSECUTIVE_ATTR, 0)))
    return window_intrin(intrin, stride, consecutive, int(notes.get(WINDOW_TAPS_ATTR, 4)))


def _is_pack(sch: s_tir.Schedule, block) -> bool:
    return sch.get(block).annotations.get(KERNEL_ATTR) == "pack_words"


def _schedule_depthwise_pack(sch: s_tir.Schedule, conv, pack, rows: int, lanes: int, intrin) -> None:
    """kernels.depthwise_conv whose epilogue writes the next pointwise conv's words (kernels.pack_words, fused
    into it): the loops are the pack's, threads over words (4 channels), per group of ``rows`` output rows the
    4 channels' dot products (as _schedule_depthwise_dot's, each channel's padded rows made just before; into a
    small accumulator), then their words, a vector of 16 positions at a time (one 64-byte store of 4 requantised
    channels). The producer is placed by compute_at under the pack's loops: reverse_compute_at cannot map the
    pack's (block, position) indices back to rows and columns."""
    t, b, i, r = sch.get_loops(pack)
    _, _, out_w_padded = (int(d) for d in sch.get(conv).writes[0].source.shape)
    per_row = out_w_padded // _extent(sch, r)  # whole vectors: out_w_padded = W
    bg, bi = sch.split(b, [None, rows * per_row])
    sch.reorder(t, i, bg, bi, r)
    q = sch.fuse(t, i)  # one word: 4 channels
    sch.parallel(q)
    sch.compute_at(conv, bg)
    loops = sch.get_loops(conv)
    depth = next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(bg)))
    # compute_at leaves out the loops of extent 1: the row loop of one row, reduction loops of one step
    c, *ys, x = loops[depth + 1 : depth + (4 if rows > 1 else 3)]
    taps = loops[depth + (4 if rows > 1 else 3) :]
    xo, xi = sch.split(x, [None, lanes])
    sch.reorder(c, xo, *ys, *taps, xi)
    # the padded planes of the word's 4 channels, once, where they are small (PACK_PLANES_BYTES); else each
    # channel's rows that the group reads, just before them (4 large planes spill L2)
    pad = _kernel_block(sch, "pad")
    plane = math.prod(int(d) for d in sch.get(pad).writes[0].source.shape[1:]) if pad is not None else 0
    _pad_per_channel(sch, q if 4 * plane <= PACK_PLANES_BYTES else c)
    for y in ys:
        sch.unroll(y)
    if intrin is None:
        sch.vectorize(xi)
    init = sch.decompose_reduction(conv, taps[0] if taps else xi)
    if intrin is not None:
        sch.tensorize(xi, _window_intrin(sch, conv, intrin))
    for loop in taps:
        sch.unroll(loop)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.vectorize(r)


def _schedule_generic(sch: s_tir.Schedule, target) -> None:
    """Injective chains: one block, threads over the outer loop, vectors inside. Reductions (max pool, TOPI
    convs): threads over the outer spatial loops, their padding inlined."""
    lanes = vector_lanes(target)
    blocks = _blocks(sch)
    for block in blocks[:-1]:
        try:
            sch.compute_inline(block)
        except ScheduleError:  # a reduction or a block read twice: stays a loop nest of its own
            pass
    for block in _blocks(sch):
        loops = sch.get_loops(block)
        iters = sch.get(block).iter_vars
        if len(loops) != len(iters) or any(iv.iter_type != tirx.IterVar.DataPar for iv in iters):
            # a reduction (or a block not bound one loop per axis): keep its order, add threads
            leading = []
            for lp, iv in zip(loops, iters, strict=False):
                if iv.iter_type != tirx.IterVar.DataPar:
                    break
                leading.append(lp)
            if leading:  # (n, c, h) of a pooling or conv output: enough iterations for the threads
                sch.parallel(sch.fuse(*leading[:3]) if len(leading) > 1 else leading[0])
            continue
        # NCHW: threads over (n, c), vectors over (h, w): per-channel constants (requantisation multipliers,
        # shifts, biases) stay scalars in the vector loop instead of becoming gathers.
        k = 2 if len(loops) == 4 else 1
        outer = sch.fuse(*loops[:k]) if k > 1 else loops[0]
        inner = sch.fuse(*loops[k:]) if len(loops) - k > 1 else (loops[k] if len(loops) > k else None)
        sch.parallel(outer)
        if inner is not None:
            _vectorize_inner(sch, block, lanes * 4)


def _schedule_depthwise_amx(sch: s_tir.Schedule, target) -> None:
    """kernels.depthwise_amx: per channel, blocks of ``ty`` x ``tx`` 16 x 16 output tiles (intrinsics.
    amx_window_tiles), each one tensorized call (intrinsics.AmxWindow: per kernel row a tile load of the Toeplitz
    weights, and per tile one of input rows and one tdpbusd), then the epilogue of the block in vectors. Threads over runs of channels
    (_amx_task_count), each loading the tile configuration once."""
    conv = _kernel_block(sch, "depthwise_amx")
    out = _inline_after(sch, conv)
    c, y, x, ky, q = sch.get_loops(conv)
    window = AmxWindow(_extent(sch, ky), _extent(sch, q), *amx_window_tiles((_extent(sch, y), _extent(sch, x))))
    yo, yi = sch.split(y, [None, 16 * window.ty])
    xo, xi = sch.split(x, [None, 16 * window.tx])
    n = _extent(sch, c)
    task, c = sch.split(c, [_amx_task_count(n, target), None])
    sch.reorder(task, c, yo, xo, yi, xi, ky, q)
    sch.parallel(task)
    _pad_per_channel(sch, c)
    # The epilogue runs once per row of tile blocks, over whole output rows: rows whose width is not a multiple of
    # the vector length end in one vector moved back to end at the row's end (hoist_lane_predicates), where an
    # epilogue per tile had a scalar tail (a last tile of 8 columns in 56) or 14-lane vectors (rows of 28).
    sch.reverse_compute_at(out, yo)
    sch.tensorize(yi, amx_intrin(window))
    _vectorize_row(sch, out, vector_lanes(target))
    sch.annotate(task, AMX_CONFIG_ATTR, window.config_words())


_RULES = {
    "int8_gemm": _schedule_gemm,
    "depthwise_dot": _schedule_depthwise_dot,
    "depthwise_amx": _schedule_depthwise_amx,
}


def apply_default_schedule(sch: s_tir.Schedule, target, space: bool = False) -> None:
    """The rule of the kernel ``sch``'s function holds (module docstring), applied in place. ``space``: as
    MetaSchedule's extra design space (tuning.py), so that tuning measures it beside its own candidates, without
    the one step TVM 0.27 cannot print in a design space's trace (decompose_padding: _pad_per_channel)."""
    kinds = {sch.get(b).annotations.get(KERNEL_ATTR) for b in _blocks(sch)}
    rule = next((_RULES[k] for k in _RULES if k in kinds), _schedule_generic)
    token = _SPACE.set(space)
    try:
        rule(sch, target)
    finally:
        _SPACE.reset(token)


def _all_lanes(predicate, lane: tirx.Var, lanes: int):
    """For a block predicate ``a(lane) < b`` with ``a - b`` linear in the vector lane, increasing: the scalar
    condition that it holds for every lane (it holds at the last one); None for any other predicate."""
    if not isinstance(predicate, tirx.LT):
        return None
    coeffs = detect_linear_equation(predicate.a - predicate.b, [lane])
    if len(coeffs) != 2 or not isinstance(coeffs[0], tirx.IntImm) or coeffs[0].value < 0:
        return None
    return coeffs[0] * (lanes - 1) + coeffs[1] < 0


def _written(stmt) -> list:
    """The buffers the blocks under ``stmt`` write."""
    out: list = []
    structural_walk(stmt, (s_tir.SBlock, lambda node: out.extend(w.source for w in node.writes)))
    return out


def _shifted_tail(stmt: tirx.For, body, enclosing: list) -> tirx.SBlockRealize | None:
    """The last, partial vector of a predicated row ``position < P`` moved back to end at P: lanes P - n .. P - 1,
    all in bounds, the first ones computed again (the same values: the block is a pure element-wise map). None
    unless that is safe: a data-parallel block with no init and no buffers of its own that reads none of the
    buffers it writes, P a constant >= n, every block variable that moves with the lane equal to the predicate's
    position (so it stays in [P - n, P)), and every loop the row's start depends on (``enclosing``: (loop
    variable, its body)) a loop of this block alone, writing nothing the block reads: the
    positions before this vector were then read by this block's own earlier vectors, from inputs computed before
    the loop (an epilogue run per AMX tile, inside the loop of the tiles, would read another tile's accumulator,
    which TVM allocates per tile: not shifted)."""
    lane, lanes, pred, block = stmt.loop_var, stmt.extent.value, body.predicate, body.block
    if not isinstance(pred, tirx.LT) or not isinstance(pred.b, tirx.IntImm) or pred.b.value < lanes:
        return None
    coeffs = detect_linear_equation(pred.a - pred.b, [lane])
    if len(coeffs) != 2 or not isinstance(coeffs[0], tirx.IntImm) or coeffs[0].value != 1:
        return None
    if block.init is not None or block.alloc_buffers or block.match_buffers:
        return None
    if any(int(iv.iter_type) != 0 for iv in block.iter_vars):  # 0: kDataPar
        return None
    loads: list = []
    structural_walk(block.body, (TensorLoad, lambda node: loads.append(node)))
    read = [ld.source for ld in loads]
    written = [w.source for w in block.writes]
    if any(any(r.same_as(w) for w in written) for r in read):
        return None
    for v in tirx.analysis.undefined_vars(coeffs[1]):
        loop_body = next((b for var, b in enclosing if var.same_as(v)), None)
        if loop_body is None or any(any(r.same_as(w) for w in _written(loop_body)) for r in read):
            return None
    analyzer = tvm.sym.Analyzer()
    for value in body.iter_values:
        moves = any(v.same_as(lane) for v in tirx.analysis.undefined_vars(value))
        if moves and not analyzer.can_prove_equal(value, pred.a):
            return None
    shift = lane - lanes - coeffs[1]  # the position P - n + lane
    values = [_substitute(v, [(lane, shift)]) for v in body.iter_values]
    return s_tir.SBlockRealize(values, tirx.const(True, "bool"), block)


def _hoist(stmt, enclosing: tuple = ()):
    """Rebuild ``stmt`` with every vectorized loop over a predicated block split in two by _all_lanes: the
    vector body without the predicate where every lane is in bounds, else the last vector shifted back to end in
    bounds (_shifted_tail), or where that is not safe, the lanes one by one with the predicate. ``enclosing``:
    (loop variable, its body) of the loops around ``stmt``."""
    if isinstance(stmt, tirx.SeqStmt):
        return tirx.SeqStmt([_hoist(s, enclosing) for s in stmt.seq])
    if isinstance(stmt, s_tir.SBlockRealize):
        return _with_body(stmt, _hoist(stmt.block.body, enclosing))
    if not isinstance(stmt, tirx.For):
        return stmt
    body = stmt.body
    if (
        stmt.kind == tirx.ForKind.VECTORIZED
        and isinstance(body, s_tir.SBlockRealize)
        and isinstance(stmt.extent, tirx.IntImm)
    ):
        cond = _all_lanes(body.predicate, stmt.loop_var, stmt.extent.value)
        if cond is not None:
            whole = s_tir.SBlockRealize(body.iter_values, tirx.const(True, "bool"), body.block)
            vector = tirx.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind, whole, annotations=stmt.annotations)
            tail = _shifted_tail(stmt, body, list(enclosing))
            if tail is not None:
                rest = tirx.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind, tail, annotations=stmt.annotations)
            else:
                rest = tirx.For(stmt.loop_var, stmt.min, stmt.extent, tirx.ForKind.SERIAL, body)
            return tirx.IfThenElse(cond, vector, rest)
    inner = _hoist(body, (*enclosing, (stmt.loop_var, body)))
    return tirx.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind, inner, stmt.thread_binding, stmt.annotations)


def hoist_lane_predicates(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """A tile's epilogue over positions padded to whole tiles has the predicate ``position < P`` on each element
    (reverse_compute_at). When P is not a multiple of the vector length, TVM's vectoriser sees a per-lane condition
    and scalarises the whole loop, in every tile: a 33x33 conv ran 2.2x slower than a 32x33 one. The predicate holds
    for all lanes but in the last vector, so that test moves out of the vector loop (_hoist); the last vector itself
    runs as a whole vector moved back to end at P where that is safe (_shifted_tail)."""
    return func.with_body(_hoist(func.body))


def _depthwise_buffer(func: tirx.PrimFunc):
    """The accumulator buffer of a depthwise_dot block in ``func`` (the buffer its init block writes), or None."""
    found = []

    def visit(node):
        if node.annotations.get(KERNEL_ATTR) == "depthwise_dot" and node.writes:
            found.append(node.writes[0].source)

    structural_walk(func.body, (s_tir.SBlock, visit))
    return found[0] if found and all(b.same_as(found[0]) for b in found) else None


def fold_depthwise_start(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """kernels.depthwise_conv adds ``start`` (-offset * sum(w), per channel) to every sum its dot instructions
    accumulate (``acc[c, y, x] + start[c]``, inlined into the epilogue), and the fused epilogue usually adds the
    conv's bias (per channel) next; here each accumulator starts at ``start[c] + bias[c]`` instead of 0 and the
    epilogue reads it as it is: two vector additions fewer per vector of outputs (the scalar sum is made once per
    channel), the same int32 result (int32 sums wrap: the order of the terms does not matter). A term folds where
    every read of the accumulator outside its tensorized update is that addition (a plain-vector update reads it
    too: nothing folds)."""
    acc = _depthwise_buffer(func)
    for _ in range(2 if acc is not None else 0):  # start, then the bias
        folded = _fold_channel_term(func, acc)
        if folded is None:
            break
        func = folded
    return func


def _fold_channel_term(func: tirx.PrimFunc, acc):
    """fold_depthwise_start's one step: ``acc[c, ...] + t[.., c, ..]`` -> ``acc[c, ...]``, the init ``acc = v`` ->
    ``acc = v + t[.., c, ..]``; None where it does not apply."""
    terms, loads, inits = [], [], []

    def load(node):
        if node.source.same_as(acc):
            loads.append(node)

    def add(node):
        term = _channel_term(node, acc)
        if term is not None:
            terms.append(term)

    def block(node):
        if _initializes(node, acc):
            inits.append(isinstance(node.body, tirx.BufferStore) and node.body.buffer.same_as(acc))

    structural_walk(func.body, [(TensorLoad, load), (tirx.Add, add), (s_tir.SBlock, block)])
    if not terms or len(terms) != len(loads) or not inits or not all(inits):
        return None
    source, at, template = terms[0]
    if any(not t[0].same_as(source) or t[1] != at for t in terms):
        return None

    def term(channel):
        return tirx.BufferLoad(source, [channel if i == at else v for i, v in enumerate(template)])

    def drop_add(node, mutator):
        return node.a if _channel_term(node, acc) is not None else mutator.default_mutate(node)

    def init_block(node, mutator):
        if not _initializes(node, acc):
            return mutator.default_mutate(node)
        store, channel = node.body, node.body.indices[0]
        zero = isinstance(store.value, tirx.IntImm) and store.value.value == 0
        value = term(channel) if zero else store.value + term(channel)
        region = [
            node.writes[0].region[0] if i == at else tvm.ir.Range.from_min_extent(v, 1) for i, v in enumerate(template)
        ]
        return s_tir.SBlock(
            node.iter_vars, [*node.reads, tirx.BufferRegion(source, region)], node.writes, node.name_hint,
            tirx.BufferStore(acc, value, store.indices), node.init, node.alloc_buffers, node.match_buffers,
            node.annotations,
        )  # fmt: skip

    return func.with_body(structural_mutate(func.body, [(tirx.Add, drop_add), (s_tir.SBlock, init_block)]))


def _initializes(block, acc) -> bool:
    """``block`` is the init block decompose_reduction made for the accumulator ``acc``."""
    return block.name_hint.endswith("_init") and bool(block.writes) and block.writes[0].source.same_as(acc)


def _channel_term(node, acc):
    """(buffer, channel axis, indices) of ``t`` in ``acc[c, ...] + t[0, .., c, .., 0]`` (every index of t a
    constant but one, which is acc's channel index), else None."""
    a, b = node.a, node.b
    if not (isinstance(a, TensorLoad) and a.source.same_as(acc) and isinstance(b, TensorLoad)):
        return None
    channel = [i for i, v in enumerate(b.indices) if structural_equal(v, a.indices[0])]
    if len(channel) != 1 or any(not isinstance(v, tirx.IntImm) for i, v in enumerate(b.indices) if i != channel[0]):
        return None
    return b.source, channel[0], list(b.indices)


def prefetch_next_rows(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """A depthwise kernel that copies each channel's input rows into its padded rows group by group of output rows
    (_schedule_depthwise_pack over PACK_PLANES_BYTES) reads its input from memory in bursts of a few rows, a new
    4 KiB page every group or two, where the hardware's stream prefetcher stops and must learn the stream again;
    then computes with the memory idle. Here each 64-byte step of the copy also prefetches (into L2) the same
    columns of the row the next group will copy: the input arrives while this group computes. Where the copy is not
    in groups of rows (whole planes: no loop outside it moves its rows) nothing changes; a prefetch never faults,
    and its row is clamped to the input's last one anyway."""
    return func.with_body(_prefetch_rows(func.body, []))


def _prefetch_rows(stmt, outer: list):
    """``stmt`` with prefetch_next_rows' prefetch before every vectorised copy of a ``pad`` block under it;
    ``outer``: the loops around ``stmt``, outermost first."""
    if isinstance(stmt, tirx.SeqStmt):
        return tirx.SeqStmt([_prefetch_rows(s, outer) for s in stmt.seq])
    if isinstance(stmt, s_tir.SBlockRealize):
        return _with_body(stmt, _prefetch_rows(stmt.block.body, outer))
    if isinstance(stmt, tirx.IfThenElse):
        other = None if stmt.else_case is None else _prefetch_rows(stmt.else_case, outer)
        return tirx.IfThenElse(stmt.condition, _prefetch_rows(stmt.then_case, outer), other)
    if not isinstance(stmt, tirx.For):
        return stmt
    fetch = _next_row_fetch(stmt, outer)
    body = _prefetch_rows(stmt.body, [*outer, stmt])
    if fetch is not None:
        body = tirx.SeqStmt([fetch, body])
    return tirx.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind, body, stmt.thread_binding, stmt.annotations)


def _next_row_fetch(loop, outer: list):
    """The prefetch for one step of ``loop`` when its body is the vectorised copy of a ``pad`` block (input row r,
    columns from q: the input at row r + d, where d is how far the rows move per step of the nearest loop outside
    the copy's own row loop), else None."""
    inner = loop.body
    if not (isinstance(inner, tirx.For) and inner.kind == tirx.ForKind.VECTORIZED):
        return None
    realize = inner.body
    if not (isinstance(realize, s_tir.SBlockRealize) and realize.block.name_hint == "pad"):
        return None
    block = realize.block
    loads = []
    structural_walk(block.body, (TensorLoad, lambda node: loads.append(node)))
    sources = [ld for ld in loads if not ld.source.same_as(block.writes[0].source)]
    if len(sources) != 1 or len(sources[0].indices) != 4 or not outer:
        return None
    binding = [(iv.var, v) for iv, v in zip(block.iter_vars, realize.iter_values)]
    lane0 = [(inner.loop_var, inner.min)]
    analyzer = tvm.sym.Analyzer()
    indices = [analyzer.simplify(_substitute(_substitute(i, binding), lane0)) for i in sources[0].indices]
    row = indices[2]
    # the copy's own loops: this one and, where it holds nothing else, its parent (the rows of one copy)
    own = 1 if outer[-1].body.same_as(loop) else 0
    step = None
    for lp in reversed(outer[: len(outer) - own]):
        moved = analyzer.simplify(_substitute(row, [(lp.loop_var, lp.loop_var + 1)]) - row)
        if isinstance(moved, tirx.IntImm) and moved.value > 0:
            step = moved.value
            break
    if step is None:
        return None
    last = int(sources[0].source.shape[2]) - 1
    indices[2] = tirx.min(row + step, last)
    address = tirx.address_of(tirx.BufferLoad(sources[0].source, indices))
    i32 = [tirx.const(v, "int32") for v in (0, 2, 1)]  # read, locality 2 (prefetcht1: into L2), data cache
    return tirx.Evaluate(tirx.call_llvm_intrin("void", "llvm.prefetch.p0", address, *i32))


def _substitute(expr, pairs: list):
    """``expr`` with each variable of ``pairs`` (variable, value) replaced by its value."""

    def var(node, mutator):
        return next((value for v, value in pairs if v.same_as(node)), node)

    return structural_mutate(expr, [(tirx.Var, var)])


def schedule_func(func: tirx.PrimFunc, target) -> tirx.PrimFunc:
    """One PrimFunc -> the same computation with the loops of its rule, marked scheduled."""
    sch = s_tir.Schedule(func)
    apply_default_schedule(sch, target)
    scheduled = fold_depthwise_start(hoist_lane_predicates(sch.mod["main"]))
    if dot_intrin_for(target) is not None:
        scheduled = prefetch_next_rows(scheduled)
    return load_amx_config(scheduled).with_attr("tirx.is_scheduled", True)


def schedule(mod: IRModule) -> IRModule:
    """Schedule every PrimFunc not yet scheduled, for the current target (pipeline.py sets it)."""
    target = tvm.target.Target.current(allow_none=True)
    out = IRModule(dict(mod.functions.items()), attrs=mod.attrs)
    for gv, func in mod.functions.items():
        if isinstance(func, tirx.PrimFunc) and not (func.attrs and func.attrs.get("tirx.is_scheduled")):
            out[gv] = schedule_func(func, target)
    return out
