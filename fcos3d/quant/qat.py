"""Quantised modules for calibration and QAT: folded conv(+ReLU)+quantiser, add, resize, max pool, input.

Each module observes (calibration), fake-quantises with straight-through gradients (QAT), and reports
itself to a tracer (QAT2Quantize) so that the integer model is built from exactly these scales.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from fcos3d.errors import Fcos3dError

from .fold import fold_conv_bn
from .observers import INPUT_SCALE, QMAX, Observer

__all__ = [
    "fake_quant_per_tensor",
    "fake_quant_per_channel",
    "QuantModule",
    "QInput",
    "QConv2d",
    "QAdd",
    "QResizeNearest",
    "QMaxPool2d",
    "QuantFCOS3D",
    "set_quant_state",
    "tracing",
]

# The tracer of QAT2Quantize while it runs (None otherwise): modules call its ``on_<kind>`` methods.
_TRACER = None


@contextmanager
def tracing(tracer):
    """Run forwards with ``tracer`` receiving every quantised op (used by intmodel.QAT2Quantize)."""
    global _TRACER
    old, _TRACER = _TRACER, tracer
    try:
        yield tracer
    finally:
        _TRACER = old


def fake_quant_per_tensor(x: torch.Tensor, scale: torch.Tensor, qmin: int = -128, qmax: int = QMAX) -> torch.Tensor:
    """``clamp(round(x / s), qmin, qmax) * s`` (torch rounds x * (1/s) half to even); gradient 1 inside the
    range and 0 where clamped (straight-through estimator). ``scale``: float32 (1,)."""
    return torch.fake_quantize_per_tensor_affine(x, scale.float().reshape(()), torch.zeros((), dtype=torch.int32,
                                                 device=x.device), qmin, qmax)  # fmt: skip


def fake_quant_per_channel(w: torch.Tensor, scale: torch.Tensor, qmin: int = -QMAX, qmax: int = QMAX) -> torch.Tensor:
    """Per output channel (axis 0) symmetric fake quant of a weight, [-127, 127], straight-through gradient."""
    zp = torch.zeros(scale.shape, dtype=torch.int32, device=w.device)
    return torch.fake_quantize_per_channel_affine(w, scale.float(), zp, 0, qmin, qmax)


class QuantModule(nn.Module):
    """Base of the quantised modules: ``observe`` (update observers in training mode) and ``fake_quant``."""

    observe: bool = True
    fake_quant: bool = False
    qname: str = ""  # the module's name in the model, given at conversion (tensor names of the export)

    def _observe_now(self) -> bool:
        return self.observe and self.training


class QInput(QuantModule):
    """The image input: fixed scale 1/128 (the YUV byte - 128); exact for camera input, so it never changes values
    except to clamp and round an arbitrary float image like the board's input would."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) normalised (u8 - 128) / 128
        if self.fake_quant:
            x = fake_quant_per_tensor(x, torch.tensor([INPUT_SCALE], device=x.device))
        if _TRACER is not None:
            _TRACER.on_input(self, x)
        return x


def _act_name(act: nn.Module) -> str | None:
    if isinstance(act, nn.ReLU6):
        return "relu6"
    if isinstance(act, nn.ReLU):
        return "relu"
    if isinstance(act, nn.Identity):
        return None
    raise Fcos3dError(f"activation {type(act).__name__} cannot be quantised: use relu, relu6 or none")


