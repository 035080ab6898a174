"""Pass 2: Relax operators (conv2d, add, clip, astype, take, max_pool2d, concat) -> TIR PrimFuncs.

TVM's ``LegalizeOps`` with its TOPI compute definitions, except int8 convs with a constant weight on an LLVM
CPU target: those get kernels.py's definitions (dense: an im2col pack + a GEMM on 4-byte words, the operand
of the int8 dot-product instructions, its weight packed here at compile time; depthwise: a padded copy (a
stage of the conv's own kernel, per channel; pad_split's kernel, split by column phase, only for plain vectors
at a column stride > 1) + the same dot product per tap column, or a Toeplitz GEMM on AMX tiles), which
passes/schedule.py knows how to make fast. Integer dtypes are kept as the ops declare them.
"""

from __future__ import annotations

import tvm
from tvm import IRModule, relax

from ..intrinsics import amx_gemm_for, amx_window_for, dot_intrin_for, vector_lanes
from ..kernels import (
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
    pad_split,
    padded_input,
)
from .schedule import gemm_tile

__all__ = ["emit_pad_split", "legalize"]


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
        amx = amx_gemm_for(target, w.shape[0], words) if intrin else None
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
            position_block=16 * amx.no if amx else lanes * gemm_tile(w.shape[0], out_hw[0] * out_hw[1], lanes)[1],
            dilation=dilation,
        )
        words, correction = pack_dense_weight(w, spec.offset)
        src = x if spec.reads_input else emit_pad_split(bb, x, pads, strides[1])
        im2col = bb.add_func(im2col_words(spec), "im2col")
        cols = bb.emit(relax.call_tir(im2col, [src], relax.TensorType((spec.words, spec.cols_pitch), "int32")))
        packed_dtype = intrin.packed_dtype if intrin else "int8"
        return bb.call_te(
            lambda ct, wt, cc: gemm_conv(ct, wt, cc, spec, packed_dtype),
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
        )
        top, left, bottom, _ = pads
        dpads, flip = (top, left, bottom, spec.right_pad), spec.offset != 0
        words, correction = pack_depthwise_weight(w, strides, spec.offset)
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
            relax.const(correction, "int32"),
            primfunc_name_hint="depthwise_int8",
        )
    return _nn_conv2d(bb, call)


def legalize(mod: IRModule) -> IRModule:
    """Every high-level Relax call becomes a ``call_tir`` of a PrimFunc (no float op appears: checked after).
    Reads the current target (pipeline.py runs the passes under ``with target``) for the conv kernels."""
    return relax.transform.LegalizeOps(customize_legalize_map={"relax.nn.conv2d": _conv2d})(mod)
