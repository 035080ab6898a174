"""Small int8 QDQ ONNX graphs for tests, built by hand in the form docs/int8.md section 5 specifies.

``QDQGraphBuilder`` emits DQ -> op -> [Relu] -> Q chains with seeded random int8 weights and int32 biases;
the hypothesis strategies draw random single-op and small multi-op graphs (shapes, strides, groups, scales,
and power-of-two scales that make exact rounding ties). Shared by the simulator and compiler tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "OPSET",
    "QTensor",
    "QDQGraphBuilder",
    "GraphCase",
    "ort_session",
    "ort_run",
    "single_op_graphs",
    "small_graphs",
]

OPSET = 17


@dataclass(frozen=True)
class QTensor:
    """An int8 activation of the graph under construction: ONNX name, float32 scale, NCHW shape."""

    name: str
    scale: float
    shape: tuple[int, int, int, int]


def _f32(v) -> float:
    return float(np.float32(v))


def _pow2(v: float) -> float:
    """The power of two nearest to ``v`` in log scale."""
    return 2.0 ** round(math.log2(v))


class QDQGraphBuilder:
    """Builds a QDQ ONNX model op by op; each op method takes and returns ``QTensor``s.

    Every consumer gets its own DequantizeLinear (as exporters emit). Scales are stored as float32.
    ``tie=True`` makes every default scale a power of two, so requantisation factors are exact powers of
    two and many results land exactly on .5 (where the integer rule, ties up, and onnxruntime's QuantizeLinear,
    ties to even, differ by 1).
    """

    def __init__(self, seed: int = 0, tie: bool = False, opset: int = OPSET, name: str = "qdq_test"):
        self.rng = np.random.default_rng(seed)
        self.tie = tie
        self.opset = opset
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._count = 0

    # -- low level ---------------------------------------------------------------------------------------

    def uid(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, prefix: str, array: np.ndarray) -> str:
        name = self.uid(prefix)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op_type: str, inputs: list[str], n_out: int = 1, prefix: str | None = None, **attrs) -> list[str]:
        """Append any node (also unsupported ones, for negative tests); returns its output names."""
        name = self.uid(prefix or op_type.lower())
        outs = [f"{name}_out{i}" if n_out > 1 else f"{name}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs

    def dq(self, x: QTensor) -> str:
        """float tensor = DequantizeLinear(x, scale, zero point int8 0)."""
        s = self.const("scale", np.array(x.scale, dtype=np.float32))
        z = self.const("zp", np.array(0, dtype=np.int8))
        return self.node("DequantizeLinear", [x.name, s, z], prefix="dq")[0]

    def q(self, y: str, scale: float, shape: tuple[int, ...]) -> QTensor:
        """int8 tensor = QuantizeLinear(y, scale, zero point int8 0)."""
        s = self.const("scale", np.array(scale, dtype=np.float32))
        z = self.const("zp", np.array(0, dtype=np.int8))
        return QTensor(self.node("QuantizeLinear", [y, s, z], prefix="q")[0], _f32(scale), tuple(shape))

    def scale(self, v: float) -> float:
        return _f32(_pow2(v) if self.tie else v)

    # -- graph inputs / outputs --------------------------------------------------------------------------

    def input(
        self, shape: tuple[int, int, int, int], scale: float = 1 / 128, float_input: bool = False, name: str = "image"
    ) -> QTensor:
        """The image: an int8 graph input (read by DQ), or a float input followed by Q(scale)."""
        if float_input:
            self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
            s = self.const("scale", np.array(scale, dtype=np.float32))
            z = self.const("zp", np.array(0, dtype=np.int8))
            out = self.node("QuantizeLinear", [name, s, z], prefix="q_input")[0]
            return QTensor(out, _f32(scale), tuple(shape))
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.INT8, list(shape)))
        return QTensor(name, _f32(scale), tuple(shape))

    def output(self, x: QTensor, dequantized: bool = False) -> str:
        """Mark an int8 tensor as a graph output (or, with ``dequantized``, a DQ of it)."""
        if dequantized:
            name = self.dq(x)
            self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(x.shape)))
            return name
        self.outputs.append(helper.make_tensor_value_info(x.name, TensorProto.INT8, list(x.shape)))
        return x.name

    # -- ops ----------------------------------------------------------------------------------------------

    def conv(
        self,
        x: QTensor,
        out_channels: int,
        kernel: int = 3,
        stride: int = 1,
        pad: int | None = None,
        groups: int = 1,
        relu: bool = False,
        bias: bool = True,
        out_scale: float | None = None,
        weight: np.ndarray | None = None,
        weight_scales: np.ndarray | None = None,
        bias_values: np.ndarray | None = None,
        int32_output: bool = False,
        dilation: int = 1,
    ) -> QTensor | str:
        """DQ(x), DQ(W int8, per-channel axis 0), [DQ(B int32, s_in*s_w)] -> Conv -> [Relu] -> Q.

        ``int32_output``: a head conv; its float output becomes a graph output and its name is returned.
        Default scales: ``out_scale`` = the input scale x U(0.7, 1.4) (bounded along deep chains), weight
        scales per channel such that uniform int8 inputs give results of roughly +-40 LSB (x 2**U(-1, 1));
        each a power of two with ``tie``.
        """
        n, c, h, w = x.shape
        pad = kernel // 2 if pad is None else pad
        cg = c // groups
        k = cg * kernel * kernel
        # With ``tie``, small weights and so large power-of-two factors r (1/2 .. 1/16): many exact ties.
        w_max = 3 if self.tie else 127
        if weight is None:
            weight = self.rng.integers(-w_max, w_max + 1, size=(out_channels, cg, kernel, kernel), dtype=np.int8)
        if out_scale is None:
            out_scale = x.scale * self.rng.uniform(0.7, 1.4)  # scales stay bounded along deep chains
        if weight_scales is None:
            # r = s_in * s_w / s_out ~ 40 / (sqrt(K) * 74 * std(w)): uniform int8 inputs give ~ +-40 LSB.
            typical = out_scale / x.scale * 40 / (math.sqrt(k) * 74 * w_max * 0.58)
            weight_scales = typical * 2.0 ** self.rng.uniform(-1, 1, size=out_channels)
        weight_scales = np.array([self.scale(s) for s in np.ravel(weight_scales)], dtype=np.float32)
        bias_scales = np.float32(x.scale) * weight_scales  # float32 product, as a float32 exporter stores it
        inputs = [self.dq(x)]
        ws = self.const("w_scale", weight_scales)
        wz = self.const("w_zp", np.zeros(out_channels, dtype=np.int8))
        inputs.append(self.node("DequantizeLinear", [self.const("w", weight), ws, wz], prefix="dq_w", axis=0)[0])
        if bias:
            if bias_values is None:
                spread = int(0.5 * math.sqrt(k) * 74 * 0.58 * w_max)  # half the accumulator's spread
                bias_values = self.rng.integers(-spread, spread + 1, size=out_channels).astype(np.int32)
            bs = self.const("b_scale", bias_scales)
            bz = self.const("b_zp", np.zeros(out_channels, dtype=np.int32))
            b = self.const("b", np.asarray(bias_values, dtype=np.int32))
            inputs.append(self.node("DequantizeLinear", [b, bs, bz], prefix="dq_b", axis=0)[0])
        ho = (h + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
        wo = (w + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
        y = self.node(
            "Conv",
            inputs,
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[pad] * 4,
            group=groups,
            dilations=[dilation, dilation],
        )[0]
        shape = (n, out_channels, ho, wo)
        if int32_output:
            self.outputs.append(helper.make_tensor_value_info(y, TensorProto.FLOAT, list(shape)))
            return y
        if relu:
            y = self.node("Relu", [y])[0]
        return self.q(y, self.scale(out_scale), shape)

    def add(self, a: QTensor, b: QTensor, out_scale: float | None = None, relu: bool = False) -> QTensor:
        """DQ(a), DQ(b) -> Add -> [Relu] -> Q(out_scale) (default 1.3 x the larger input scale)."""
        y = self.node("Add", [self.dq(a), self.dq(b)])[0]
        if relu:
            y = self.node("Relu", [y])[0]
        if out_scale is None:
            out_scale = 1.3 * max(a.scale, b.scale)
        shape = tuple(np.broadcast_shapes(a.shape, b.shape))
        return self.q(y, self.scale(out_scale), shape)

    def resize(
        self,
        x: QTensor,
        factor: int = 2,
        passthrough: bool = False,
        sizes: tuple[int, int] | None = None,
        coordinate_mode: str = "asymmetric",
        nearest_mode: str = "floor",
    ) -> QTensor:
        """Nearest Resize by ``factor`` (as torch's ``interpolate(scale_factor=2)`` exports), or to ``sizes``.

        ``passthrough``: Resize straight on the int8 tensor (no DQ/Q).
        """
        n, c, h, w = x.shape
        if sizes is None:
            oh, ow = h * factor, w * factor
            extra = ["", self.const("scales", np.array([1, 1, factor, factor], dtype=np.float32))]
        else:
            oh, ow = sizes
            extra = ["", "", self.const("sizes", np.array([n, c, oh, ow], dtype=np.int64))]
        attrs = dict(mode="nearest", coordinate_transformation_mode=coordinate_mode, nearest_mode=nearest_mode)
        if passthrough:
            out = self.node("Resize", [x.name, *extra], **attrs)[0]
            return QTensor(out, x.scale, (n, c, oh, ow))
        y = self.node("Resize", [self.dq(x), *extra], **attrs)[0]
        return self.q(y, x.scale, (n, c, oh, ow))

    def maxpool(self, x: QTensor, kernel: int = 3, stride: int = 2, pad: int = 1, passthrough: bool = False) -> QTensor:
        """DQ(x) -> MaxPool -> Q(same scale), or MaxPool straight on int8 with ``passthrough``."""
        n, c, h, w = x.shape
        ho = (h + 2 * pad - kernel) // stride + 1
        wo = (w + 2 * pad - kernel) // stride + 1
        attrs = dict(kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)
        if passthrough:
            return QTensor(self.node("MaxPool", [x.name], **attrs)[0], x.scale, (n, c, ho, wo))
        y = self.node("MaxPool", [self.dq(x)], **attrs)[0]
        return self.q(y, x.scale, (n, c, ho, wo))

    def concat(
        self, xs: list[QTensor], out_scale: float | None = None, axis: int = 1, passthrough: bool = False
    ) -> QTensor:
        """DQ(x_i) -> Concat -> Q(out_scale, default: the first input's scale), or on int8 with ``passthrough``."""
        shape = list(xs[0].shape)
        shape[axis] = sum(x.shape[axis] for x in xs)  # a negative axis counts from the end, as in ONNX
        if passthrough:
            return QTensor(self.node("Concat", [x.name for x in xs], axis=axis)[0], xs[0].scale, tuple(shape))
        y = self.node("Concat", [self.dq(x) for x in xs], axis=axis)[0]
        return self.q(y, self.scale(out_scale) if out_scale is not None else xs[0].scale, tuple(shape))

    # -- result -------------------------------------------------------------------------------------------

    def build(self, check: bool = True) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 8
        if check:
            onnx.checker.check_model(model)
        return model


# ---------------------------------------------------------------------------------------------------------
# onnxruntime, the float reference (docs/int8.md section 5: compare with optimisations off).
# ---------------------------------------------------------------------------------------------------------


def ort_session(model: onnx.ModelProto):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # no warnings (e.g. tf_half_pixel_for_nn is deprecated but still defined)
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = ort_session(model)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds), strict=True))


