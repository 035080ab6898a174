"""Pass 2: Relax operators (conv2d, add, clip, astype, take, max_pool2d, concat) -> TIR PrimFuncs.

TVM's ``LegalizeOps`` with its TOPI compute definitions, except int8 convs with a constant weight on an LLVM
CPU target: those get kernels.py's definitions (dense: an im2col pack + a GEMM on 4-byte words, the operand
of the int8 dot-product instructions, its weight packed here at compile time; depthwise: a padded copy (a
stage of the conv's own kernel, per channel; pad_split's kernel, split by column phase, only for plain vectors
at a column stride > 1) + the same dot product per tap column, or a Toeplitz GEMM on AMX tiles), which
passes/schedule.py knows how to make fast. A pointwise conv (AMX, or the 16-lane VNNI GEMM) whose input only a
depthwise conv produces (depthwise_fed) reads words that the depthwise kernel packs in its epilogue
(kernels.pack_words, which fuse.py puts into the depthwise conv's function) instead of an im2col. Integer dtypes
are kept as the ops declare them.
"""

from __future__ import annotations

from contextvars import ContextVar

import numpy as np
import tvm
from tvm import IRModule, relax

from ..intrinsics import amx_channels, amx_gemm_for, amx_window_for, dot_intrin_for, mmla_gemm_for, vector_lanes
from ..kernels import (
    PACK_BLOCK,
    DenseConvSpec,
    DepthwiseAmxSpec,
    DepthwiseSpec,
    depthwise_amx,
    depthwise_conv,
    gemm_conv,
    im2col_words,
    pack_dense_weight,
    pack_depthwise_toeplitz,
    pack_depthwise_weight,
    pack_words,
    packs_words,
    pad_split,
    padded_input,
)
from .fuse import FUSE_AS_ELEMWISE
from .schedule import position_block

__all__ = ["depthwise_fed", "emit_pad_split", "legalize", "pack_chunk"]

# the int8 Vars that only a depthwise conv's epilogue produces and only one conv reads (depthwise_fed)
_DEPTHWISE_FED: ContextVar[frozenset] = ContextVar("depthwise_fed", default=frozenset())
_EPILOGUE_OPS = ("relax.add", "relax.clip", "relax.astype", "relax.call_tir")


def depthwise_fed(mod: IRModule, target) -> frozenset:
    """The Vars of ``mod``'s Relax functions that are a depthwise conv's output after its epilogue (bias add,
    requantisation, clip, cast: calls whose first argument is the previous value, the rest constants), where
    neither it nor any value on that chain has another use. Such a Var, the input of a pointwise conv (on AMX or
    the 16-lane VNNI GEMM: pack_chunk), is packed into words by the depthwise kernel itself (kernels.pack_words),
    since FuseOps puts the pack into the depthwise conv's function; on ``target``, the depthwise kernel of the dot
    instructions (schedule.py's _schedule_depthwise_pack), not the one on AMX tiles."""
    found = set()
    for func in mod.functions.values():
        if not isinstance(func, relax.Function):
            continue
        bindings, uses = {}, {}

        def visit(expr):
            if isinstance(expr, relax.Var):
                uses[expr] = uses.get(expr, 0) + 1

        relax.analysis.post_order_visit(func.body, visit)
        for block in func.body.blocks:
            for binding in block.bindings:
                if isinstance(binding, relax.VarBinding):
                    bindings[binding.var] = binding.value
        for var, value in bindings.items():
            if str(getattr(var.ty, "dtype", "")) != "int8":
                continue  # the int32 accumulator or a step of the epilogue, not what a conv reads
            chain, cur = [var], value
            while isinstance(cur, relax.Call) and getattr(cur.op, "name", None) in _EPILOGUE_OPS:
                args = list(cur.args[1]) if cur.op.name == "relax.call_tir" else list(cur.args)
                if not args or not isinstance(args[0], relax.Var) or args[0] not in bindings:
                    break
                if any(isinstance(a, relax.Var) for a in args[1:]):
                    break  # a second tensor (a residual add): not the conv's own epilogue
                chain.append(args[0])
                cur = bindings[args[0]]
            if (
                isinstance(cur, relax.Call)
                and getattr(cur.op, "name", None) == "relax.nn.conv2d"
                and int(cur.attrs.groups) > 1
                and int(cur.attrs.groups) == int(cur.ty.shape[1])
                and all(uses.get(v, 0) == 1 for v in chain)
                and not _on_amx_window(cur, target)
            ):
                found.add(var)
    return frozenset(found)


