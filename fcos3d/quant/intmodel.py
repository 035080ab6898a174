"""The integer model: QAT2Quantize traces the QAT model into a list of int8 ops and runs them in torch int64.

int8 in, int32 raw head outputs out, no float on the value path (the conv's float64 GEMM of integers is
exact); every (multiplier, shift) comes from fcos3d.runtime.reference.fixedpoint, so this model, the
numpy simulator and the compiled module compute the same integers (docs/int8.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fcos3d.errors import Fcos3dError
from fcos3d.runtime.reference import fixedpoint as fx

from . import intops
from .observers import INPUT_SCALE
from .qat import QAdd, QConv2d, QInput, QMaxPool2d, QResizeNearest, QuantFCOS3D, conv_int_constants, tracing

__all__ = ["IntConv", "IntAdd", "IntResize", "IntMaxPool", "IntModel", "IntInferModel", "QAT2Quantize"]


@dataclass(eq=False)
class IntConv:
    """Conv (docs/int8.md 4.2) or, with ``output_scale`` None, an int32 head conv (4.3).

    weight int8 (O, C/g, kh, kw); bias int32 (O,); scales as the float32 values the ONNX stores
    (``input_scale``/``output_scale`` Python floats, ``weight_scale`` float32 (O,)); multiplier/shift
    int32 (O,) from ``fixedpoint.conv_multipliers`` (None for int32 output). pads = (top, left, bottom, right).
    """

    name: str
    input: str
    output: str
    weight: torch.Tensor
    bias: torch.Tensor
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]
    groups: int
    relu: bool
    input_scale: float
    weight_scale: np.ndarray
    output_scale: float | None
    multiplier: np.ndarray | None
    shift: np.ndarray | None

    def __post_init__(self):
        if self.multiplier is not None:
            self._m = torch.from_numpy(self.multiplier.astype(np.int64)).reshape(1, -1, 1, 1)
            self._s = torch.from_numpy(self.shift.astype(np.int64)).reshape(1, -1, 1, 1)

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    @property
    def accumulator_scale(self) -> np.ndarray:
        """float64 (O,): real value of one accumulator step, ``s_in * s_w[c]`` (the int32 output's scale)."""
        return np.float64(self.input_scale) * self.weight_scale.astype(np.float64)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        acc = intops.conv_int8(x, self.weight, self.bias, self.stride, self.pads, self.groups)  # (N, O, H', W') int64
        if self.output_scale is None:
            return acc.to(torch.int32)
        return intops.saturate_int8(intops.requantize(acc, self._m, self._s), self.relu)


@dataclass(eq=False)
class IntAdd:
    """int8 + int8 -> int8 with the add rule (docs/int8.md 4.4)."""

    name: str
    a: str
    b: str
    output: str
    scale_a: float
    scale_b: float
    output_scale: float
    rescale: fx.AddRescale
    relu: bool = False

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.a, self.b)

    def run(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return intops.add_requantize(a, b, self.rescale, self.relu)


def _nearest_index(size_in: int, size_out: int) -> torch.Tensor:
    """ONNX nearest, asymmetric, floor: ``src = floor(dst * in / out)`` in exact integer arithmetic."""
    return torch.div(torch.arange(size_out) * size_in, size_out, rounding_mode="floor")


@dataclass(eq=False)
class IntResize:
    """Nearest upsample of ``input`` to the size of ``like`` (x2 when it is exactly twice); a copy of int8 values."""

    name: str
    input: str
    like: str
    output: str

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input, self.like)

    def run(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        h, w = like.shape[-2:]
        return x[:, :, _nearest_index(x.shape[-2], h)][:, :, :, _nearest_index(x.shape[-1], w)]


@dataclass(eq=False)
class IntMaxPool:
    """int8 max pool, -128 padding (equivalent to -inf: every window holds a real element), floor sizes."""

    name: str
    input: str
    output: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = self.padding
        xp = F.pad(x.to(torch.int16), (pw, pw, ph, ph), value=-128)
        # max of int8 values is exact in float32; torch's max_pool2d has no integer kernel on CPU.
        y = F.max_pool2d(xp.to(torch.float32), self.kernel, self.stride, 0)
        return y.to(torch.int8)


IntOp = IntConv | IntAdd | IntResize | IntMaxPool


class IntModel(nn.Module):
    """The integer FCOS3D: ``forward(x int8 (N, 3, H, W))`` -> tuple of int32 raw outputs (FCOS3D order).

    ``ops`` run in order on a dict of named int8 tensors; ``output_scales[name]``: float64 (C,) with
    ``float = int32 * scale`` per channel; ``tensor_scales``: every int8 tensor's scale.
    """

    def __init__(self, input_name: str, ops: list, output_names: list[str], tensor_scales: dict[str, float],
                 strides, output_heads):
        super().__init__()
        self.input_name = input_name
        self.input_scale = INPUT_SCALE
        self.ops = list(ops)
        self.output_names = list(output_names)
        self.tensor_scales = dict(tensor_scales)
        self.strides = tuple(strides)
        self.output_heads = tuple(output_heads)
        self.widened_weight_scales: list[str] = []  # set by QAT2Quantize: convs whose int32 bias needed a wider s_w
        heads = {op.output: op for op in self.ops if isinstance(op, IntConv) and op.output_scale is None}
        missing = [n for n in self.output_names if n not in heads]
        if missing:
            raise Fcos3dError(f"outputs {missing[:3]} are not int32 head convs: the model must end at the raw prediction convs")
        self.output_scales = {n: heads[n].accumulator_scale for n in self.output_names}

    def run(self, x: torch.Tensor, keep_intermediates: bool = False) -> dict[str, torch.Tensor]:
        """``{name: tensor}`` of the outputs (and with ``keep_intermediates`` every int8 tensor too)."""
        if x.dtype != torch.int8 or x.ndim != 4:
            raise TypeError(f"IntModel takes an int8 (N, 3, H, W) image (byte - 128), got {x.dtype} {tuple(x.shape)}")
        env = {self.input_name: x}
        for op in self.ops:
            env[op.output] = op.run(*(env[t] for t in op.inputs))
        return env if keep_intermediates else {n: env[n] for n in self.output_names}

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.run(x)
        return tuple(out[n] for n in self.output_names)


class IntInferModel(nn.Module):
    """The int model for the float post-process: normalised image -> int8 -> int model -> ``int32 * scale``.

    Input quantisation ``clamp(floor(img * 128 + 1/2), -128, 127)`` is exact for camera input
    ((u8 - 128) / 128); outputs are float64 (N, C, H, W) per FCOS3D output, as ``predict_split`` expects.
    """

    def __init__(self, int_model: IntModel):
        super().__init__()
        self.int_model = int_model
        self.strides = int_model.strides
        self.output_names = int_model.output_names
        self._scales = [torch.from_numpy(int_model.output_scales[n]).reshape(1, -1, 1, 1) for n in self.output_names]

    @staticmethod
    def quantize_input(img: torch.Tensor) -> torch.Tensor:
        return torch.floor(img.double() * 128.0 + 0.5).clamp(-128, 127).to(torch.int8)

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
            raise Fcos3dError(f"{user} reads a tensor that no quantised op made: the model computes something "
                              "outside conv/add/resize/maxpool (is every op a module converted by Float2Calibration?)")
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
        w_int, b_int, s_w_t, wide = conv_int_constants(m.quantized_weight().detach().cpu(), m.weight_scale().detach().cpu(),
                                                       None if m.bias is None else m.bias.detach().cpu(), s_in)
        if bool(wide.any()):
            self.widened.append(m.qname)
        s_w = s_w_t.numpy().astype(np.float32)  # (O,)
        weight = w_int.to(torch.int8)
        fan_in = int(np.prod(weight.shape[1:]))
        if m.bias is not None:
            bound = fx.accumulator_bound(fan_in, int(b_int.abs().max()), 127)
            if bound > fx.INT32_MAX:
                raise Fcos3dError(f"{m.qname}: accumulator bound {bound} exceeds int32 (fan-in {fan_in})")
        bias = b_int.to(torch.int32)
        p = m.padding
        pads = (p[0], p[1], p[0], p[1])
        relu = m.act in ("relu", "relu6")
        if m.int32_output:
            if m.act is not None:
                raise Fcos3dError(f"{m.qname}: an int32 head conv cannot have an activation")
            op = IntConv(m.qname, src, "", weight, bias, m.stride, pads, m.groups, False, s_in, s_w, None, None, None)
            op.output = self.define(y, m.qname, None)
        else:
            s_out = _f32(m.act_observer.scale().item())
            if m.act == "relu6" and s_out * 127 > 6.0 * (1 + 2**-20):
                raise Fcos3dError(f"{m.qname}: ReLU6 is exported as ReLU + saturation, which needs an output range "
                                  f"<= 6 (scale {s_out} gives {s_out * 127}); use relu or recalibrate")
            mult, shift = fx.conv_multipliers(s_in, s_w, s_out)
            op = IntConv(m.qname, src, "", weight, bias, m.stride, pads, m.groups, relu, s_in, s_w, s_out, mult, shift)
            op.output = self.define(y, m.qname, s_out)
        self.ops.append(op)

    def on_add(self, m: QAdd, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> None:
        na, nb = self.name(a, m.qname), self.name(b, m.qname)
        s_a, s_b = self.scales[na], self.scales[nb]
        s_out = _f32(m.act_observer.scale().item())
        op = IntAdd(m.qname, na, nb, "", s_a, s_b, s_out, fx.add_multipliers(s_a, s_b, s_out))
        op.output = self.define(y, m.qname, s_out)
        self.ops.append(op)

    def on_resize(self, m: QResizeNearest, x: torch.Tensor, like: torch.Tensor, y: torch.Tensor) -> None:
        src = self.name(x, m.qname)
        op = IntResize(m.qname, src, self.name(like, m.qname), "")
        op.output = self.define(y, m.qname, self.scales[src])
        self.ops.append(op)

    def on_maxpool(self, m: QMaxPool2d, x: torch.Tensor, y: torch.Tensor) -> None:
        src = self.name(x, m.qname)
        op = IntMaxPool(m.qname, src, "", m.kernel_size, m.stride, m.padding)
        op.output = self.define(y, m.qname, self.scales[src])
        self.ops.append(op)


class QAT2Quantize:
    """QAT (or calibrated) QuantFCOS3D -> IntModel, tracing one forward on a zero image of ``input_shape``.

    The ops do not depend on the trace's size (resizes pick x2 or the target size at run time).
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
        by_tensor = {op.output: op for op in tracer.ops}
        names = list(model.output_names)
        if len(outputs) != len(names):
            raise Fcos3dError(f"the model returned {len(outputs)} outputs for {len(names)} output names")
        for t, name in zip(outputs, names):
            op = by_tensor.get(tracer.name(t, name))
            if not isinstance(op, IntConv) or op.output_scale is not None:
                raise Fcos3dError(f"output {name} is not made by a head prediction conv (int32)")
            tracer.scales.pop(op.output, None)
            op.output = name
        int_model = IntModel(tracer.input_name, tracer.ops, names,
                             {k: v for k, v in tracer.scales.items() if v is not None}, model.strides, model.output_heads)
        int_model.widened_weight_scales = list(tracer.widened)
        return int_model
