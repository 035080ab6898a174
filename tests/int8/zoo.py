"""The model zoo of the [int8-ops] acceptance: common CNNs written with onnx.helper (seeded random weights),
quantised by onnxruntime's quantize_static as users do (QDQ or QOperator, symmetric or its asymmetric
uint8 defaults), to check that fcos3d-compile takes the models users bring, bit-exactly.

The float graphs are built here, not exported from torch, so the test needs no exporter and every node is
the one a reader of this file sees. Widths and inputs are small (the suite runs on 2 cores); the structure
(block types, op kinds, attributes) is the real networks'.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


@dataclass
class FloatNet:
    """A float ONNX graph under construction: each method adds nodes and returns the output tensor's name."""

    name: str
    input_shape: tuple  # NCHW; a str entry is a symbolic dim
    seed: int = 0
    nodes: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    _n: int = 0

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    # -- plumbing ---------------------------------------------------------------------------------------------
    def _uid(self, kind: str) -> str:
        self._n += 1
        return f"{kind}_{self._n}"

    def const(self, value, kind: str = "c") -> str:
        name = self._uid(kind)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: Sequence[str], n_out: int = 1, **attrs) -> str | list[str]:
        outs = [self._uid(op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=outs[0], **attrs))
        return outs[0] if n_out == 1 else outs

    def weight(self, shape, fan_in: int) -> str:
        """He-style init so activations keep their range through deep stacks."""
        w = self.rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
        return self.const(w.astype(np.float32), "w")

    def bias(self, n: int) -> str:
        return self.const((self.rng.standard_normal(n) * 0.1).astype(np.float32), "b")

    # -- layers -----------------------------------------------------------------------------------------------
    def conv(self, x, cin, cout, k=3, stride=1, pad=None, group=1, dilation=1, bias=True) -> str:
        pad = dilation * (k // 2) if pad is None else pad
        inputs = [x, self.weight((cout, cin // group, k, k), cin // group * k * k)]
        if bias:
            inputs.append(self.bias(cout))
        return self.node(
            "Conv",
            inputs,
            kernel_shape=[k, k],
            strides=[stride] * 2,
            pads=[pad] * 4,
            group=group,
            dilations=[dilation] * 2,
        )

    def conv_transpose(self, x, cin, cout, k=2, stride=2, pad=0, group=1) -> str:
        w = self.weight((cin, cout // group, k, k), cin * k * k // (stride * stride))
        return self.node(
            "ConvTranspose",
            [x, w, self.bias(cout)],
            kernel_shape=[k, k],
            strides=[stride] * 2,
            pads=[pad] * 4,
            group=group,
        )

    def relu(self, x):
        return self.node("Relu", [x])

    def clip(self, x, lo=0.0, hi=6.0):
        return self.node("Clip", [x, self.const(np.float32(lo)), self.const(np.float32(hi))])

    def hardswish(self, x):
        return self.node("HardSwish", [x])

    def hardsigmoid(self, x):
        return self.node("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)

    def sigmoid(self, x):
        return self.node("Sigmoid", [x])

    def silu(self, x):
        return self.node("Mul", [x, self.sigmoid(x)])

    def tanh(self, x):
        return self.node("Tanh", [x])

    def leaky_relu(self, x, alpha=0.1):
        return self.node("LeakyRelu", [x], alpha=alpha)

    def prelu(self, x, c):
        slope = self.const((self.rng.uniform(0.05, 0.3, (c, 1, 1))).astype(np.float32), "slope")
        return self.node("PRelu", [x, slope])

    def add(self, a, b):
        return self.node("Add", [a, b])

    def mul(self, a, b):
        return self.node("Mul", [a, b])

    def maxpool(self, x, k=2, stride=2, pad=0, ceil=0):
        return self.node("MaxPool", [x], kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4, ceil_mode=ceil)

    def avgpool(self, x, k=2, stride=2, pad=0, count_include_pad=0):
        return self.node(
            "AveragePool",
            [x],
            kernel_shape=[k, k],
            strides=[stride] * 2,
            pads=[pad] * 4,
            count_include_pad=count_include_pad,
        )

    def gap(self, x):
        return self.node("GlobalAveragePool", [x])

    def flatten(self, x):
        return self.node("Flatten", [x], axis=1)

    def gemm(self, x, cin, cout):
        return self.node("Gemm", [x, self.weight((cout, cin), cin), self.bias(cout)], transB=1)

    def matmul(self, a, b):
        return self.node("MatMul", [a, b])

    def concat(self, xs, axis=1):
        return self.node("Concat", list(xs), axis=axis)

    def reshape(self, x, shape):
        return self.node("Reshape", [x, self.const(np.array(shape, np.int64))])

    def transpose(self, x, perm):
        return self.node("Transpose", [x], perm=list(perm))

    def softmax(self, x, axis=-1):
        return self.node("Softmax", [x], axis=axis)

    def resize_scales(self, x, scale=2.0, mode="nearest", coord="asymmetric", nearest="floor"):
        scales = self.const(np.array([1, 1, scale, scale], np.float32))
        attrs = dict(mode=mode, coordinate_transformation_mode=coord)
        if mode == "nearest":
            attrs["nearest_mode"] = nearest
        return self.node("Resize", [x, "", scales], **attrs)

    def resize_like(self, x, like, mode="nearest", coord="asymmetric"):
        """Resize to another tensor's spatial size through Shape/Slice/Concat, as torch exports
        F.interpolate(size=like.shape[2:]) without constant folding."""
        shape = self.node("Shape", [like])
        hw = self.node("Slice", [shape, self.const(np.array([2], np.int64)), self.const(np.array([4], np.int64))])
        nc = self.node(
            "Slice", [self.node("Shape", [x]), self.const(np.array([0], np.int64)), self.const(np.array([2], np.int64))]
        )
        sizes = self.node("Concat", [nc, hw], axis=0)
        attrs = dict(mode=mode, coordinate_transformation_mode=coord)
        if mode == "nearest":
            attrs["nearest_mode"] = "floor"
        return self.node("Resize", [x, "", "", sizes], **attrs)

    def build(self, outputs: Sequence[str]) -> onnx.ModelProto:
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(self.input_shape))
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
        graph = helper.make_graph(self.nodes, self.name, [inp], outs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        model = onnx.shape_inference.infer_shapes(model)
        onnx.checker.check_model(model)
        return model


# -- the networks ---------------------------------------------------------------------------------------------


def resnet18(shape=(1, 3, 32, 32), widths=(16, 32, 64, 128), classes=10) -> onnx.ModelProto:
    """ResNet-18: 7x7/2 stem conv, 3x3/2 max pool, four stages of two BasicBlocks (projection shortcut when the
    shape changes), global average pool, Flatten, Gemm classifier."""
    g = FloatNet("resnet18", shape, seed=18)
    x = g.relu(g.conv("input", 3, widths[0], k=7, stride=2))
    x = g.maxpool(x, k=3, stride=2, pad=1)
    cin = widths[0]
    for stage, cout in enumerate(widths):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            y = g.relu(g.conv(x, cin, cout, stride=stride))
            y = g.conv(y, cout, cout)
            short = g.conv(x, cin, cout, k=1, stride=stride) if (stride != 1 or cin != cout) else x
            x, cin = g.relu(g.add(y, short)), cout
    return g.build([g.gemm(g.flatten(g.gap(x)), cin, classes)])


def mobilenet_v2(shape=(1, 3, 32, 32), classes=10) -> onnx.ModelProto:
    """MobileNetV2: ReLU6 as Clip(0, 6), inverted residuals (1x1 expand, 3x3 depthwise, linear 1x1 project,
    residual add when the shape stays), GAP + Flatten + Gemm."""
    g = FloatNet("mobilenet_v2", shape, seed=2)
    x = g.clip(g.conv("input", 3, 16, stride=2))
    cin = 16
    for t, c, n, s in ((1, 8, 1, 1), (6, 12, 2, 2), (6, 16, 2, 2), (6, 24, 1, 1)):
        for i in range(n):
            stride, hidden = (s if i == 0 else 1), cin * t
            y = g.clip(g.conv(x, cin, hidden, k=1)) if t != 1 else x
            y = g.clip(g.conv(y, hidden, hidden, stride=stride, group=hidden))
            y = g.conv(y, hidden, c, k=1)
            x, cin = (g.add(x, y) if stride == 1 and cin == c else y), c
    x = g.clip(g.conv(x, cin, 64, k=1))
    return g.build([g.gemm(g.flatten(g.gap(x)), 64, classes)])


def mobilenet_v3(shape=(1, 3, 32, 32), classes=10) -> onnx.ModelProto:
    """MobileNetV3 blocks: HardSwish activations, squeeze-excite (GAP, 1x1 conv, ReLU, 1x1 conv, HardSigmoid,
    channel-wise Mul), 5x5 depthwise convs, classifier with HardSwish."""
    g = FloatNet("mobilenet_v3", shape, seed=3)
    x = g.hardswish(g.conv("input", 3, 16, stride=2))
    cin = 16
    for k, exp, c, se, act, s in (
        (3, 16, 16, True, "relu", 2),
        (3, 48, 24, False, "relu", 2),
        (5, 64, 24, True, "hswish", 1),
        (5, 96, 32, True, "hswish", 2),
    ):
        a = g.relu if act == "relu" else g.hardswish
        y = a(g.conv(x, cin, exp, k=1))
        y = a(g.conv(y, exp, exp, k=k, stride=s, group=exp))
        if se:
            z = g.relu(g.conv(g.gap(y), exp, exp // 4, k=1))
            y = g.mul(y, g.hardsigmoid(g.conv(z, exp // 4, exp, k=1)))
        y = g.conv(y, exp, c, k=1)
        x, cin = (g.add(x, y) if s == 1 and cin == c else y), c
    x = g.hardswish(g.conv(x, cin, 64, k=1))
    x = g.hardswish(g.gemm(g.flatten(g.gap(x)), 64, 32))
    return g.build([g.gemm(x, 32, classes)])


def yolo_neck(shape=(1, 3, 64, 64)) -> onnx.ModelProto:
    """A YOLOv5/v8-style backbone tail and neck: Conv + SiLU (Sigmoid x Mul) everywhere, a C2f-like split/concat
    block, SPPF (three 5x5 stride-1 max pools, concat), nearest 2x upsample and concat with the stride-8 map,
    two detection convs (int32-free float heads, quantised like every other conv)."""
    g = FloatNet("yolo_neck", shape, seed=5)

    def cbs(x, cin, cout, k=3, s=1):
        return g.silu(g.conv(x, cin, cout, k=k, stride=s))

    p2 = cbs(cbs("input", 3, 16, s=2), 16, 32, s=2)  # stride 4
    p3 = cbs(p2, 32, 32, s=2)  # stride 8
    a, b = cbs(p3, 32, 16, k=1), cbs(cbs(p3, 32, 16, k=1), 16, 16)
    p3 = cbs(g.concat([a, b]), 32, 32, k=1)
    p4 = cbs(p3, 32, 64, s=2)  # stride 16
    x = cbs(p4, 64, 32, k=1)  # SPPF
    m1 = g.maxpool(x, k=5, stride=1, pad=2)
    m2 = g.maxpool(m1, k=5, stride=1, pad=2)
    m3 = g.maxpool(m2, k=5, stride=1, pad=2)
    p4 = cbs(g.concat([x, m1, m2, m3]), 128, 64, k=1)
    up = g.resize_scales(cbs(p4, 64, 32, k=1), 2.0, "nearest", "asymmetric", "floor")
    p3 = cbs(g.concat([up, p3]), 64, 32)
    return g.build([g.conv(p3, 32, 18, k=1), g.conv(p4, 64, 18, k=1)])


def unet(shape=(1, 3, 32, 32), coord="half_pixel") -> onnx.ModelProto:
    """A three-level UNet: conv blocks, max-pool down, ConvTranspose (2x2/2) up on one level and bilinear Resize
    (``coord`` mode) on the other, skip concats, a 1x1 segmentation head."""
    g = FloatNet("unet", shape, seed=7)

    def block(x, cin, cout):
        return g.relu(g.conv(g.relu(g.conv(x, cin, cout)), cout, cout))

    e1 = block("input", 3, 8)
    e2 = block(g.maxpool(e1), 8, 16)
    b = block(g.maxpool(e2), 16, 32)
    d2 = block(g.concat([g.conv_transpose(b, 32, 16), e2]), 32, 16)
    up = g.resize_scales(d2, 2.0, "linear", coord)
    d1 = block(g.concat([g.conv(up, 16, 8, k=1), e1]), 16, 8)
    return g.build([g.conv(d1, 8, 4, k=1)])


def resize_by_size(shape=(1, 3, 32, 32)) -> onnx.ModelProto:
    """An FPN-like top-down merge whose upsample is Resize(sizes=<the lateral's Shape, sliced>): the
    Shape/Slice/Concat subgraph torch leaves when F.interpolate(size=...) is exported without folding."""
    g = FloatNet("resize_by_size", shape, seed=9)
    c3 = g.relu(g.conv("input", 3, 16, stride=2))
    c4 = g.relu(g.conv(c3, 16, 32, stride=2))
    top = g.resize_like(g.conv(c4, 32, 16, k=1), c3)
    return g.build([g.conv(g.add(top, g.conv(c3, 16, 16, k=1)), 16, 8)])


def odd_convs(shape=(1, 3, 33, 33)) -> onnx.ModelProto:
    """Dilated convs, MaxPool with ceil_mode on an odd size, AveragePool (with and without padding), LeakyRelu,
    PRelu, Tanh: the ops of segmentation and detection heads outside the plain Conv/ReLU family."""
    g = FloatNet("odd_convs", shape, seed=11)
    x = g.leaky_relu(g.conv("input", 3, 16, dilation=2))
    x = g.maxpool(x, k=3, stride=2, ceil=1)
    x = g.prelu(g.conv(x, 16, 16, dilation=3), 16)
    x = g.avgpool(x, k=3, stride=2, pad=1, count_include_pad=0)
    y = g.avgpool(g.tanh(g.conv(x, 16, 16, k=1)), k=2, stride=2)
    return g.build([g.conv(y, 16, 8, k=1)])


def attention(shape=(1, 3, 16, 16)) -> onnx.ModelProto:
    """A patch-attention block: conv stem, Reshape/Transpose to tokens, MatMul q.k^T, Softmax, MatMul with v,
    back to NCHW, a residual add, GAP + Gemm."""
    g = FloatNet("attention", shape, seed=13)
    x = g.relu(g.conv("input", 3, 16, stride=2))  # (1, 16, 8, 8)
    tokens = g.transpose(g.reshape(x, [1, 16, 64]), [0, 2, 1])  # (1, 64, 16)
    q = g.matmul(tokens, g.weight((16, 16), 16))
    k = g.matmul(tokens, g.weight((16, 16), 16))
    v = g.matmul(tokens, g.weight((16, 16), 16))
    att = g.softmax(g.matmul(q, g.transpose(k, [0, 2, 1])), axis=-1)  # (1, 64, 64)
    y = g.reshape(g.transpose(g.matmul(att, v), [0, 2, 1]), [1, 16, 8, 8])
    x = g.add(x, y)
    return g.build([g.gemm(g.flatten(g.gap(x)), 16, 10)])


def dynamic_batch(shape=("N", 3, 32, 32)) -> onnx.ModelProto:
    """A small CNN whose batch dimension is symbolic (torch.onnx.export with dynamic_axes): compiled with
    --input-shape input=1,3,32,32."""
    g = FloatNet("dynamic_batch", shape, seed=17)
    x = g.relu(g.conv("input", 3, 16, stride=2))
    x = g.relu(g.conv(x, 16, 16, group=16))
    return g.build([g.conv(x, 16, 8, k=1)])


def unsupported(shape=(1, 3, 16, 16)) -> onnx.ModelProto:
    """What the compiler still refuses, as a user meets it: a grouped ConvTranspose (an attribute problem of a
    supported op type) and a Sin (an op type no executor has), each downstream of the other's problem."""
    g = FloatNet("unsupported", shape, seed=19)
    x = g.relu(g.conv("input", 3, 8, stride=2))
    x = g.conv_transpose(x, 8, 8, group=2)
    x = g.node("Sin", [g.conv(x, 8, 8)])
    return g.build([g.conv(x, 8, 4, k=1)])


# -- quantize_static ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quantization:
    """One quantize_static setting: format QDQ/QOperator, activation type, symmetric or not."""

    name: str
    fmt: str = "QDQ"  # "QDQ" | "QOperator"
    activation: str = "QInt8"  # "QInt8" | "QUInt8"
    symmetric: bool = True
    per_channel: bool = True


SYMMETRIC = Quantization("s8s8_sym")
DEFAULTS = Quantization("u8s8_defaults", activation="QUInt8", symmetric=False)  # quantize_static's defaults
QOPERATOR = Quantization("qoperator_u8s8", fmt="QOperator", activation="QUInt8", symmetric=False)
QOPERATOR_SYM = Quantization("qoperator_s8s8", fmt="QOperator")

# (model name, builder, quantisation, input shape for compile where the model's is symbolic)
ZOO: tuple[tuple[str, Callable[[], onnx.ModelProto], Quantization, tuple | None], ...] = (
    ("resnet18", resnet18, SYMMETRIC, None),
    ("resnet18_defaults", resnet18, DEFAULTS, None),
    ("mobilenet_v2", mobilenet_v2, SYMMETRIC, None),
    ("mobilenet_v2_qoperator", mobilenet_v2, QOPERATOR, None),
    ("mobilenet_v3", mobilenet_v3, DEFAULTS, None),
    ("yolo_neck", yolo_neck, SYMMETRIC, None),
    ("unet_half_pixel", unet, DEFAULTS, None),
    ("unet_align_corners", lambda: unet(coord="align_corners"), SYMMETRIC, None),
    ("resize_by_size", resize_by_size, SYMMETRIC, None),
    ("odd_convs", odd_convs, DEFAULTS, None),
    ("attention", attention, SYMMETRIC, None),
    ("dynamic_batch", dynamic_batch, QOPERATOR_SYM, (1, 3, 32, 32)),
)


def calibration_batches(shape: Sequence, n: int = 8, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    shape = tuple(1 if isinstance(d, str) else d for d in shape)
    return [{"input": rng.uniform(-1, 1, shape).astype(np.float32)} for _ in range(n)]


def quantize(model: onnx.ModelProto, q: Quantization, folder: Path, name: str) -> Path:
    """quantize_static(model) as ``q`` says, into folder/<name>.onnx (the float model beside it)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    folder.mkdir(parents=True, exist_ok=True)
    float_path, out = folder / f"{name}.float.onnx", folder / f"{name}.onnx"
    onnx.save(model, float_path)
    shape = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration_batches(shape))

        def get_next(self):
            return next(self.batches, None)

    quantize_static(
        str(float_path),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ if q.fmt == "QDQ" else QuantFormat.QOperator,
        activation_type=getattr(QuantType, q.activation),
        weight_type=QuantType.QInt8,
        per_channel=q.per_channel,
        extra_options={"ActivationSymmetric": q.symmetric, "WeightSymmetric": True},
    )
    return out


def build_zoo(folder: Path) -> dict[str, tuple[Path, tuple | None]]:
    """Every zoo model quantised into ``folder``: {name: (onnx path, --input-shape or None)}."""
    return {name: (quantize(make(), q, folder, name), shape) for name, make, q, shape in ZOO}
