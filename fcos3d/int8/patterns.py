"""The machinery of the QDQ reader: the ``Parser`` state and its pattern helpers, shared by every parse function.

A parse function (reader.py's, or another module's added to ``reader.PARSERS``) matches one anchor node with
the helpers here: ``dq_view`` for an int8 input, ``dq_const`` for a constant weight, ``follow_to_q`` for the
output, then ``define_int8`` and ``accept``. ``Reject`` is a pattern that does not match (its message is shown
to the user); every tensor has one (scale, zero point) and int8 values (a uint8 ``q`` is ``q - 128`` with zero
point ``z - 128``, docs/int8.md 1), so no parse function sees uint8.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .ops import GraphInput, IntOp, clip_bounds, output_bounds

__all__ = [
    "UnsupportedGraphError",
    "Reject",
    "Downstream",
    "QView",
    "QOutput",
    "Parser",
    "ParseFn",
    "node_attrs",
    "int_pair",
    "spatial_attrs",
]

# The ONNX integer types an activation may have, and the offset that makes them int8.
_ACTIVATION_TYPES = {TensorProto.INT8: ("int8", 0), TensorProto.UINT8: ("uint8", -128)}
_NP_ACTIVATION_TYPES = {np.dtype(np.int8): ("int8", 0), np.dtype(np.uint8): ("uint8", -128)}


class UnsupportedGraphError(ValueError):
    """The graph holds nodes outside the supported QDQ patterns.

    ``nodes``: every offending ``(node name, op_type)``; ``problems``: the same with the reason as a third
    item. The message lists all of them, one per line.
    """

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = list(problems)
        self.nodes = [(name, op) for name, op, _ in self.problems]
        lines = "\n".join(f"  - {name} ({op}): {why}" for name, op, why in self.problems)
        super().__init__(
            f"{len(self.problems)} node(s) outside the supported int8 QDQ patterns "
            f"(docs/int8.md section 5; fcos3d/int8/reader.py lists them):\n{lines}"
        )


class Reject(Exception):
    """A pattern did not match; the message is the reason shown to the user."""


class Downstream(Exception):
    """The node reads a tensor of an already reported node: not its own fault, so not reported."""


@dataclass(frozen=True)
class QView:
    """An int8 activation seen through a DequantizeLinear: ``src`` (the int8 tensor), its scale and int8 zero
    point, and the DQ node (None when the op reads ``src`` directly)."""

    src: str
    scale: float
    zero_point: int
    node: onnx.NodeProto | None


@dataclass(frozen=True)
class QOutput:
    """Where an op's float result becomes int8: ``tensor`` (the Q output), its scale and zero point, a fused
    Relu (``relu``) or Clip (``clamp``, quantised bounds), and the nodes of the chain (Relu/Clip, Q, ...)."""

    tensor: str
    scale: float
    zero_point: int
    relu: bool
    clamp: tuple[int, int] | None
    nodes: list = field(default_factory=list)
    qtype: str = "int8"

    @property
    def bounds(self) -> tuple[int, int]:
        return output_bounds(self.relu, self.clamp, self.zero_point)


def node_attrs(node: onnx.NodeProto) -> dict:
    """``{attribute name: value}`` with bytes decoded to str."""
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def int_pair(values, name: str) -> tuple[int, int]:
    values = tuple(int(v) for v in values)
    if len(values) != 2:
        raise Reject(f"{name} {values} must have 2 entries (2-D NCHW op)")
    return values  # type: ignore[return-value]


def spatial_attrs(
    attrs: dict, kernel: tuple[int, int], allow_dilation: bool = True
) -> tuple[tuple[int, int], tuple[int, int, int, int], tuple[int, int]]:
    """(strides, pads, dilations) of a 2-D Conv/pool, checking auto_pad and the kernel shape."""
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID"):
        raise Reject(f"auto_pad={auto_pad} is not supported: export explicit pads")
    dilations = int_pair(attrs.get("dilations", (1, 1)), "dilations")
    if min(dilations) < 1 or (not allow_dilation and dilations != (1, 1)):
        raise Reject(f"dilations {dilations} are not supported (only 1)")
    if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != kernel:
        raise Reject(f"kernel_shape {tuple(attrs['kernel_shape'])} differs from the weight's {kernel}")
    strides = int_pair(attrs.get("strides", (1, 1)), "strides")
    pads = tuple(int(p) for p in attrs.get("pads", (0, 0, 0, 0))) if auto_pad == "NOTSET" else (0, 0, 0, 0)
    if len(pads) != 4 or min(pads) < 0 or min(strides) < 1:
        raise Reject(f"pads {pads} / strides {strides} are not valid 2-D values")
    return strides, pads, dilations  # type: ignore[return-value]


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray:
    attr = node.attribute[0] if len(node.attribute) == 1 else None
    if attr is None:
        raise Reject("a Constant needs exactly one attribute")
    value = helper.get_attribute_value(attr)
    if attr.name == "value":
        return numpy_helper.to_array(value)
    if attr.name in ("value_float", "value_floats"):
        return np.asarray(value, dtype=np.float32)
    if attr.name in ("value_int", "value_ints"):
        return np.asarray(value, dtype=np.int64)
    raise Reject(f"Constant attribute {attr.name!r} is not supported")


class Parser:
    """The state of one parse: the ONNX graph's indexes, the int8 tensors found so far, the ops, the problems.

    Parse functions call the helpers below; ``reader.parse_qdq`` runs the loop over the nodes.
    """

    def __init__(self, model: onnx.ModelProto):
        g = model.graph
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.nodes = list(g.node)
        self.names = {id(n): n.name or f"{n.op_type}_{i}" for i, n in enumerate(self.nodes)}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for n in self.nodes:
            for t in n.output:
                if t:
                    self.producer[t] = n
            for t in n.input:
                if t:
                    self.consumers[t].append(n)
        self.graph_inputs = [v for v in g.input if v.name not in self.consts]
        self.graph_outputs = [v.name for v in g.output]
        self.output_set = set(self.graph_outputs)
        self.problems: list[tuple[str, str, str]] = []
        self.problem_nodes: set[int] = set()  # reported, or skipped as downstream of a reported node
        self.tainted: set[str] = set()  # tensors computed by those nodes
        self.covered: set[int] = set()
        self.int8: dict[str, float] = {}  # int8 activation tensor -> scale
        self.zero_points: dict[str, int] = {}  # int8 activation tensor -> int8 zero point
        self.qtypes: dict[str, str] = {}  # int8 activation tensor -> its ONNX type, "int8" or "uint8"
        self.alias: dict[str, str] = {}  # extra Q outputs of the float input -> the one input tensor
        self.ops: list[IntOp] = []
        self.heads: dict[str, IntOp] = {}
        self.inputs: list[GraphInput] = []
        # True while a node downstream of a reported node is parsed: only its own (attribute) problems count.
        self.downstream = False

    # -- small helpers ------------------------------------------------------------------------------------

    def name(self, node: onnx.NodeProto) -> str:
        return self.names[id(node)]

    def problem(self, node: onnx.NodeProto, reason: str | None) -> None:
        """Report ``node`` (``reason`` None: skip it silently) and taint its outputs."""
        if reason is not None:
            self.problems.append((self.name(node), node.op_type, reason))
        self.problem_nodes.add(id(node))
        self.tainted.update(t for t in node.output if t)

    def resolve(self, tensor: str) -> str:
        return self.alias.get(tensor, tensor)

    def check_not_tainted(self, tensor: str) -> None:
        if tensor in self.tainted:
            raise Downstream(tensor)

    def const(self, tensor: str, what: str) -> np.ndarray:
        """The value of an initializer or Constant node output (``Reject`` otherwise)."""
        self.check_not_tainted(tensor)
        if tensor in self.consts:
            return self.consts[tensor]
        p = self.producer.get(tensor)
        if p is not None and p.op_type == "Constant":
            value = _constant_node_value(p)
            self.consts[tensor] = value
            return value
        raise Reject(f"{what} {tensor!r} must be a constant (initializer or Constant)")

    def optional_const(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray | None:
        """``node.input[index]`` as a constant, None when the optional input is absent."""
        if len(node.input) <= index or not node.input[index]:
            return None
        return np.asarray(self.const(node.input[index], what))

    def is_const(self, tensor: str) -> bool:
        p = self.producer.get(tensor)
        return tensor in self.consts or (p is not None and p.op_type == "Constant")

    def scalar_scale(self, tensor: str, what: str) -> float:
        s = np.asarray(self.const(tensor, what))
        if s.size != 1 or s.dtype != np.float32:
            raise Reject(f"{what} must be one float32 value (per-tensor int8), got {s.dtype} shape {s.shape}")
        v = float(s.reshape(()))
        if not (np.isfinite(v) and v > 0):
            raise Reject(f"{what} {v!r} must be finite and > 0")
        return v

    def activation_zero_point(self, node: onnx.NodeProto, what: str, qtype: str | None = None) -> tuple[int, str]:
        """(int8 zero point, ONNX type) of a Q/DQ's per-tensor activation zero point (docs/int8.md 1).

        int8 ``z`` stays ``z``; uint8 ``z`` becomes ``z - 128`` (the tensor is stored as ``q - 128``). Without a
        zero point input: 0 of the tensor's type (``qtype`` for a DQ; a Q's ``output_dtype``, default uint8).
        """
        if len(node.input) >= 3 and node.input[2]:
            zp = np.asarray(self.const(node.input[2], f"{what} zero point"))
            kind = _NP_ACTIVATION_TYPES.get(zp.dtype)
            if kind is None:
                raise Reject(f"{what} zero point has dtype {zp.dtype}: activations must be int8 or uint8")
            if zp.size != 1:
                raise Reject(f"{what} zero point must be one value (per-tensor activation), got shape {zp.shape}")
            return int(zp.reshape(())) + kind[1], kind[0]
        if qtype is None:
            elem = int(node_attrs(node).get("output_dtype", TensorProto.UINT8))
            if elem not in _ACTIVATION_TYPES:
                raise Reject(f"{what} outputs {TensorProto.DataType.Name(elem)}: activations must be int8 or uint8")
            qtype = _ACTIVATION_TYPES[elem][0]
        return (-128 if qtype == "uint8" else 0), qtype

    def weight_zero_point_is_zero(self, node: onnx.NodeProto, dtype: np.dtype, what: str) -> None:
        if len(node.input) < 3 or not node.input[2]:
            return
        zp = np.asarray(self.const(node.input[2], f"{what} zero point"))
        if zp.dtype != dtype:
            raise Reject(f"{what} zero point has dtype {zp.dtype}, expected {np.dtype(dtype)}")
        if np.any(zp != 0):
            raise Reject(f"{what} zero point must be 0 (symmetric weights and biases), got {zp.ravel()[:4]}")

    def check_block_size(self, node: onnx.NodeProto) -> None:
        if int(node_attrs(node).get("block_size", 0)) != 0:
            raise Reject(f"{node.op_type} {self.name(node)}: blocked quantisation is not supported")

    def single_consumer(self, tensor: str, what: str = "Relu or QuantizeLinear") -> onnx.NodeProto:
        users = self.consumers.get(tensor, [])
        if len(users) != 1 or tensor in self.output_set:
            raise Reject(f"its float result {tensor!r} must feed exactly one node ({what})")
        return users[0]

    # -- Q and DQ ------------------------------------------------------------------------------------------

    def q_params(self, q: onnx.NodeProto) -> tuple[float, int, str]:
        """(scale, int8 zero point, ONNX type) of a per-tensor QuantizeLinear to int8 or uint8."""
        self.check_block_size(q)
        what = f"QuantizeLinear {self.name(q)}"
        zp, qtype = self.activation_zero_point(q, what)
        return self.scalar_scale(q.input[1], f"{what} scale"), zp, qtype

    def int8_source(self, tensor: str) -> QView | None:
        """The int8 activation ``tensor`` itself (an op applied directly to a quantised tensor), else None."""
        t = self.resolve(tensor)
        self.check_not_tainted(t)
        if t in self.int8:
            return QView(t, self.int8[t], self.zero_points.get(t, 0), None)
        return None

    def dq_view(self, tensor: str) -> QView:
        """``tensor = DQ(src int8 activation, s, z)`` -> its ``QView``; the DQ must repeat src's (s, z)."""
        self.check_not_tainted(tensor)
        dq = self.producer.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear":
            raise Reject(f"input {tensor!r} must come from DequantizeLinear of an int8 activation")
        src = self.resolve(dq.input[0])
        self.check_not_tainted(src)
        if src not in self.int8:
            raise Reject(f"DequantizeLinear {self.name(dq)} reads {src!r}, which is not an int8 activation")
        self.check_block_size(dq)
        what = f"DequantizeLinear {self.name(dq)}"
        zp, qtype = self.activation_zero_point(dq, what, self.qtypes.get(src, "int8"))
        if qtype != self.qtypes.get(src, "int8"):
            raise Reject(
                f"{what} reads the {self.qtypes.get(src, 'int8')} tensor {src!r} with a zero point of type {qtype}"
            )
        scale = self.scalar_scale(dq.input[1], f"{what} scale")
        known, known_zp = self.int8[src], self.zero_points.get(src, 0)
        if np.float32(known) != np.float32(scale) or known_zp != zp:
            raise Reject(
                f"{what} reads {src!r} (scale {known!r}, zero point {known_zp}) with scale {scale!r}, "
                f"zero point {zp} (int8 values; a uint8 zero point is shown minus 128)"
            )
        return QView(src, scale, zp, dq)

    def view(self, tensor: str) -> QView:
        """An int8 input either way: read directly (``int8_source``) or through a DQ (``dq_view``)."""
        return self.int8_source(tensor) or self.dq_view(tensor)

    def dq_const(self, tensor: str, dtype: type, what: str, axis: int = 0) -> tuple[np.ndarray, np.ndarray, object]:
        """``tensor = DQ(const, scale)`` with scales per index of ``axis`` (or one) -> (values, float64 scales
        (values.shape[axis],), dq node). Zero points must be 0 (symmetric weights; int32 biases)."""
        dq = self.producer.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear" or not self.is_const(dq.input[0]):
            raise Reject(f"{what} {tensor!r} must be DequantizeLinear of a constant {np.dtype(dtype)} tensor")
        self.check_block_size(dq)
        values = np.asarray(self.const(dq.input[0], what))
        if values.dtype != dtype:
            raise Reject(f"{what} is {values.dtype}, expected {np.dtype(dtype)}")
        self.weight_zero_point_is_zero(dq, dtype, f"{what} DequantizeLinear")
        scale = np.asarray(self.const(dq.input[1], f"{what} scale"))
        if scale.dtype != np.float32 or scale.ndim > 1:
            raise Reject(f"{what} scale must be a float32 scalar or 1-D, got {scale.dtype} {scale.shape}")
        channels = values.shape[axis] if values.ndim > axis else 1
        if scale.ndim == 1 and scale.size != 1:
            dq_axis = int(node_attrs(dq).get("axis", 1))
            if values.ndim == 0 or dq_axis % values.ndim != axis % max(values.ndim, 1) or scale.size != channels:
                raise Reject(f"{what} scales must be per output channel: axis {axis} with {channels} entries")
        scales = np.broadcast_to(scale.astype(np.float64).reshape(-1), (channels,)).copy()
        if not np.all(np.isfinite(scales) & (scales > 0)):
            raise Reject(f"{what} scales must be finite and > 0")
        return values, scales, dq

    # -- outputs -------------------------------------------------------------------------------------------

    def activation_range(self, node: onnx.NodeProto) -> tuple[float | None, float | None]:
        """The float (min, max) of a Relu (0, None) or Clip node (inputs, or attributes before opset 11)."""
        if node.op_type == "Relu":
            return 0.0, None
        attrs = node_attrs(node)
        lo = self.optional_const(node, 1, "Clip min")
        hi = self.optional_const(node, 2, "Clip max")
        lo = float(lo.reshape(())) if lo is not None else attrs.get("min")
        hi = float(hi.reshape(())) if hi is not None else attrs.get("max")
        return (None if lo is None else float(lo)), (None if hi is None else float(hi))

    def follow_to_q(self, tensor: str, activation: bool) -> QOutput:
        """float result -> [Relu | Clip] -> Q (-> a same-(s, z) DQ -> Relu/Clip -> Q chain, folded) -> ``QOutput``.

        ``activation``: whether a Relu/Clip may sit between the op and its Q (Conv, Add, Gemm, MatMul); the
        standalone chains that quantize_static writes after such an op are folded into its bounds too.
        """
        user = self.single_consumer(tensor, "Relu, Clip or QuantizeLinear" if activation else "QuantizeLinear")
        nodes = []
        act = None
        if activation and user.op_type in ("Relu", "Clip"):
            act = user
            nodes.append(user)
            user = self.single_consumer(user.output[0], "QuantizeLinear")
        if user.op_type != "QuantizeLinear":
            raise Reject(
                f"its result must go to {'[Relu | Clip] -> ' if activation else ''}QuantizeLinear, not {user.op_type}"
            )
        nodes.append(user)
        scale, zp, qtype = self.q_params(user)
        relu, clamp = False, None
        if act is not None:
            if act.op_type == "Relu":
                relu = True
            else:
                clamp = clip_bounds(*self.activation_range(act), scale, zp)
        out = user.output[0]
        while activation:  # Q(s, z) -> DQ(s, z) -> Relu/Clip -> Q(s, z): the same integers as a fused one
            chain = self.standalone_activation(out, scale, zp, qtype)
            if chain is None:
                break
            bounds = output_bounds(relu, clamp, zp)
            lo2, hi2 = clip_bounds(*self.activation_range(chain[1]), scale, zp)
            clamp = (min(max(bounds[0], lo2), hi2), min(max(bounds[1], lo2), hi2))  # clamp2(clamp1(x)), exactly
            relu = False
            if clamp == (zp, 127):  # keep the plain fused-ReLU form (the symmetric path's op is unchanged)
                relu, clamp = True, None
            nodes.extend(chain)
            out = chain[-1].output[0]
        return QOutput(out, scale, zp, relu, clamp, nodes, qtype)

    def standalone_activation(self, q_out: str, scale: float, zp: int, qtype: str) -> list | None:
        """The DQ(s, z) -> Relu/Clip -> Q(s, z) chain after ``q_out`` if every tensor of it has exactly one
        consumer (none a graph output) and both ends have the same scale and zero point.

        With the same (s, z) on both sides, ``Q(clip(DQ(y), a, b)) = clamp(y, z + round(a/s), z + round(b/s))``
        exactly for int8 y (``DQ`` then ``Q`` is the identity on int8 values: ``(y - z) * s / s`` is within
        ``2**-22`` of ``y - z`` in float32), so folding it into the op's bounds computes the same integers.
        """
        if q_out in self.output_set or len(self.consumers.get(q_out, [])) != 1:
            return None
        dq = self.consumers[q_out][0]
        if dq.op_type != "DequantizeLinear" or dq.output[0] in self.output_set:
            return None
        act = self.consumers.get(dq.output[0], [])
        if len(act) != 1 or act[0].op_type not in ("Relu", "Clip") or act[0].output[0] in self.output_set:
            return None
        q2 = self.consumers.get(act[0].output[0], [])
        if len(q2) != 1 or q2[0].op_type != "QuantizeLinear":
            return None
        try:
            dq_zp, dq_type = self.activation_zero_point(dq, "DequantizeLinear", qtype)
            s_dq = self.scalar_scale(dq.input[1], "DequantizeLinear scale")
            s_q, zp_q, type_q = self.q_params(q2[0])
            self.activation_range(act[0])
        except (Reject, Downstream):
            return None
        same = np.float32(s_dq) == np.float32(scale) == np.float32(s_q)
        if not same or dq_zp != zp or zp_q != zp or dq_type != qtype or type_q != qtype:
            return None
        return [dq, act[0], q2[0]]

    # -- results -------------------------------------------------------------------------------------------

    def define_int8(self, tensor: str, scale: float, zero_point: int = 0, qtype: str | None = None) -> None:
        """Record ``tensor`` as an int8 activation with (scale, zero point) (``qtype``: its ONNX type)."""
        if self.downstream:
            return
        self.int8[tensor] = float(scale)
        self.zero_points[tensor] = int(zero_point)
        if qtype is not None:
            self.qtypes[tensor] = qtype
        self.qtypes.setdefault(tensor, "int8")

    def define_output(self, q: QOutput) -> None:
        """Record the int8 tensor that ``follow_to_q`` found."""
        self.define_int8(q.tensor, q.scale, q.zero_point, q.qtype)

    def define_like(self, tensor: str, src: QView) -> None:
        """``tensor`` has ``src``'s scale, zero point and ONNX type (a scale-preserving op on int8 values)."""
        self.define_int8(tensor, src.scale, src.zero_point, self.qtypes.get(src.src, "int8"))

    def accept(self, op: IntOp, nodes: list) -> None:
        if self.downstream:
            raise Downstream(op.name)
        self.ops.append(op)
        self.covered.update(id(n) for n in nodes if n is not None)


# A parse function: matches the pattern anchored at one node, then define_int8 + accept; Reject otherwise.
ParseFn = Callable[[Parser, onnx.NodeProto], None]
