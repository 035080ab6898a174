"""One-node-pattern QDQ models for each int8 op, symmetric and asymmetric, and their comparison with onnxruntime.

``OP_CASES`` builds each model with onnx.helper (``DQ(inputs) -> op -> Q``, int8 or uint8 activations with any
zero point, int8 per-channel weights); ``compare_with_ort`` runs the simulator and onnxruntime
(``ORT_DISABLE_ALL``) on seeded random inputs and classifies every difference: at most 1 LSB, and each 1-LSB
difference a rounding tie (ORT's float value before its QuantizeLinear lies within ``TIE_RTOL`` relative, plus the
op's own stated bound, of a .5 boundary: docs/int8.md 5). Shared by test_ort_ops.py and the LUT op family's tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# Relative distance to a .5 boundary within which ORT's float32 value (float32 scales, float accumulation)
# and the integer path's single Q31 rounding may round differently (docs/int8.md 5).
TIE_RTOL = 2e-6
_ONNX_TYPE = {"int8": TensorProto.INT8, "uint8": TensorProto.UINT8}
_NP_TYPE = {"int8": np.int8, "uint8": np.uint8}


@dataclass
class QGraph:
    """A QDQ model under construction (int8 or uint8 activations)."""

    dtype: str = "int8"  # activation type
    asymmetric: bool = False  # int8 with non-zero zero points (uint8 always has them)
    tie: bool = False  # every scale a power of two: requantisation factors are powers of two, many exact ties
    nodes: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    feeds_spec: dict = field(default_factory=dict)  # input name -> (shape, dtype)
    _n: int = 0

    def uid(self, kind: str) -> str:
        self._n += 1
        return f"{kind}_{self._n}"

    def const(self, value, kind: str = "c") -> str:
        name = self.uid(kind)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs, **attrs) -> str:
        out = self.uid(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def zp(self, z: int) -> str:
        return self.const(np.array(z, dtype=_NP_TYPE[self.dtype]), "zp")

    def input(self, shape, scale: float, z: int) -> str:
        """An int8/uint8 graph input read by DQ(scale, z): returns the float tensor."""
        name = self.uid("x")
        self.inputs.append(helper.make_tensor_value_info(name, _ONNX_TYPE[self.dtype], list(shape)))
        self.feeds_spec[name] = (tuple(shape), self.dtype)
        return self.node("DequantizeLinear", [name, self.const(np.float32(scale), "s"), self.zp(z)])

    def weight(self, w: np.ndarray, scales: np.ndarray, axis: int) -> str:
        s = self.const(np.asarray(scales, np.float32), "ws")
        z = self.const(np.zeros(np.asarray(scales).shape, np.int8), "wz")
        return self.node("DequantizeLinear", [self.const(w.astype(np.int8), "w"), s, z], axis=axis)

    def bias(self, b: np.ndarray, scales: np.ndarray) -> str:
        s = self.const(np.asarray(scales, np.float32), "bs")
        return self.node("DequantizeLinear", [self.const(b.astype(np.int32), "b"), s], axis=0)

    def q(self, y: str, scale: float, z: int) -> str:
        """Q(y) as a graph output."""
        out = self.node("QuantizeLinear", [y, self.const(np.float32(scale), "s"), self.zp(z)])
        self.outputs.append(helper.make_tensor_value_info(out, _ONNX_TYPE[self.dtype], None))
        return out

    def build(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "op", self.inputs, self.outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        model = onnx.shape_inference.infer_shapes(model)  # output shapes (the checker wants them)
        onnx.checker.check_model(model)
        return model


@dataclass(frozen=True)
class OpCase:
    """One op pattern: ``build(g, rng, s_out, z_out)`` adds nodes to ``g`` and returns the float result to Q (or,
    for an ``exact`` op, (result, s, z): a data movement or selection that keeps the input's (s, z) and must
    equal ORT exactly). ``add_rule``: Add's common-domain roundings may move a value by up to
    ``2**-19 * max(s_a, s_b) / s_out`` LSB, so a tie's neighbourhood is widened by that (docs/int8.md 4.4)."""

    name: str
    build: Callable
    exact: bool = False
    add_rule: bool = False


def _pow2(v):
    return np.float32(2.0) ** np.round(np.log2(v)).astype(np.float32)


def _scale(g: QGraph, rng, lo=0.01, hi=0.05) -> float:
    v = rng.uniform(lo, hi)
    return float(_pow2(v) if g.tie else np.float32(v))