def pack_chunk(x: relax.Expr, w, strides, pads, out_hw, position_block: int, amx, intrin) -> int:
    """Words per tile of the words a pointwise conv of weight ``w`` reads packed by its depthwise producer
    (kernels.pack_words; depthwise_fed), or 0 (im2col packs them): whole words of channels, rows of whole
    16-position blocks, whole position tiles (``position_block``); on AMX the GEMM's chunk, on the 16-lane VNNI
    GEMM tiles of up to 16 words (the GEMM reads one word of 16 positions at a time)."""
    words = -(-int(w.shape[1]) // 4)
    applies = (
        intrin is not None
        and (amx is not None or intrin.lanes == PACK_BLOCK)
        and x in _DEPTHWISE_FED.get()
        and packs_words(int(w.shape[1]), w.shape[2:], strides, pads, out_hw, position_block)
    )
    if not applies:
        return 0
    return amx.chunk if amx is not None else max(d for d in range(1, PACK_BLOCK + 1) if words % d == 0)


def _on_amx_window(conv: relax.Call, target) -> bool:
    """The depthwise conv takes kernels.depthwise_amx (whose schedule packs no words)."""
    strides = tuple(int(s) for s in conv.attrs.strides)
    w_shape, out_shape = conv.args[1].ty.shape, conv.ty.shape
    kernel = (int(w_shape[2]), int(w_shape[3]))
    out_hw = (int(out_shape[2]), int(out_shape[3]))
    return dot_intrin_for(target) is not None and amx_window_for(target, kernel, strides, out_hw) is not None


def emit_pad_split(
    bb: relax.BlockBuilder, x: relax.Expr, pads: tuple[int, ...], stride_w: int, flip: bool = False, value: int = 0
) -> relax.Var:
    """kernels.pad_split of x (1, C, H, W): (C, Hp, stride_w, Wq), the padded input (``value``) split by column
    phase (``flip``: + 128 as uint8, for the x86 depthwise kernel). Also import_int_graph's max pool (-128)."""
    _, c, h, w = (int(d) for d in x.ty.shape)
    top, left, bottom, right = pads
    shape = (c, h + top + bottom, stride_w, -(-(w + left + right) // stride_w))
    gv = bb.add_func(pad_split(c, (h, w), pads, stride_w, flip, value), "pad_split_flip" if flip else "pad_split")
    return bb.emit(relax.call_tir(gv, [x], relax.TensorType(shape, "int8")))


def _conv2d(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """int8 conv2d (NCHW, OIHW, int32 out, constant weight, batch 1; dense with any dilation, depthwise without)
    -> a kernels.py call_tir; anything else -> TVM's default legalisation."""
    from tvm.relax.transform.legalize_ops.nn import _nn_conv2d

    target = tvm.target.Target.current(allow_none=True)
    attrs = call.attrs
    x, weight = call.args
    if (
        target is None
        or str(target.kind.name) != "llvm"
        or not isinstance(weight, tvm.ir.expr.Constant)
        or str(attrs.data_layout) != "NCHW"
        or str(attrs.kernel_layout) != "OIHW"
        or str(attrs.out_dtype) != "int32"
        or str(x.ty.dtype) != "int8"
        or str(weight.ty.dtype) != "int8"
        or int(x.ty.shape[0]) != 1
    ):
        return _nn_conv2d(bb, call)
    w = weight.value.numpy()
    groups = int(attrs.groups)
    strides = (int(attrs.strides[0]), int(attrs.strides[1]))
    pads = tuple(int(p) for p in attrs.padding)
    out_hw = (int(call.ty.shape[2]), int(call.ty.shape[3]))
    dilation = (int(attrs.dilation[0]), int(attrs.dilation[1]))
    if groups == 1:
        intrin = dot_intrin_for(target)
        lanes = intrin.lanes if intrin else vector_lanes(target)
        words = -(-w.shape[1] * w.shape[2] * w.shape[3] // 4)
        channels, padded = w.shape[0], amx_channels(w.shape[0])
        amx = amx_gemm_for(target, padded, words) if intrin else None
        if amx is not None and padded > channels:  # zero filters up to whole tiles of 16
            w = np.concatenate([w, np.zeros((padded - channels, *w.shape[1:]), w.dtype)])
        mmla = amx is None and intrin is not None and mmla_gemm_for(target, w.shape[0], words) is not None
        block = position_block(w.shape[0], out_hw[0] * out_hw[1], lanes, amx, mmla)
        spec = DenseConvSpec(
            in_channels=w.shape[1],
            in_hw=(int(x.ty.shape[2]), int(x.ty.shape[3])),
            kernel=(w.shape[2], w.shape[3]),
            strides=strides,
            pads=pads,
            out_hw=out_hw,
            offset=intrin.offset if intrin else 0,
            # the packed columns are padded to whole register tiles (schedule.gemm_tile): no mask, no tail
            # (AMX: whole tiles of 16 positions, schedule._schedule_gemm_amx)
            position_block=block,
            dilation=dilation,
            producer_packed=pack_chunk(x, w, strides, pads, out_hw, block, amx, intrin),
        )
        words, correction = pack_dense_weight(w, spec.offset)
        if spec.producer_packed:  # the depthwise conv before writes the words (pack_words, fused into it)
            pack = bb.call_te(
                lambda xt: pack_words(xt, spec.offset, spec.producer_packed), x, primfunc_name_hint="pack_words"
            )
            gv = pack.args[0]
            bb.update_func(gv, bb.get()[gv].with_attr(FUSE_AS_ELEMWISE, True))  # fuse.py: into the depthwise conv
            cols = bb.emit(pack)
        else:
            src = x if spec.reads_input else emit_pad_split(bb, x, pads, strides[1])
            im2col = bb.add_func(im2col_words(spec), "im2col")
            cols = bb.emit(relax.call_tir(im2col, [src], relax.TensorType((spec.words, spec.cols_pitch), "int32")))
        packed_dtype = intrin.packed_dtype if intrin else "int8"
        return bb.call_te(
            lambda ct, wt, cc: gemm_conv(ct, wt, cc, spec, packed_dtype, channels),
            cols,
            relax.const(words, "int32"),
            relax.const(correction, "int32"),
            primfunc_name_hint="conv2d_int8",
        )
    if groups == w.shape[0] == int(x.ty.shape[1]) and w.shape[1] == 1 and dilation == (1, 1):
        intrin = dot_intrin_for(target)
        window = amx_window_for(target, (w.shape[2], w.shape[3]), strides, out_hw) if intrin else None
        if window is not None:  # a Toeplitz GEMM per channel on AMX tiles (kernels.DepthwiseAmxSpec)
            aspec = DepthwiseAmxSpec(
                (w.shape[2], w.shape[3]), (int(x.ty.shape[2]), int(x.ty.shape[3])), pads, out_hw, 128
            )
            top, left, _, _ = pads
            apads = (top, left, aspec.bottom_pad, aspec.right_pad)
            bands, correction = pack_depthwise_toeplitz(w, aspec.offset)
            return bb.call_te(
                lambda xt, bt, cc: depthwise_amx(padded_input(xt, apads, True), bt, cc, aspec),
                x,
                relax.const(bands, "int32"),
                relax.const(correction, "int32"),
                primfunc_name_hint="depthwise_int8",
            )
        spec = DepthwiseSpec(
            kernel=(w.shape[2], w.shape[3]),
            strides=strides,
            in_w=int(x.ty.shape[3]),
            pads=pads,
            out_hw=out_hw,
            offset=intrin.offset if intrin else 0,
            lanes=intrin.lanes if intrin else vector_lanes(target),
            flat=intrin is not None,
        )
        top, left, bottom, _ = pads
        dpads, flip = (top, left, bottom, spec.right_pad), spec.offset != 0
        words, start = pack_depthwise_weight(w, spec)
        packed_dtype = intrin.packed_dtype if intrin else "int8"
        if strides[1] == 1 or intrin is not None:
            # padded per channel inside the kernel (kernels.padded_input), unsplit: a strided window instruction
            # reads each column phase in place (intrinsics.window_intrin)
            src, pad = x, lambda xt: padded_input(xt, dpads, flip)
        else:  # plain vectors want the phases apart: pad_split's own kernel
            src, pad = emit_pad_split(bb, x, dpads, strides[1], flip=flip), lambda pt: pt
        return bb.call_te(
            lambda xt, wt, cc: depthwise_conv(pad(xt), wt, cc, spec, packed_dtype),
            src,
            relax.const(words, "int32"),
            relax.const(start, "int32"),
            primfunc_name_hint="depthwise_int8",
        )
    return _nn_conv2d(bb, call)


def legalize(mod: IRModule) -> IRModule:
    """Every high-level Relax call becomes a ``call_tir`` of a PrimFunc (no float op appears: checked after).
    Reads the current target (pipeline.py runs the passes under ``with target``) for the conv kernels."""
    token = _DEPTHWISE_FED.set(depthwise_fed(mod, tvm.target.Target.current(allow_none=True)))
    try:
        return relax.transform.LegalizeOps(customize_legalize_map={"relax.nn.conv2d": _conv2d})(mod)
    finally:
        _DEPTHWISE_FED.reset(token)