# ---------------------------------------------------------------------------------------------------------
# Hypothesis strategies.
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphCase:
    """A random graph with its int8 input (``feeds``: what onnxruntime gets, float for a float input)."""

    model: onnx.ModelProto
    x: np.ndarray
    feeds: dict[str, np.ndarray]
    tie: bool
    description: str
    ops: tuple[str, ...] = field(default=())


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def _conv_params(draw, c_in: int, h: int, w: int) -> dict:
    kernel = draw(st.sampled_from([1, 3, 3, 5]))
    stride = draw(st.sampled_from([1, 2]))
    pad = draw(st.integers(0, kernel // 2))
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise", "pointwise"]))
    if kind == "pointwise":
        kernel, stride, pad = 1, 1, 0
    if kind == "depthwise":
        groups = c_in
        c_out = c_in * draw(st.sampled_from([1, 1, 2]))
    elif kind == "grouped":
        groups = draw(st.sampled_from(_divisors(c_in)))
        c_out = groups * draw(st.integers(1, 3))
    else:
        groups, c_out = 1, draw(st.integers(1, 8))
    if h + 2 * pad < kernel or w + 2 * pad < kernel:
        kernel, pad = 1, 0
    return dict(
        out_channels=c_out,
        kernel=kernel,
        stride=stride,
        pad=pad,
        groups=groups,
        relu=draw(st.booleans()),
        bias=draw(st.booleans()),
    )


def _new_case(b: QDQGraphBuilder, x_in: QTensor, float_input: bool, desc: str, ops: tuple[str, ...]) -> GraphCase:
    x = b.rng.integers(-128, 128, size=x_in.shape, dtype=np.int8)
    model = b.build()
    feeds = {"image": (x.astype(np.float32) * np.float32(x_in.scale)) if float_input else x}
    return GraphCase(model, x, feeds, b.tie, desc, ops)


@st.composite
def single_op_graphs(draw, ops=("conv", "head", "add", "resize", "maxpool", "concat")) -> GraphCase:
    """One supported pattern on a random small input: conv (dense/grouped/depthwise/pointwise, stride 1/2,
    pads, ReLU, bias), int32 head conv, add (two scales, ReLU), nearest resize (scales or sizes, several
    ONNX index modes, QDQ or int8 passthrough), max pool, concat (shared or differing scales)."""
    op = draw(st.sampled_from(list(ops)))
    tie = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    n = draw(st.integers(1, 2))
    c = draw(st.integers(1, 6))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    passthrough = op in ("resize", "maxpool") and draw(st.booleans())
    # An int8 op straight on an int8 graph input would leave the input's scale undefined (no DQ reads it):
    # passthrough cases take the float input, whose QuantizeLinear gives the scale.
    float_input = passthrough or draw(st.booleans())
    b = QDQGraphBuilder(seed=seed, tie=tie)
    x = b.input((n, c, h, w), float_input=float_input)
    if op in ("conv", "head"):
        p = draw(_conv_params(c, h, w))
        if op == "head":
            p.pop("relu")
            b.conv(x, **p, int32_output=True)
        else:
            b.output(b.conv(x, **p))
        desc = f"{op} {p}"
    elif op == "add":
        # Two branches with their own scales (1x1 convs), then the add.
        ya = b.conv(x, c, kernel=1, pad=0)
        yb = b.conv(x, c, kernel=1, pad=0, out_scale=ya.scale * draw(st.floats(0.2, 5.0)))
        relu = draw(st.booleans())
        ratio = draw(st.floats(0.5, 3.0))
        b.output(b.add(ya, yb, out_scale=max(ya.scale, yb.scale) * ratio, relu=relu))
        desc = f"add relu={relu} scales {ya.scale:.4g} {yb.scale:.4g}"
    elif op == "resize":
        if draw(st.booleans()):
            coord, nearest = "asymmetric", "floor"
            b.output(b.resize(x, factor=draw(st.sampled_from([2, 2, 3])), passthrough=passthrough))
            desc = f"resize x2/x3 asymmetric floor passthrough={passthrough}"
        else:
            coord = draw(
                st.sampled_from(
                    ["asymmetric", "half_pixel", "pytorch_half_pixel", "align_corners", "tf_half_pixel_for_nn"]
                )
            )
            nearest = draw(st.sampled_from(["floor", "ceil", "round_prefer_floor", "round_prefer_ceil"]))
            sizes = (draw(st.integers(1, 2 * h + 1)), draw(st.integers(1, 2 * w + 1)))
            b.output(b.resize(x, sizes=sizes, coordinate_mode=coord, nearest_mode=nearest, passthrough=passthrough))
            desc = f"resize to {sizes} {coord} {nearest} passthrough={passthrough}"
    elif op == "maxpool":
        kernel = draw(st.sampled_from([2, 3]))
        stride = draw(st.sampled_from([1, 2]))
        pad = draw(st.integers(0, kernel - 1))  # onnxruntime requires pad < kernel
        if h + 2 * pad < kernel or w + 2 * pad < kernel:
            pad = kernel - 1
        b.output(b.maxpool(x, kernel, stride, pad, passthrough=passthrough))
        desc = f"maxpool k{kernel} s{stride} p{pad} passthrough={passthrough}"
    else:
        axis = draw(st.sampled_from([1, 1, 2, 3, -1]))
        ca = draw(st.integers(1, 4))
        cb = ca if axis != 1 else draw(st.integers(1, 4))
        ya = b.conv(x, ca, kernel=1, pad=0)
        shared = draw(st.booleans())
        yb = b.conv(x, cb, kernel=3, out_scale=ya.scale if shared else None)
        passthrough = shared and draw(st.booleans())
        b.output(
            b.concat(
                [ya, yb],
                out_scale=None if shared else ya.scale * draw(st.floats(0.5, 2.0)),
                axis=axis,
                passthrough=passthrough,
            )
        )
        desc = f"concat axis={axis} shared={shared} passthrough={passthrough}"
    return _new_case(b, x, float_input, f"{desc} input={(n, c, h, w)} tie={tie} float_input={float_input}", (op,))


@st.composite
def small_graphs(draw, max_ops: int = 4) -> GraphCase:
    """A chain of 2..max_ops random ops with a skip add, an upsample and a head conv at the end."""
    tie = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    c = draw(st.integers(1, 4))
    h, w = draw(st.integers(3, 8)), draw(st.integers(3, 8))
    b = QDQGraphBuilder(seed=seed, tie=tie)
    x = b.input((1, c, h, w))
    y = x
    names = []
    for _ in range(draw(st.integers(2, max_ops))):
        op = draw(st.sampled_from(["conv", "dw", "add", "maxpool", "up"]))
        names.append(op)
        if op == "conv":
            y = b.conv(y, draw(st.integers(1, 6)), kernel=3, stride=draw(st.sampled_from([1, 2])), relu=True)
        elif op == "dw":
            y = b.conv(y, y.shape[1], kernel=3, groups=y.shape[1], relu=draw(st.booleans()))
        elif op == "add":
            z = b.conv(y, y.shape[1], kernel=1, pad=0)
            y = b.add(y, z, relu=draw(st.booleans()))
        elif op == "maxpool":
            y = b.maxpool(y, 3, 2, 1)
        else:
            y = b.resize(y, 2)
        b.output(y)
    b.conv(y, draw(st.integers(1, 3)), kernel=1, pad=0, int32_output=True)
    names.append("head")
    return _new_case(b, x, False, f"chain {names} input={(1, c, h, w)} tie={tie}", tuple(names))


def assert_equals_simulator(vm, sims: dict, seed: int = 9) -> None:
    """Every compiled function ``vm[name]`` == its simulator ``sims[name]`` on every element, for a random input
    and for all -128."""
    import tvm

    rng = np.random.default_rng(seed)
    for name, sim in sims.items():
        shape = sim.graph.inputs[0].shape
        for x in (rng.integers(-128, 128, size=shape, dtype=np.int8), np.full(shape, -128, np.int8)):
            want = list(sim.run(x).values())[0]
            got = vm[name](tvm.runtime.tensor(x))
            got = (got[0] if hasattr(got, "__getitem__") else got).numpy()
            assert got.shape == want.shape and np.array_equal(got, want), name