class QConv2d(QuantModule):
    """Conv with BN folded in, optional ReLU(6), weight per-channel fake quant, per-tensor output quantiser.

    ``act_observer`` None: a head prediction conv with int32 output (no output quantiser, docs/int8.md 4.3).
    Parameters: ``weight`` (O, C/groups, kh, kw), ``bias`` (O,) or None; observers as submodules.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, groups: int,
                 act: str | None, weight_observer: Observer, act_observer: Observer | None):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        self.stride = tuple(stride)
        self.padding = tuple(padding)
        self.groups = int(groups)
        self.act = act
        self.weight_observer = weight_observer
        self.act_observer = act_observer

    @classmethod
    def from_float(cls, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, act: str | None, weight_observer: Observer,
                   act_observer: Observer | None) -> "QConv2d":
        if type(conv) is not nn.Conv2d:
            raise Fcos3dError(f"{type(conv).__name__} cannot be quantised: build the model with padding='symmetric' "
                              "(plain nn.Conv2d with k // 2 padding)")
        if tuple(conv.dilation) != (1, 1) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise Fcos3dError("only convs with dilation 1, zero padding and integer pads can be quantised")
        w, b = fold_conv_bn(conv, bn)
        return cls(w, b, conv.stride, conv.padding, conv.groups, act, weight_observer, act_observer)

    @property
    def int32_output(self) -> bool:
        return self.act_observer is None

    def weight_scale(self) -> torch.Tensor:
        """float32 (O,): the per-channel weight scale (observing the current weight first if never observed)."""
        if not bool(self.weight_observer.initialized):
            self.weight_observer(self.weight.detach())
        return self.weight_observer.scale()

    def quantized_weight(self) -> torch.Tensor:
        return fake_quant_per_channel(self.weight, self.weight_scale())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, O, H', W')
        if self._observe_now():
            self.weight_observer(self.weight.detach())
        w = self.quantized_weight() if self.fake_quant else self.weight
        y = F.conv2d(x, w, self.bias, self.stride, self.padding, 1, self.groups)
        if self.act == "relu":
            y = F.relu(y)
        elif self.act == "relu6":
            y = F.relu6(y)
        if self.act_observer is not None:
            if self._observe_now():
                self.act_observer(y)
            if self.fake_quant:
                y = fake_quant_per_tensor(y, self.act_observer.scale())
        if _TRACER is not None:
            _TRACER.on_conv(self, x, y)
        return y

    def extra_repr(self) -> str:
        o, c, kh, kw = self.weight.shape
        return (f"{c * self.groups}, {o}, kernel=({kh}, {kw}), stride={self.stride}, padding={self.padding}, "
                f"groups={self.groups}, act={self.act}, int32_output={self.int32_output}")


class QAdd(QuantModule):
    """a + b with a per-tensor output quantiser; the integer model rescales both inputs (docs/int8.md 4.4)."""

    def __init__(self, act_observer: Observer):
        super().__init__()
        self.act_observer = act_observer

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        y = a + b
        if self._observe_now():
            self.act_observer(y)
        if self.fake_quant:
            y = fake_quant_per_tensor(y, self.act_observer.scale())
        if _TRACER is not None:
            _TRACER.on_add(self, a, b, y)
        return y


class QResizeNearest(QuantModule):
    """Nearest upsample of ``x`` to ``like``'s size; keeps the input's scale (no quantiser)."""

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        h, w = like.shape[-2:]
        if h == 2 * x.shape[-2] and w == 2 * x.shape[-1]:
            y = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            y = F.interpolate(x, size=(int(h), int(w)), mode="nearest")
        if _TRACER is not None:
            _TRACER.on_resize(self, x, like, y)
        return y


class QMaxPool2d(QuantModule):
    """Max pool; keeps the input's scale (max commutes with a positive scale)."""

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
        if pool.ceil_mode or pair(pool.dilation) != (1, 1) or pool.return_indices:
            raise Fcos3dError("only MaxPool2d with ceil_mode=False, dilation 1 and no indices can be quantised")
        self.kernel_size = pair(pool.kernel_size)
        self.stride = pair(pool.stride if pool.stride is not None else pool.kernel_size)
        self.padding = pair(pool.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.max_pool2d(x, self.kernel_size, self.stride, self.padding)
        if _TRACER is not None:
            _TRACER.on_maxpool(self, x, y)
        return y


class QuantFCOS3D(nn.Module):
    """A converted FCOS3D (``model``) behind the fixed-scale input quantiser; forward and loss as FCOS3D."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.input_quant = QInput()
        self.model = model
        self.strides = model.strides
        self.output_heads = model.output_heads
        self.output_names = model.output_names

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, ...]:  # (N, 3, H, W)
        return self.model(self.input_quant(img))

    def loss(self, raw, anns):
        return self.model.loss(raw, anns)

    def group(self, flat):
        return self.model.group(flat)


def set_quant_state(model: nn.Module, *, observe: bool | None = None, fake_quant: bool | None = None) -> nn.Module:
    """Switch observers (they update only in training mode) and fake quant on every quantised module."""
    for m in model.modules():
        if isinstance(m, QuantModule):
            if observe is not None:
                m.observe = observe
            if fake_quant is not None:
                m.fake_quant = fake_quant
    return model
