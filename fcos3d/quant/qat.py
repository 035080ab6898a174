"""Quantised modules for calibration and QAT: folded conv(+ReLU)+quantiser, add, resize, max pool, input.

Each module observes (calibration), fake-quantises with straight-through gradients (QAT), and reports
itself to a tracer (QAT2Quantize) so that the integer model is built from exactly these scales.

Fake quant is the integer model's arithmetic (docs/int8.md) in two forms:
- without autograd (predict, validation, QAT2Quantize, quant-report): the integer model itself, exactly: the
  conv on the integers of its input and weights plus the int32 bias, requantised with fixedpoint's
  (multiplier, shift), rounding half up; the int add rule. `predict --stage qat` and `--stage int_infer`
  then score the same outputs;
- with autograd (training): the float conv with the int model's weights and int32 bias, and a half-up
  fake quant with straight-through gradients. It differs from the integer model where float rounding flips
  an output at a near-tie (measured on CPU: ~1e-6 to 1e-5 of an op's outputs; on an H100, TF32 allowed:
  ~2e-3), which is noise to training but not to equality: each flip spreads to the layers after it (on a
  trained checkpoint, 59 local flips in 47.6M outputs left 13% of the int8 values different end to end),
  hence the exact form for evaluation. scripts/qat_vs_int.py measures both forms; benchmarks/
  bench_qat_step.py their cost.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fcos3d.errors import Fcos3dError
from fcos3d.int8 import fixedpoint as fx

from . import intops
from .fold import fold_conv_bn
from .observers import INPUT_SCALE, QMAX, Observer

__all__ = [
    "BIAS_LIMIT",
    "round_half_up",
    "fake_quant_per_tensor",
    "fake_quant_per_channel",
    "conv_int_constants",
    "QuantModule",
    "QInput",
    "QConv2d",
    "QAdd",
    "QResizeNearest",
    "QMaxPool2d",
    "QuantFCOS3D",
    "set_quant_state",
    "tracing",
    "link_sources",
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


def round_half_up(v: torch.Tensor) -> torch.Tensor:
    """``floor(v + 1/2)`` exactly for any float ``v`` (ties toward +inf: 2.5 -> 3, -2.5 -> -2), the integer
    model's rounding (docs/int8.md 2). Written as floor plus a comparison because ``v + 0.5`` itself rounds
    in float32 (0.49999997 + 0.5 gives 1.0); ``v - floor(v)`` is exact, or lands on 0.5 only from above."""
    f = torch.floor(v)
    return f + (v - f >= 0.5).to(v.dtype)


class _FakeQuantHalfUp(torch.autograd.Function):
    """``clamp(round_half_up(x / s), qmin, qmax) * s``; gradient 1 where the rounded value is inside
    [qmin, qmax], 0 where it was clamped (straight-through, as torch.fake_quantize_per_tensor_affine)."""

    @staticmethod
    def forward(ctx, x, scale, qmin, qmax):
        q = round_half_up(x / scale)
        inside = (q >= qmin) & (q <= qmax)
        ctx.save_for_backward(inside)
        return q.clamp_(qmin, qmax).mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None


def fake_quant_per_tensor(x: torch.Tensor, scale: torch.Tensor, qmin: int = -128, qmax: int = QMAX) -> torch.Tensor:
    """``clamp(floor(x / s + 1/2), qmin, qmax) * s``: round half up like the integer model's requantisation
    (torch's own fake quant rounds half to even); gradient 1 inside the range and 0 where clamped
    (straight-through estimator). ``scale``: float32 (1,). ``x / s`` is one correctly rounded float division."""
    return _FakeQuantHalfUp.apply(x, scale.to(x.dtype).reshape(()), qmin, qmax)


def _ste(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``value`` exactly, with the gradient of ``like`` (straight through): value + (like - like), never
    like + (value - like), which rounds in float."""
    return value.detach() + (like - like.detach())


def _int8_of(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The int8 values of a fake-quantised tensor, as float integers: exact, because ``x = fl32(q * s)`` gives
    ``x / s = q * (1 +- 2**-23)`` for |q| <= 128, far from any half (saturated to int8 as a guard)."""
    return torch.round(x.detach() / scale).clamp_(-128, 127)


def _requantize(acc: torch.Tensor, multiplier, shift) -> torch.Tensor:
    """fixedpoint.requantize of an integer-valued float accumulator (N, O, H, W), per output channel, exactly:
    ``floor(acc * m * 2**(shift - 31) + 1/2)`` (before saturation). ``multiplier``/``shift``: numpy (O,).

    While ``|acc| < 2**22`` the float64 product ``acc * (m * 2**(shift - 31))`` is exact (``|acc * m| < 2**53``
    and the power of two only moves the exponent) and round_half_up is exact on any float, so float64 gives
    the integers of the spec in fewer passes than int64; larger accumulators take intops.requantize (int64).
    """
    per_channel = lambda v: torch.from_numpy(v).to(acc.device).reshape(1, -1, 1, 1)  # noqa: E731
    lo, hi = torch.aminmax(acc)
    if max(-float(lo), float(hi)) < 2.0**22:
        r = np.asarray(multiplier, dtype=np.float64) * np.exp2(np.asarray(shift, dtype=np.float64) - 31)  # exact
        return round_half_up(acc.to(torch.float64) * per_channel(r))
    q = intops.requantize(
        acc.to(torch.int64),
        per_channel(np.asarray(multiplier, dtype=np.int64)),
        per_channel(np.asarray(shift, dtype=np.int64)),
    )
    return q.to(torch.float64)


def fake_quant_per_channel(w: torch.Tensor, scale: torch.Tensor, qmin: int = -QMAX, qmax: int = QMAX) -> torch.Tensor:
    """Per output channel (axis 0) symmetric fake quant of a weight, [-127, 127], straight-through gradient."""
    zp = torch.zeros(scale.shape, dtype=torch.int32, device=w.device)
    return torch.fake_quantize_per_channel_affine(w, scale.float(), zp, 0, qmin, qmax)


# Largest |int32 bias| the quantiser makes: leaves >= 2**30 - 1 for the products (K * 128 * 127 < 2**25 here).
BIAS_LIMIT = 2.0**30


@torch.no_grad()
def conv_int_constants(w_fq: torch.Tensor, s_w: torch.Tensor, bias: torch.Tensor | None, s_in: torch.Tensor | float):
    """The integer conv's constants from the fake-quantised weight ``w_fq`` (O, C/g, kh, kw), its per-channel
    scale ``s_w`` float32 (O,), the float ``bias`` (O,) or None and the input scale ``s_in`` (float32 value).

    Returns ``(w_int, b_int, s_w', widened)``: float64 tensors holding integers (weights in [-127, 127], the
    bias at scale ``s_in * s_w'[c]``, rounded half to even, 0 without a bias), float32 (O,) and bool (O,).
    A bias far above the accumulator's range (tiny weights and a large bias, e.g. an untrained class prior)
    would not fit int32 at ``s_in * s_w``: that channel's weight scale is widened until ``|bias| <=
    BIAS_LIMIT`` steps, and its weights round coarser. All in float64, elementwise, on the tensors' device:
    the integer model (QAT2Quantize) and the QAT forward take their constants from here.
    """
    s_w = s_w.float()
    s_in64 = torch.as_tensor(s_in, dtype=torch.float64, device=s_w.device).reshape(())
    if bias is None:
        widened = torch.zeros(s_w.shape, dtype=torch.bool, device=s_w.device)
    else:
        need = bias.detach().double().abs() / (s_in64 * BIAS_LIMIT)  # (O,)
        widened = need > s_w.double()
        s_w = torch.where(widened, (need * (1 + 2.0**-20)).float(), s_w)
    s_w64 = s_w.double()
    w_int = torch.round(w_fq.detach().double() / s_w64.reshape(-1, *([1] * (w_fq.ndim - 1)))).clamp(-127, 127)
    if bias is None:
        b_int = torch.zeros(s_w.shape, dtype=torch.float64, device=s_w.device)
    else:
        b_int = torch.round(bias.detach().double() / (s_in64 * s_w64))
    return w_int, b_int, s_w, widened


class QuantModule(nn.Module):
    """Base of the quantised modules: ``observe`` (update observers in training mode) and ``fake_quant``."""

    observe: bool = True
    fake_quant: bool = False
    qname: str = ""  # the module's name in the model, given at conversion (tensor names of the export)

    def _observe_now(self) -> bool:
        return self.observe and self.training

    def output_scale(self) -> torch.Tensor | None:
        """float32 (1,): the scale of this module's int8 output (None: an int32 head output)."""
        act = getattr(self, "act_observer", None)
        return None if act is None else act.scale()

    def scale_key(self) -> tuple:
        """Changes whenever ``output_scale()`` may change (observer buffers' in-place versions and storage)."""
        act = getattr(self, "act_observer", None)
        if act is None:
            return (id(self),)
        return (id(self),) + tuple((b.data_ptr(), b._version) for b in act.buffers())

    def _source_key(self, i: int = 0) -> tuple:
        src = self.__dict__.get("_source")
        return src[i].scale_key() if src is not None else ()

    def _source_scale(self, i: int = 0) -> torch.Tensor:
        """The output scale of the module whose output is this one's input ``i`` (linked by ``link_sources``)."""
        src = self.__dict__.get("_source")
        if src is None:
            raise Fcos3dError(
                f"{self.qname or type(self).__name__}: its input's quantiser is unknown; run the module "
                "inside its QuantFCOS3D (which links every op to the modules it reads)"
            )
        scale = src[i].output_scale()
        if scale is None:
            raise Fcos3dError(f"{self.qname}: reads an int32 head output: only the last convs may be int32")
        return scale


class QInput(QuantModule):
    """The image input: fixed scale 1/128 (the YUV byte - 128); exact for camera input, so it never changes values
    except to clamp and round an arbitrary float image like the board's input would."""

    def output_scale(self) -> torch.Tensor:
        return torch.tensor([INPUT_SCALE])

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

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride,
        padding,
        groups: int,
        act: str | None,
        weight_observer: Observer,
        act_observer: Observer | None,
    ):
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
    def from_float(
        cls,
        conv: nn.Conv2d,
        bn: nn.BatchNorm2d | None,
        act: str | None,
        weight_observer: Observer,
        act_observer: Observer | None,
    ) -> QConv2d:
        if type(conv) is not nn.Conv2d:
            raise Fcos3dError(
                f"{type(conv).__name__} cannot be quantised: build the model with padding='symmetric' "
                "(plain nn.Conv2d with k // 2 padding)"
            )
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

    def train(self, mode: bool = True) -> QConv2d:
        self.__dict__.pop("_int_cache", None)  # switching modes (e.g. after loading weights) drops the constants
        return super().train(mode)

    def input_scale(self) -> torch.Tensor:
        """float32 (1,): the scale of the int8 tensor this conv reads."""
        return self._source_scale()

    def _act(self, y: torch.Tensor) -> torch.Tensor:
        if self.act == "relu":
            return F.relu(y)
        if self.act == "relu6":
            return F.relu6(y)
        return y

    def simulated_weight_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight and bias of the integer model as floats, with straight-through gradients: the per-channel
        fake-quantised weight (a widened channel re-rounded at its wider scale) and the bias rounded to int32
        at ``s_in * s_w[c]`` (docs/int8.md 4.2), so ``conv(x, w, b) = acc * s_in * s_w`` up to float rounding."""
        s_w = self.weight_scale()  # once: each call reads observer flags (a device sync on a GPU)
        w = fake_quant_per_channel(self.weight, s_w)
        if self.bias is None:
            return w, None
        s_in = self.input_scale()
        w_int, b_int, s_w, _ = conv_int_constants(w, s_w, self.bias, s_in)
        s_w64 = s_w.double().to(w.device)
        w = _ste((w_int * s_w64.reshape(-1, 1, 1, 1)).to(w.dtype), w)  # == w except in widened channels
        acc_scale = s_in.double().to(w.device).reshape(()) * s_w64  # (O,)
        return w, _ste((b_int * acc_scale).to(self.bias.dtype), self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, O, H', W')
        if self._observe_now():
            self.weight_observer(self.weight.detach())
        if self.fake_quant and not (torch.is_grad_enabled() or self._observe_now()):
            y = self._integer_conv(x)
        else:
            w, b = self.simulated_weight_bias() if self.fake_quant else (self.weight, self.bias)
            y = self._act(F.conv2d(x, w, b, self.stride, self.padding, 1, self.groups))
            if self.act_observer is not None:
                if self._observe_now():
                    self.act_observer(y)
                if self.fake_quant:
                    y = fake_quant_per_tensor(y, self.act_observer.scale())
        if _TRACER is not None:
            _TRACER.on_conv(self, x, y)
        return y

    @torch.no_grad()
    def _integer_conv(self, x: torch.Tensor) -> torch.Tensor:
        """The int model's conv (docs/int8.md 4.2, or 4.3 for an int32 head output) on the fake-quantised ``x``.

        ``acc = conv(q_x, w_int) + b_int``, exact: the products summed in float32 while every partial sum is
        below ``K * 128 * max|w_int| <= 2**24``, else in float64 (as intops.conv_int8), then the bias added in
        float64 (``|acc| < 2**31``: exact). On CUDA the conv is always float64 and rounded: a precaution, since
        cuDNN may pick transform-based algorithms (Winograd, FFT) that are not exact on integers in float32,
        while float64 keeps their error far below half a step. Then ``saturate(requantize(acc, m, shift))``
        with fixedpoint's constants, times ``s_out``; a head returns ``acc * s_in * s_w[c]``.
        """
        s_in, w_int, b_int, s_w, exact, mult, shift, s_out = self._integer_constants(x.device)
        with torch.autocast(x.device.type, enabled=False):  # (N, O, H', W') integers
            acc = F.conv2d(_int8_of(x, s_in).to(exact), w_int, None, self.stride, self.padding, 1, self.groups)
        if x.device.type != "cpu":
            acc = acc.round_()  # float64 keeps any algorithm's error far below half a step: back to the integers
        acc = acc.double() + b_int
        if self.int32_output:
            return (acc * (s_in.double().reshape(()) * s_w.double()).reshape(1, -1, 1, 1)).to(x.dtype)
        q = _requantize(acc, mult, shift).clamp_(0 if self.act is not None else -128, QMAX)  # saturated int8
        return q.to(x.dtype) * s_out

    def _integer_constants(self, device: torch.device) -> tuple:
        """(s_in, w_int in the conv dtype, b_int (1, O, 1, 1) float64, s_w, conv dtype, multiplier, shift, s_out).

        In eval mode they are kept until the weights, the bias or the observers behind s_in, s_w and s_out
        change (storage or in-place version) or ``train()``/``eval()`` is called: an evaluation computes them
        once, not per image (the int model's constants are fixed the same way at QAT2Quantize)."""
        params = [t for t in (self.weight, self.bias) if t is not None]
        key = (
            device,
            *((t.data_ptr(), t._version) for t in params),
            *((b.data_ptr(), b._version) for b in self.weight_observer.buffers()),
            self.scale_key(),
            self._source_key(),
        )
        cached = self.__dict__.get("_int_cache")
        if cached is not None and cached[0] == key and not self.training:
            return cached[1]
        s_in = self.input_scale().to(device)  # float32 (1,)
        s_w = self.weight_scale()
        w_int, b_int, s_w, _ = conv_int_constants(fake_quant_per_channel(self.weight, s_w), s_w, self.bias, s_in)
        fan_in = w_int.shape[1] * w_int.shape[2] * w_int.shape[3]
        exact = (
            torch.float32 if device.type == "cpu" and fan_in * 128 * int(w_int.abs().max()) <= 2**24 else torch.float64
        )
        s_w = s_w.to(device)
        mult = shift = s_out = None
        if not self.int32_output:
            s_out = self.act_observer.scale().to(device)
            mult, shift = fx.conv_multipliers(float(s_in), s_w.cpu().numpy().astype(np.float32), float(s_out))
        value = (
            s_in,
            w_int.to(device=device, dtype=exact),
            b_int.to(device).reshape(1, -1, 1, 1),
            s_w,
            exact,
            mult,
            shift,
            s_out,
        )
        self.__dict__["_int_cache"] = (key, value)
        return value

    def extra_repr(self) -> str:
        o, c, kh, kw = self.weight.shape
        return (
            f"{c * self.groups}, {o}, kernel=({kh}, {kw}), stride={self.stride}, padding={self.padding}, "
            f"groups={self.groups}, act={self.act}, int32_output={self.int32_output}"
        )


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
            exact = not (torch.is_grad_enabled() or self._observe_now())
            y = self._integer_add(a, b) if exact else fake_quant_per_tensor(y, self.act_observer.scale())
        if _TRACER is not None:
            _TRACER.on_add(self, a, b, y)
        return y

    @torch.no_grad()
    def _integer_add(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The int add rule (docs/int8.md 4.4, intops.add_requantize) on the integers of ``a`` and ``b``, times
        ``s_out``."""
        s_a, s_b, s_out = self._source_scale(0), self._source_scale(1), self.act_observer.scale()
        rescale = fx.add_multipliers(float(s_a), float(s_b), float(s_out))
        q_a = _int8_of(a, s_a.to(a.device)).to(torch.int64)
        q_b = _int8_of(b, s_b.to(b.device)).to(torch.int64)
        return intops.add_requantize(q_a, q_b, rescale).to(a.dtype) * s_out.to(a.device)


class QResizeNearest(QuantModule):
    """Nearest upsample of ``x`` to ``like``'s size; keeps the input's scale (no quantiser)."""

    def output_scale(self) -> torch.Tensor | None:
        return self._source_scale()

    def scale_key(self) -> tuple:
        return self._source_key()

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

    def output_scale(self) -> torch.Tensor | None:
        return self._source_scale()

    def scale_key(self) -> tuple:
        return self._source_key()

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
        if not self.__dict__.get("_sources_linked", False):
            link_sources(self, img)
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


class _SourceTracer:
    """Records, for every conv, add, resize and max pool, the quantised modules whose outputs it reads."""

    def __init__(self):
        self.made: dict[int, QuantModule] = {}
        self.keep: list[torch.Tensor] = []  # keeps traced tensors alive so ids stay unique

    def _made(self, t: torch.Tensor, m: QuantModule) -> None:
        self.made[id(t)] = m
        self.keep.append(t)

    def _link(self, m: QuantModule, *inputs: torch.Tensor) -> None:
        srcs = tuple(self.made.get(id(x)) for x in inputs)
        if any(src is None for src in srcs):
            raise Fcos3dError(
                f"{m.qname} reads a tensor that no quantised op made: the model computes something "
                "outside conv/add/resize/maxpool (is every op a module converted by Float2Calibration?)"
            )
        m.__dict__["_source"] = srcs  # a plain attribute: not a child module, not in the state dict

    def on_input(self, m, x):
        self._made(x, m)

    def on_conv(self, m, x, y):
        self._link(m, x)
        self._made(y, m)

    def on_add(self, m, a, b, y):
        self._link(m, a, b)
        self._made(y, m)

    def on_resize(self, m, x, like, y):
        self._link(m, x)
        self._made(y, m)

    def on_maxpool(self, m, x, y):
        self._link(m, x)
        self._made(y, m)


@torch.no_grad()
def link_sources(model: QuantFCOS3D, img: torch.Tensor) -> QuantFCOS3D:
    """Link every conv, add, resize and pool of ``model`` to the modules whose outputs it reads, by one float
    forward of ``img[:1]`` (no observing, no fake quant), so that fake quant knows each op's input scales, as
    the integer model does. QuantFCOS3D.forward calls it once; the links are structural (any input size)."""
    modules = [m for m in model.modules() if isinstance(m, QuantModule)]
    state = [(m, m.observe, m.fake_quant) for m in modules]
    was_training = model.training
    model.eval()
    set_quant_state(model, observe=False, fake_quant=False)
    try:
        with tracing(_SourceTracer()):
            model.model(model.input_quant(img[:1].detach()))
    finally:
        for m, observe, fake_quant in state:
            m.observe, m.fake_quant = observe, fake_quant
        model.train(was_training)
    model.__dict__["_sources_linked"] = True
    return model
