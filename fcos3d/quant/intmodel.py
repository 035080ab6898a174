"""The integer model: QAT2Quantize traces the QAT model into fcos3d.int8 ops; IntModel runs them in torch int64.

int8 in, int32 raw head outputs out, no float on the value path (the conv's float GEMM of integers is exact).
The ops, their (multiplier, shift) and the resize indices are fcos3d.int8's, so this model, the numpy simulator
and the compiled module compute the same integers (docs/int8.md); one dict maps each op class to torch code.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fcos3d.errors import Fcos3dError
from fcos3d.int8 import fixedpoint as fx
from fcos3d.int8.dispatch import check_supported, implementation
from fcos3d.int8.ops import (
    Add,
    Concat,
    Conv,
    GraphInput,
    GraphOutput,
    IntGraph,
    MaxPool,
    ResizeNearest,
    quantize_input,
)

from . import intops
from .observers import INPUT_SCALE
from .qat import QAdd, QConv2d, QInput, QMaxPool2d, QResizeNearest, QuantFCOS3D, conv_int_constants, tracing

__all__ = ["IntModel", "IntInferModel", "QAT2Quantize"]


# ---------------------------------------------------------------------------------------------------------
# The torch implementation of each op (docs/int8.md 4), on int8 tensors; constants come from the op.
# ---------------------------------------------------------------------------------------------------------


def _const(a: np.ndarray, like: torch.Tensor, dtype=None) -> torch.Tensor:
    """An op's numpy constant as a tensor on ``like``'s device (a copy: the op's arrays stay untouched)."""
    return torch.tensor(np.asarray(a if dtype is None else a.astype(dtype)), device=like.device)


def _conv(op: Conv, x: torch.Tensor) -> torch.Tensor:
    w, b = _const(op.weight, x), _const(op.bias, x)
    acc = intops.conv_int8(x, w, b, op.strides, op.pads, op.groups)  # (N, O, H', W') int64
    if op.int32_output:
        return acc.to(torch.int32)
    m = _const(op.multiplier, x, np.int64).reshape(1, -1, 1, 1)
    s = _const(op.shift, x, np.int64).reshape(1, -1, 1, 1)
    return intops.saturate_int8(intops.requantize(acc, m, s), op.relu)


def _add(op: Add, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return intops.add_requantize(a, b, op.rescale, op.relu)


def _resize(op: ResizeNearest, x: torch.Tensor, *like: torch.Tensor) -> torch.Tensor:
    """A gather with the op's index maps (a copy of int8 values)."""
    index_h, index_w = op.index_maps(tuple(x.shape), *(tuple(t.shape) for t in like))
    return x[:, :, _const(index_h, x, np.int64)][:, :, :, _const(index_w, x, np.int64)]


def _maxpool(op: MaxPool, x: torch.Tensor) -> torch.Tensor:
    """-128 padding (equivalent to -inf: every window holds a real element), floor sizes."""
    top, left, bottom, right = op.pads
    xp = F.pad(x.to(torch.int16), (left, right, top, bottom), value=-128)
    # max of int8 values is exact in float32; torch's max_pool2d has no integer kernel on CPU.
    y = F.max_pool2d(xp.to(torch.float32), op.kernel, op.strides, 0)
    return y.to(torch.int8)


def _concat(op: Concat, *xs: torch.Tensor) -> torch.Tensor:
    """Inputs with another scale are requantised to the output's (requantize + saturate), then copied."""
    parts = []
    for x, r in zip(xs, op.rescales, strict=True):
        if r is not None:
            m, s = (torch.tensor(int(v), dtype=torch.int64, device=x.device) for v in r)
            x = intops.saturate_int8(intops.requantize(x, m, s))
        parts.append(x)
    return torch.cat(parts, dim=op.axis)


# One explicit dispatch table: op class -> torch implementation(op, *inputs).
_IMPLS = {Conv: _conv, Add: _add, ResizeNearest: _resize, MaxPool: _maxpool, Concat: _concat}
_EXECUTOR = "the torch int model (fcos3d.quant.intmodel)"


class IntModel(nn.Module):
    """The integer FCOS3D: ``forward(x int8 (N, 3, H, W))`` -> tuple of int32 raw outputs (FCOS3D order).

    ``graph``: the ``IntGraph`` (one int8 input, int32 head outputs); ``ops`` run in order on a dict of named
    tensors; ``output_scales[name]``: float64 (C,) with ``float = int32 * scale`` per channel;
    ``tensor_scales``: every int8 tensor's scale.
    """

    def __init__(self, graph: IntGraph, strides, output_heads):
        super().__init__()
        check_supported(_IMPLS, graph.ops, _EXECUTOR)
        if len(graph.inputs) != 1:
            raise Fcos3dError(f"IntModel runs graphs with one image input, got {[i.name for i in graph.inputs]}")
        not_heads = [o.name for o in graph.outputs if o.dtype != "int32"]
        if not_heads:
            raise Fcos3dError(
                f"outputs {not_heads[:3]} are not int32 head convs: the model must end at the raw prediction convs"
            )
        self.graph = graph
        self.input_name = graph.inputs[0].tensor
        self.input_scale = graph.inputs[0].scale
        self.ops = graph.ops
        self.output_names = [o.name for o in graph.outputs]
        self.tensor_scales = dict(graph.tensor_scales)
        self.output_scales = {o.name: o.scales for o in graph.outputs}
        self.strides = tuple(strides)
        self.output_heads = tuple(output_heads)
        self.widened_weight_scales: list[str] = []  # set by QAT2Quantize: convs whose int32 bias needed a wider s_w

    def run(self, x: torch.Tensor, keep_intermediates: bool = False) -> dict[str, torch.Tensor]:
        """``{name: tensor}`` of the outputs (and with ``keep_intermediates`` every int8 tensor too)."""
        if x.dtype != torch.int8 or x.ndim != 4:
            raise TypeError(f"IntModel takes an int8 (N, 3, H, W) image (byte - 128), got {x.dtype} {tuple(x.shape)}")
        env = {self.input_name: x}
        for op in self.ops:
            env[op.output] = implementation(_IMPLS, op, _EXECUTOR)(op, *(env[t] for t in op.inputs))
        outputs = {o.name: env[o.tensor] for o in self.graph.outputs}
        return {**env, **outputs} if keep_intermediates else outputs

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.run(x)
        return tuple(out[n] for n in self.output_names)


class IntInferModel(nn.Module):
    """The int model for the float post-process: normalised image -> int8 -> int model -> ``int32 * scale``.

    Input quantisation ``fcos3d.int8.ops.quantize_input`` at s = 1/128, ``clamp(floor(img * 128 + 1/2), -128, 127)``,
    is exact for camera input ((u8 - 128) / 128); outputs are float64 (N, C, H, W) per FCOS3D output, as
    ``predict_split`` expects.
    """

    def __init__(self, int_model: IntModel):
        super().__init__()
        self.int_model = int_model
        self.strides = int_model.strides
        self.output_names = int_model.output_names
        self._scales = [torch.from_numpy(int_model.output_scales[n]).reshape(1, -1, 1, 1) for n in self.output_names]

    @staticmethod
    def quantize_input(img: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(quantize_input(img.detach().cpu().numpy(), INPUT_SCALE)).to(img.device)

    @torch.no_grad()
    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raw = self.int_model(self.quantize_input(img))
        return tuple(r.double() * s for r, s in zip(raw, self._scales))


# ---------------------------------------------------------------------------------------------------------
# QAT model -> integer ops, by tracing one forward.
# ---------------------------------------------------------------------------------------------------------


def _f32(v) -> float:
    return float(np.float32(v))


class _Tracer:
    """Receives every quantised op of one forward and writes the integer op with its constants."""

    def __init__(self):
        self.names: dict[int, str] = {}  # id(tensor) -> name
        self.keep: list[torch.Tensor] = []  # keeps traced tensors alive so ids stay unique
        self.scales: dict[str, float] = {}
        self.ops: list = []
        self.input_name: str | None = None
        self.widened: list[str] = []  # convs whose weight scale was widened to fit the int32 bias

    def name(self, t: torch.Tensor, user: str) -> str:
        n = self.names.get(id(t))
        if n is None:
            raise Fcos3dError(
                f"{user} reads a tensor that no quantised op made: the model computes something "
                "outside conv/add/resize/maxpool (is every op a module converted by Float2Calibration?)"
            )
        return n

    def define(self, t: torch.Tensor, name: str, scale: float | None) -> str:
        base, k = name, 1
        while name in self.scales:
            k += 1
            name = f"{base}_{k}"
        self.names[id(t)] = name
        self.keep.append(t)
        self.scales[name] = scale
        return name

    def on_input(self, m: QInput, x: torch.Tensor) -> None:
        self.input_name = self.define(x, "image", _f32(INPUT_SCALE))

    def on_conv(self, m: QConv2d, x: torch.Tensor, y: torch.Tensor) -> None:
        src = self.name(x, m.qname)
        s_in = self.scales[src]
        if s_in is None:
            raise Fcos3dError(f"{m.qname} reads an int32 head output: only the last convs may be int32")
        # The constants of docs/int8.md 4.2, from the one function the QAT forward uses too (a channel whose
        # int32 bias would not fit gets a wider weight scale there; see conv_int_constants).
        w_int, b_int, s_w_t, wide = conv_int_constants(
            m.quantized_weight().detach().cpu(),
            m.weight_scale().detach().cpu(),
            None if m.bias is None else m.bias.detach().cpu(),
            s_in,
        )
        if bool(wide.any()):
            self.widened.append(m.qname)
        s_w = s_w_t.numpy().astype(np.float32).astype(np.float64)  # (O,): the float32 scales the ONNX stores
        weight = w_int.to(torch.int8).numpy()
        fan_in = int(np.prod(weight.shape[1:]))
        if m.bias is not None:
            bound = fx.accumulator_bound(fan_in, int(b_int.abs().max()), 127)
            if bound > fx.INT32_MAX:
                raise Fcos3dError(f"{m.qname}: accumulator bound {bound} exceeds int32 (fan-in {fan_in})")
        bias = b_int.to(torch.int32).numpy()
        p = m.padding
        pads = (p[0], p[1], p[0], p[1])
        relu = m.act in ("relu", "relu6")
        if m.int32_output:
            if m.act is not None:
                raise Fcos3dError(f"{m.qname}: an int32 head conv cannot have an activation")
            out = self.define(y, m.qname, None)
            op = Conv(m.qname, src, out, weight, bias, m.stride, pads, m.groups, False, s_in, s_w, None, None, None)
        else:
            s_out = _f32(m.act_observer.scale().item())
            if m.act == "relu6" and s_out * 127 > 6.0 * (1 + 2**-20):
                raise Fcos3dError(
                    f"{m.qname}: ReLU6 is exported as ReLU + saturation, which needs an output range "
                    f"<= 6 (scale {s_out} gives {s_out * 127}); use relu or recalibrate"
                )
            mult, shift = fx.conv_multipliers(s_in, s_w, s_out)
            out = self.define(y, m.qname, s_out)
            op = Conv(m.qname, src, out, weight, bias, m.stride, pads, m.groups, relu, s_in, s_w, s_out, mult, shift)
        self.ops.append(op)

    def on_add(self, m: QAdd, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> None:
        na, nb = self.name(a, m.qname), self.name(b, m.qname)
        s_a, s_b = self.scales[na], self.scales[nb]
        s_out = _f32(m.act_observer.scale().item())
        rescale = fx.add_multipliers(s_a, s_b, s_out)
        self.ops.append(Add(m.qname, na, nb, self.define(y, m.qname, s_out), s_a, s_b, s_out, rescale))

    def on_resize(self, m: QResizeNearest, x: torch.Tensor, like: torch.Tensor, y: torch.Tensor) -> None:
        """The output size follows ``like`` at run time (x2 or the target size, docs/int8.md 4.5)."""
        src, ref = self.name(x, m.qname), self.name(like, m.qname)
        out = self.define(y, m.qname, self.scales[src])
        self.ops.append(ResizeNearest(m.qname, src, out, scales=None, sizes=None, like=ref))

    def on_maxpool(self, m: QMaxPool2d, x: torch.Tensor, y: torch.Tensor) -> None:
        src = self.name(x, m.qname)
        (ph, pw) = m.padding
        out = self.define(y, m.qname, self.scales[src])
        self.ops.append(MaxPool(m.qname, src, out, m.kernel_size, m.stride, (ph, pw, ph, pw)))


class QAT2Quantize:
    """QAT (or calibrated) QuantFCOS3D -> IntModel, tracing one forward on a zero image of ``input_shape``.

    The ops do not depend on the trace's size (resizes take their output size from ``like`` at run time).
    """

    def __init__(self, input_shape=(1, 3, 128, 128)):
        self.input_shape = tuple(input_shape)

    @torch.no_grad()
    def __call__(self, model: nn.Module, qconfig=None) -> IntModel:
        if not isinstance(model, QuantFCOS3D):
            raise Fcos3dError("QAT2Quantize needs a model converted by Float2Calibration/Float2QAT (and calibrated)")
        was_training = model.training
        model.eval()
        tracer = _Tracer()
        device = next(model.parameters()).device
        with tracing(tracer):
            outputs = model(torch.zeros(self.input_shape, device=device))
        model.train(was_training)
        index = {op.output: k for k, op in enumerate(tracer.ops)}
        ops = list(tracer.ops)
        names = list(model.output_names)
        if len(outputs) != len(names):
            raise Fcos3dError(f"the model returned {len(outputs)} outputs for {len(names)} output names")
        heads = []
        for t, name in zip(outputs, names):
            k = index.get(tracer.name(t, name))
            if k is None or not isinstance(ops[k], Conv) or not ops[k].int32_output:
                raise Fcos3dError(f"output {name} is not made by a head prediction conv (int32)")
            tracer.scales.pop(ops[k].output, None)
            ops[k] = dataclasses.replace(ops[k], output=name)  # the head's int32 output carries the output's name
            heads.append(GraphOutput(name, name, "int32", ops[k].accumulator_scale))
        channels = self.input_shape[1]
        image = GraphInput(
            tracer.input_name, tracer.input_name, tracer.scales[tracer.input_name], False, (None, channels, None, None)
        )  # any batch and size: resizes follow ``like``
        scales = {k: v for k, v in tracer.scales.items() if v is not None}
        int_model = IntModel(IntGraph((image,), tuple(ops), tuple(heads), scales), model.strides, model.output_heads)
        int_model.widened_weight_scales = list(tracer.widened)
        return int_model