def _weight_scales(g: QGraph, rng, n: int) -> np.ndarray:
    v = rng.uniform(0.002, 0.01, n)
    return (_pow2(v) if g.tie else v).astype(np.float32)


def _zero_point(g: QGraph, rng) -> int:
    """0 (symmetric int8), or a random zero point (uint8 around the middle, int8 off centre)."""
    if g.dtype == "uint8":
        return int(rng.integers(100, 156))
    return int(rng.choice([-1, 1]) * rng.integers(3, 40)) if g.asymmetric else 0


def _conv(k=3, stride=1, pad=1, group=1, dilation=1, act=None, bias=True, cin=4, cout=8, hw=9):
    def build(g, rng, s_out, z_out):
        s_x = _scale(g, rng)
        x = g.input((1, cin, hw, hw), s_x, _zero_point(g, rng))
        w = rng.integers(-127, 128, (cout, cin // group, k, k)).astype(np.int8)
        s_w = _weight_scales(g, rng, cout)
        inputs = [x, g.weight(w, s_w, 0)]
        if bias:
            b = rng.integers(-3000, 3000, cout)
            inputs.append(g.bias(b, (np.float64(s_x) * s_w.astype(np.float64)).astype(np.float32)))
        attrs = dict(kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4, group=group, dilations=[dilation] * 2)
        y = g.node("Conv", inputs, **attrs)
        if act == "relu":
            y = g.node("Relu", [y])
        elif act == "clip":  # ReLU6 in units of the fitted output scale: the upper bound is inside the range
            y = g.node("Clip", [y, g.const(np.float32(0.0)), g.const(np.float32(0.6))])
        return y

    return build


def _add(relu=False, broadcast=False):
    def build(g, rng, s_out, z_out):
        a = g.input((1, 4, 6, 6), _scale(g, rng), _zero_point(g, rng))
        b = g.input((1, 4, 1, 1) if broadcast else (1, 4, 6, 6), _scale(g, rng), _zero_point(g, rng))
        y = g.node("Add", [a, b])
        return g.node("Relu", [y]) if relu else y

    return build


def _clip(low, high):
    def build(g, rng, s_out, z_out):
        x = g.input((1, 3, 5, 5), _scale(g, rng), _zero_point(g, rng))
        if low is None and high is None:
            return g.node("Relu", [x])
        args = [x, g.const(np.float32(low))]
        if high is not None:
            args.append(g.const(np.float32(high)))
        return g.node("Clip", args)

    return build


def _pool(op, **attrs):
    def build(g, rng, s_out, z_out):
        return g.node(op, [g.input((1, 3, 9, 9), _scale(g, rng), _zero_point(g, rng))], **attrs)

    return build


def _same_scale(op, shape, consts=(), **attrs):
    """An op whose Q repeats the input's (s, z) (``OpCase.exact``): build returns (float result, s, z)."""

    def build(g, rng, s_out, z_out):
        s, z = _scale(g, rng), _zero_point(g, rng)
        x = g.input(shape, s, z)
        return g.node(op, [x, *(g.const(v) if v is not None else "" for v in consts)], **attrs), s, z

    return build


def _concat():
    def build(g, rng, s_out, z_out):
        a = g.input((1, 2, 4, 4), _scale(g, rng), _zero_point(g, rng))
        b = g.input((1, 3, 4, 4), _scale(g, rng), _zero_point(g, rng))
        return g.node("Concat", [a, b], axis=1)

    return build


def _gemm(trans_b=1, bias=True, act=None):
    def build(g, rng, s_out, z_out):
        s_a = _scale(g, rng)
        a = g.input((2, 16), s_a, _zero_point(g, rng))
        w = rng.integers(-127, 128, (8, 16) if trans_b else (16, 8)).astype(np.int8)
        s_w = _weight_scales(g, rng, 8)
        inputs = [a, g.weight(w, s_w, 0 if trans_b else 1)]
        if bias:
            inputs.append(g.bias(rng.integers(-2000, 2000, 8), (np.float64(s_a) * s_w).astype(np.float32)))
        y = g.node("Gemm", inputs, transB=trans_b)
        return g.node("Relu", [y]) if act == "relu" else y

    return build


def _matmul_const():
    def build(g, rng, s_out, z_out):
        a = g.input((1, 5, 16), _scale(g, rng), _zero_point(g, rng))
        w = rng.integers(-127, 128, (16, 6)).astype(np.int8)
        return g.node("MatMul", [a, g.weight(w, _weight_scales(g, rng, 6), 1)])

    return build


def _matmul_act():
    def build(g, rng, s_out, z_out):
        a = g.input((1, 6, 8), _scale(g, rng), _zero_point(g, rng))
        b = g.input((1, 8, 5), _scale(g, rng), _zero_point(g, rng))
        return g.node("MatMul", [a, b])

    return build


_RESIZE = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
_POOL = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)

OP_CASES: tuple[OpCase, ...] = (
    OpCase("conv3x3", _conv()),
    OpCase("conv3x3_s2_relu", _conv(stride=2, act="relu")),
    OpCase("conv_clip", _conv(act="clip")),
    OpCase("conv_depthwise", _conv(group=4, cin=4, cout=4)),
    OpCase("conv_dilated", _conv(dilation=2, pad=2)),
    OpCase("conv_dilated_s2", _conv(stride=2, dilation=3, pad=2, hw=11)),
    OpCase("conv_depthwise_dilated", _conv(group=4, cin=4, cout=4, dilation=2, pad=2)),
    OpCase("conv1x1_no_bias", _conv(k=1, pad=0, bias=False)),
    OpCase("add", _add(), add_rule=True),
    OpCase("add_relu_broadcast", _add(relu=True, broadcast=True), add_rule=True),
    OpCase("relu", _clip(None, None)),
    OpCase("clip", _clip(-0.5, 0.8)),
    OpCase("clip_min_only", _clip(0.1, None)),
    OpCase("avgpool_k3s2p1", _pool("AveragePool", **_POOL)),
    OpCase("avgpool_include_pad_ceil", _pool("AveragePool", **_POOL, count_include_pad=1, ceil_mode=1)),
    OpCase("avgpool_ceil", _pool("AveragePool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)),
    OpCase("global_avgpool", _pool("GlobalAveragePool")),
    OpCase("concat", _concat()),
    OpCase("gemm", _gemm()),
    OpCase("gemm_transb0_relu", _gemm(trans_b=0, act="relu")),
    OpCase("gemm_no_bias", _gemm(bias=False)),
    OpCase("matmul_const", _matmul_const()),
    OpCase("matmul_two_activations", _matmul_act()),
    OpCase("maxpool_k3s2p1", _same_scale("MaxPool", (1, 3, 9, 9), **_POOL), exact=True),
    OpCase(
        "maxpool_ceil",
        _same_scale("MaxPool", (1, 3, 8, 8), kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        exact=True,
    ),
    OpCase("maxpool_dilated", _same_scale("MaxPool", (1, 3, 9, 9), kernel_shape=[2, 2], dilations=[2, 2]), exact=True),
    OpCase(
        "resize_nearest",
        _same_scale("Resize", (1, 2, 3, 4), [None, np.array([1, 1, 2, 2], np.float32)], **_RESIZE),
        exact=True,
    ),
    OpCase("flatten", _same_scale("Flatten", (1, 3, 2, 2), axis=1), exact=True),
    OpCase("reshape", _same_scale("Reshape", (1, 4, 3, 2), [np.array([1, -1, 6], np.int64)]), exact=True),
    OpCase("transpose", _same_scale("Transpose", (1, 4, 3, 2), perm=[0, 2, 3, 1]), exact=True),
    OpCase("squeeze", _same_scale("Squeeze", (1, 4, 1, 3), [np.array([2], np.int64)]), exact=True),
    OpCase("unsqueeze", _same_scale("Unsqueeze", (1, 4, 3), [np.array([1], np.int64)]), exact=True),
)
VARIANTS = ("int8", "int8_asym", "uint8")  # symmetric int8; int8 with zero points; uint8 (quantize_static's default)


def make_case(case: OpCase, variant: str, seed: int, tie: bool = False) -> onnx.ModelProto:
    """The case's model for ``variant`` (VARIANTS); ``tie``: every scale a power of two (many exact ties). The
    output scale and zero point are fitted to the op's float range (one ORT run at scale 1)."""
    dtype = "uint8" if variant == "uint8" else "int8"

    def build(s_out: float, z_out: int) -> tuple[QGraph, onnx.ModelProto]:
        g = QGraph(dtype, asymmetric=variant != "int8", tie=tie)
        y = case.build(g, np.random.default_rng(seed), s_out, z_out)
        if case.exact:  # a scale-preserving op: Q repeats the input's (s, z)
            y, s_out, z_out = y
        g.q(y, s_out, z_out)
        return g, g.build()

    g, model = build(1.0, 0)
    if case.exact:
        return model
    y = next(n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear")
    floats = ort_run(with_float_outputs(model), random_feeds(model, seed))[y]
    lo, hi = float(floats.min()), float(floats.max())
    s_out = max(hi - lo, 1e-3) / 250.0
    if tie:
        s_out = float(_pow2(s_out))
    z_out = 0
    if variant == "uint8":
        z_out = int(np.clip(round(-lo / s_out) + 2, 0, 255))
    elif variant == "int8_asym":
        z_out = int(np.clip(round(-lo / s_out) - 126, -128, 127))
    return build(float(np.float32(s_out)), z_out)[1]


def random_feeds(model: onnx.ModelProto, seed: int) -> dict[str, np.ndarray]:
    """Seeded random values over the whole int8/uint8 range for every graph input."""
    rng = np.random.default_rng(seed + 1000)
    out = {}
    for i in model.graph.input:
        shape = tuple(d.dim_value for d in i.type.tensor_type.shape.dim)
        dtype = np.uint8 if i.type.tensor_type.elem_type == TensorProto.UINT8 else np.int8
        info = np.iinfo(dtype)
        out[i.name] = rng.integers(info.min, info.max + 1, size=shape).astype(dtype)
    return out


def ort_run(model: onnx.ModelProto, feeds: dict) -> dict[str, np.ndarray]:
    """onnxruntime with its graph optimisations off (they move results by 1-2 LSB, microsoft/onnxruntime#32132)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds), strict=True))


def as_int8(a: np.ndarray) -> np.ndarray:
    """An ONNX int8/uint8 array in the integer path's int8 form (uint8 ``u`` -> ``u - 128``)."""
    return (a.astype(np.int16) - 128).astype(np.int8) if a.dtype == np.uint8 else a


def _io_scales(model: onnx.ModelProto) -> tuple[list[float], float]:
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    inputs = {i.name for i in model.graph.input}
    nodes = model.graph.node
    s_in = [float(inits[n.input[1]]) for n in nodes if n.op_type == "DequantizeLinear" and n.input[0] in inputs]
    s_out = [float(inits[n.input[1]]) for n in nodes if n.op_type == "QuantizeLinear"]
    return s_in, s_out[-1]


def _float_outputs(model: onnx.ModelProto) -> dict[str, str]:
    """{Q graph output: the float tensor it quantises}."""
    outputs = {o.name for o in model.graph.output}
    return {
        n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear" and n.output[0] in outputs
    }


def with_float_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose outputs also include the float value before each output's Q (ORT's value before rounding)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for y in _float_outputs(model).values():
        m.graph.output.append(helper.make_tensor_value_info(y, TensorProto.FLOAT, None))
    return m


@dataclass
class Comparison:
    """Outcome of one model: elements compared, max |diff|, the 1-LSB differences that are rounding ties, and
    those that are not (must be 0)."""

    total: int = 0
    max_diff: int = 0
    ties: int = 0
    unexplained: int = 0


def compare_with_ort(model: onnx.ModelProto, case: OpCase, seed: int, repeats: int = 3) -> Comparison:
    """Simulator vs onnxruntime on ``repeats`` seeded random inputs (the whole int8/uint8 range)."""
    from fcos3d.runtime.reference.simulator import Simulator

    sim = Simulator(model)
    s_in, s_out = _io_scales(model)
    extra = 2.0**-19 * max(s_in) / s_out if case.add_rule else 0.0
    floats = _float_outputs(model)
    result = Comparison()
    for r in range(repeats):
        feeds = random_feeds(model, seed + 17 * r)
        ref = ort_run(with_float_outputs(model), feeds)
        ours = sim.run(feeds)
        for out in sim.output_names:
            want, got = as_int8(ref[out]).astype(np.int32), ours[out].astype(np.int32)
            diff = np.abs(want - got)
            result.total += diff.size
            result.max_diff = max(result.max_diff, int(diff.max(initial=0)))
            if not diff.any():
                continue
            if case.exact or out not in floats:
                result.unexplained += int((diff > 0).sum())
                continue
            v = ref[floats[out]].astype(np.float64) / s_out  # ORT's value in output steps, before it rounds
            near_tie = np.abs(v - np.floor(v) - 0.5) <= TIE_RTOL * np.maximum(1.0, np.abs(v)) + extra
            result.ties += int(((diff == 1) & near_tie).sum())
            result.unexplained += int(((diff > 1) | ((diff == 1) & ~near_tie)).sum())
    return result
