"""Per-layer analytic latency model, Vela-style: max(compute, memory) + overhead per op, summed over the graph.

The formulas are written once, in PERFORMANCE.md "## Latency model"; this module is their executable form.
Input: an ``IntGraph`` (parse_qdq) and a board's ``Accelerator`` profile. Integer cycle counts, exact.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from fractions import Fraction

from fcos3d.boards import Accelerator, Board, load_board
from fcos3d.int8.ops import (
    Add,
    AveragePool,
    Clip,
    Concat,
    Conv,
    ConvTranspose,
    IntGraph,
    Lut,
    LutAveragePool,
    MatMul,
    MaxPool,
    Mul,
    Reshape,
    ResizeLinear,
    ResizeNearest,
    Softmax,
    Transpose,
    conv_output_size,
)

__all__ = [
    "PARAM_BYTES_INT8",
    "PARAM_BYTES_INT32",
    "Estimate",
    "LayerEstimate",
    "HOST_FIGURES",
    "HOST_TERMS",
    "host_extra_kernels",
    "host_packed_convs",
    "estimate",
    "host_counts",
    "layer_estimates",
    "tensor_shapes",
    "throughput",
]

# Per output channel constants a conv carries besides its int8 weights (docs/int8.md 4.2): an int32 bias, an
# int32 multiplier and a shift (0..63, one byte). A head conv with int32 output has only the bias.
PARAM_BYTES_INT8 = 4 + 4 + 1
PARAM_BYTES_INT32 = 4


@dataclass(frozen=True)
class LayerEstimate:
    """One op's estimate. ``work`` is the MAC-array (or output-stage) work after padding to the block
    geometry; ``macs`` the real MACs. ``on_chip``: the op's activations fit the SRAM."""

    name: str
    op: str  # Conv, DepthwiseConv, GroupConv, HeadConv, Add, Resize, MaxPool, Concat
    output_shape: tuple[int, ...]
    macs: int
    work: int
    weight_bytes: int
    activation_bytes: int  # inputs read + output written
    on_chip: bool
    compute_cycles: int
    memory_cycles: int
    overhead_cycles: int
    cycles: int

    @property
    def bound(self) -> str:
        return "compute" if self.compute_cycles >= self.memory_cycles else "memory"


@dataclass(frozen=True)
class Estimate:
    """A whole-graph estimate on one board, with the totals people pick a board by."""

    board: str
    accelerator: str
    clock_hz: float
    macs_per_cycle: float
    layers: tuple[LayerEstimate, ...]
    peak_activation_bytes: int
    # Once per inference, outside every layer (the host's call_overhead_cycles; 0 on the NPU boards).
    call_cycles: int = 0

    @property
    def cycles(self) -> int:
        return sum(layer.cycles for layer in self.layers) + self.call_cycles

    @property
    def seconds(self) -> float:
        return self.cycles / self.clock_hz

    @property
    def fps(self) -> float:
        return 1.0 / self.seconds if self.cycles else math.inf

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def weight_bytes(self) -> int:
        return sum(layer.weight_bytes for layer in self.layers)

    @property
    def mac_utilisation(self) -> float:
        """Real MACs over what the array could do in the whole run: macs / (cycles x macs_per_cycle)."""
        return self.macs / (self.cycles * self.macs_per_cycle) if self.cycles else 0.0

    def totals(self) -> dict:
        return {
            "cycles": self.cycles,
            "call_overhead_cycles": self.call_cycles,
            "latency_ms": self.seconds * 1e3,
            "fps": self.fps,
            "gmacs": self.gmacs,
            "weight_bytes": self.weight_bytes,
            "peak_activation_bytes": self.peak_activation_bytes,
            "mac_utilisation": self.mac_utilisation,
        }

    def layer_rows(self) -> list[dict]:
        """One plain dict per layer (JSON/CSV), with the latency in ms and the bound."""
        rows = []
        for layer in self.layers:
            row = asdict(layer)
            row["output_shape"] = list(layer.output_shape)
            row["latency_ms"] = layer.cycles / self.clock_hz * 1e3
            row["bound"] = layer.bound
            rows.append(row)
        return rows


def _ceil_to(n: int, block: int) -> int:
    """n rounded up to a multiple of block: the array computes whole blocks (Vela pads them likewise)."""
    return -(-n // block) * block


def _cycles(nbytes: int, clock_hz: float, bytes_per_s: float) -> int:
    """ceil(bytes x clock / bandwidth), in exact rationals so pinned test values do not drift."""
    return math.ceil(Fraction(nbytes) * Fraction(clock_hz) / Fraction(bytes_per_s))


# The lookup-table family's ops (docs/int8.md 8): each has its own output_shape rule.
_LUT_FAMILY = (Lut, Mul, Softmax, ConvTranspose, ResizeLinear, LutAveragePool)


def tensor_shapes(graph: IntGraph) -> dict[str, tuple[int, ...]]:
    """NCHW shape of every tensor, propagated from the (static) input shapes through the ops."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i in graph.inputs:
        if any(d is None for d in i.shape):
            raise ValueError(f"input {i.name!r} has a symbolic shape {i.shape}: the estimate needs static shapes")
        shapes[i.tensor] = tuple(int(d) for d in i.shape)
    for op in graph.ops:
        if isinstance(op, (Clip, AveragePool, Reshape, Transpose, MatMul, *_LUT_FAMILY)) or (
            isinstance(op, (Conv, MaxPool)) and (op.dilations != (1, 1) or getattr(op, "ceil_mode", False))
        ):  # the ops' own shape rule: the [int8-ops] ops, dilated convs and pools, ceil-mode pools
            shapes[op.output] = tuple(op.output_shape(*(shapes[t] for t in op.inputs)))
        elif isinstance(op, Conv):
            n, _, h, w = shapes[op.input]
            kh, kw = op.weight.shape[2:]
            ho = conv_output_size(h, kh, op.strides[0], op.pads[0], op.pads[2])
            wo = conv_output_size(w, kw, op.strides[1], op.pads[1], op.pads[3])
            shapes[op.output] = (n, op.weight.shape[0], ho, wo)
        elif isinstance(op, Add):
            shapes[op.output] = tuple(max(a, b) for a, b in zip(shapes[op.a], shapes[op.b], strict=True))
        elif isinstance(op, ResizeNearest):
            n, c, h, w = shapes[op.input]
            if op.sizes is not None:
                shapes[op.output] = tuple(int(d) for d in op.sizes)
            else:
                shapes[op.output] = (n, c, int(h * op.scales[0]), int(w * op.scales[1]))
        elif isinstance(op, MaxPool):
            n, c, h, w = shapes[op.input]
            ho = conv_output_size(h, op.kernel[0], op.strides[0], op.pads[0], op.pads[2])
            wo = conv_output_size(w, op.kernel[1], op.strides[1], op.pads[1], op.pads[3])
            shapes[op.output] = (n, c, ho, wo)
        elif isinstance(op, Concat):
            first = list(shapes[op.inputs[0]])
            axis = op.axis % len(first)
            first[axis] = sum(shapes[t][axis] for t in op.inputs)
            shapes[op.output] = tuple(first)
        else:
            raise TypeError(f"tensor_shapes: no rule for {type(op).__name__}")
    return shapes


NARROW_INPUT_CHANNELS = 3  # a conv over at most this many input channels is an image stem (RGB)


# The host CPU's terms (fcos3d/compiler/kernels.py's code, PERFORMANCE.md "Latency model"), each an optional
# figure used only when the board file has it; no NPU profile has any, so their estimates do not move.
# ``dot_lanes``: int32 accumulators per dot instruction (vpdpbusd on zmm: 16). With it, a dense conv's and a
# depthwise conv's work is the MAC slots of the dot instructions the kernels issue (4 bytes x lanes each), padding
# included, instead of the real MACs. HOST_TERMS are costs per unit of a conv's other stages: the requantising
# epilogue per output element, the im2col pack per packed 32-bit word, pad_split per byte it writes, the
# padded copy a depthwise conv makes per channel inside its own kernel (kernels.padded_input: L1-resident,
# cheaper per byte than pad_split's trip through memory) per padded byte, the window depthwise kernel's fixed work
# per channel (its parallel task, the padded copy's setup and the requantising constants: what a 4x4 plane costs
# beyond its few dot instructions, 2026-12-07) per channel, the zero-point pad of an asymmetric
# input (a separate kernels.pad_nchw copy) per byte, the MAC slots of the AMX tile
# instructions of a dense conv that the compile puts on AMX tiles (intrinsics.amx_gemm_for, decided for this
# machine's target: a CPU without AMX compiles and is estimated with the VNNI GEMM), and, for a conv that kernels.py
# does not compile (a dilated depthwise conv; grouped but not depthwise), TVM's default conv2d per MAC.
HOST_TERMS = (
    "amx_macs_per_cycle",
    "conv_outputs_per_cycle",
    "pack_words_per_cycle",
    "pad_bytes_per_cycle",
    "channel_pad_bytes_per_cycle",
    "window_channels_per_cycle",
    "zero_point_pad_bytes_per_cycle",
    "default_conv_macs_per_cycle",
)
# ``context_bytes_per_cycle``: the cost per activation byte (inputs + output) of running inside the whole graph
# rather than alone (fit.fit_context: a layer timed alone finds its tensors in the caches; in the graph the
# FCOS3D models run ~20% slower than the sum of their layers). ``call_overhead_cycles``: once per inference, not per
# layer: the VM's call of ``main`` (argument checks, the output and workspace allocations), which a model of a few
# small layers feels (fit.fit_context).
# ``kernel_launch_cycles``: per kernel an op launches beyond its first (host_extra_kernels), the cost of one more call.
HOST_FIGURES = ("dot_lanes", *HOST_TERMS, "context_bytes_per_cycle", "call_overhead_cycles", "kernel_launch_cycles")
DOT_BYTES = 4  # int8 products per lane of one dot instruction (kernels.BYTES)


def _kernel_conv(op: Conv) -> str | None:
    """Which kernels.py kernel compiles a conv (compiler/passes/legalize.py): "dense" (groups 1, dilated or
    not), "depthwise" (not dilated), or None (dilated depthwise / grouped: TVM's default conv2d)."""
    if op.groups == 1:
        return "dense"
    if op.weight.shape[1] == 1 and op.groups == op.weight.shape[0] and op.dilations == (1, 1):
        return "depthwise"
    return None


def _dense_vectors(cout: int, positions: int, lanes: int) -> tuple[int, Fraction]:
    """(position vectors a dense conv's GEMM computes: padded to whole register tiles, instructions per dot
    instruction of its tile: 1 + (t_oc + t_pos + 2) / (t_oc t_pos), the weight broadcasts, activation loads and
    loop of each reduction step) -- passes/schedule.gemm_tile's cost."""
    from ..passes.schedule import gemm_tile  # imports TVM: only host profiles (with dot_lanes) get here

    t_oc, t_pos = gemm_tile(cout, positions, lanes)
    return _ceil_to(-(-positions // lanes), t_pos), 1 + Fraction(t_oc + t_pos + 2, t_oc * t_pos)


@functools.cache
def _host_target():
    from ..build import board_target  # imports TVM: only host profiles (with dot_lanes) get here

    return board_target(load_board("host"))


def _host_amx(cout: int, words: int):
    """The AMX GEMM the host compile gives a dense conv on this machine (intrinsics.amx_gemm_for of the channels
    padded to whole tiles, intrinsics.amx_channels), or None."""
    from ..intrinsics import amx_channels, amx_gemm_for

    return amx_gemm_for(_host_target(), amx_channels(cout), words)


def _host_amx_window(kernel: tuple[int, int], strides: tuple[int, int], out_hw: tuple[int, int]):
    """The AMX form the host compile gives a depthwise conv on this machine (intrinsics.amx_window_for), or None."""
    from ..intrinsics import amx_window_for

    return amx_window_for(_host_target(), kernel, strides, out_hw)


def host_counts(op, in_shape: tuple[int, ...], out_shape: tuple[int, ...], acc: Accelerator) -> dict[str, int]:
    """The units of each HOST_TERMS figure that a conv costs, and ``work`` (the dot instructions' MAC slots);
    {} for every other op and for any profile without ``dot_lanes``. PERFORMANCE.md "Latency model":
    dense: work = Cout x ceil(R/4) x V x lanes x 4 (R = Cin kh kw, V = position vectors padded to the
    register tile), pack words = ceil(R/4) x V x lanes; on AMX tiles instead amx MACs = Cout x ceil(R/4) x 4 x
    P' (P' the positions padded to whole position tiles), pack words = ceil(R/4) x P', work 0;
    depthwise on AMX tiles (kernels.DepthwiseAmxSpec): amx MACs = C x OHp x OWp x kh x 4 words (outputs padded
    to 16 x 16 tiles), channel pad bytes = its padded planes, work 0; pad bytes = the padded input (none when
    im2col reads the input: no pads, stride_w 1);
    depthwise: work = C x Ho x ceil(Wo/lanes) x kh x phases x words x lanes x 4 (phases = min(stride, kw),
    words = ceil(ceil(kw/stride)/4); one phase of ceil(kw/4) words where that is fewer: DepthwiseSpec.consecutive),
    channel pad bytes = the padded planes (made inside the kernel, unsplit at
    every stride: the window instruction reads the column phases in place), window channels = N x C; outputs =
    N x Cout x Ho x Wo for both; zero-point pad bytes = the padded input when the input zero point is not 0 and
    the conv pads; a conv of TVM's default conv2d: its real MACs (and ``work`` 0: no dot instructions)."""
    if not isinstance(op, Conv) or "dot_lanes" not in acc.figures:
        return {}
    lanes = int(acc["dot_lanes"])
    n, cout, ho, wo = out_shape
    _, cin, h, w = in_shape
    cin_g, kh, kw = op.weight.shape[1:]
    sw, (top, left, bottom, right) = op.strides[1], op.pads
    counts = {"conv_outputs_per_cycle": n * cout * ho * wo}
    if op.input_zero_point and any(op.pads):
        counts["zero_point_pad_bytes_per_cycle"] = n * cin * (h + top + bottom) * (w + left + right)
    kernel = _kernel_conv(op)
    if kernel == "dense":
        from ..intrinsics import amx_channels

        words = -(-cin * kh * kw // DOT_BYTES)
        amx = _host_amx(cout, words)
        if amx is not None:  # tiles of 16 channels x 16 positions, both padded to whole tiles (legalize.py)
            positions = _ceil_to(ho * wo, 16 * amx.no)
            counts["work"] = 0
            counts["amx_macs_per_cycle"] = n * amx_channels(cout) * words * DOT_BYTES * positions
            counts["pack_words_per_cycle"] = n * words * positions
        else:
            vectors, per_dot = _dense_vectors(cout, ho * wo, lanes)
            # the MAC slots of the dot instructions, weighted by the instructions issued per dot instruction
            counts["work"] = math.ceil(n * cout * words * vectors * lanes * DOT_BYTES * per_dot)
            counts["pack_words_per_cycle"] = n * words * vectors * lanes
        # pad_split unless im2col reads the input itself (kernels.DenseConvSpec.reads_input: no pads left after
        # the zero-point pad, one column phase)
        if (any(op.pads) and not op.input_zero_point) or sw != 1:
            counts["pad_bytes_per_cycle"] = n * cin * (h + top + bottom) * sw * -(-(w + left + right) // sw)
    elif kernel == "depthwise" and _host_amx_window((kh, kw), op.strides, (ho, wo)) is not None:
        from ..kernels import DepthwiseAmxSpec  # a Toeplitz GEMM per channel on AMX tiles

        spec = DepthwiseAmxSpec((kh, kw), (h, w), op.pads, (ho, wo), 128)
        ohp, owp = spec.out_hw_padded
        counts["work"] = 0
        counts["amx_macs_per_cycle"] = n * cout * ohp * owp * kh * spec.words * DOT_BYTES
        counts["channel_pad_bytes_per_cycle"] = n * cin * (h + top + spec.bottom_pad) * (w + left + spec.right_pad)
    elif kernel == "depthwise":
        from ..kernels import DepthwiseSpec  # the kernel's own geometry (imports TVM: host profiles only)

        spec = DepthwiseSpec((kh, kw), op.strides, w, op.pads, (ho, wo), 0, lanes, flat=True)
        counts["work"] = n * cout * ho * spec.out_w_padded * kh * spec.phases * spec.words * DOT_BYTES
        counts["channel_pad_bytes_per_cycle"] = n * cin * (h + top + bottom) * (w + left + spec.right_pad)
        counts["window_channels_per_cycle"] = n * cout
    else:
        counts["work"] = 0
        counts["default_conv_macs_per_cycle"] = n * cout * ho * wo * cin_g * kh * kw
    return counts


def host_packed_convs(graph: IntGraph, shapes: dict, acc: Accelerator) -> frozenset[str]:
    """The pointwise convs whose words the depthwise conv before them packs in its epilogue on the host
    (compiler/passes/legalize.py's depthwise_fed and producer_packed, the same rule on the integer graph): no
    im2col, no pack words of their own. Empty for a profile without ``dot_lanes``."""
    if "dot_lanes" not in acc.figures:
        return frozenset()
    from ..kernels import PACK_BLOCK, packs_words
    from ..passes.schedule import position_block

    consumers: dict[str, int] = {}
    for op in graph.ops:
        for t in dict.fromkeys(op.inputs):
            consumers[t] = consumers.get(t, 0) + 1
    for out in graph.outputs:
        consumers[out.tensor] = consumers.get(out.tensor, 0) + 1
    producer = {op.output: op for op in graph.ops}
    packed = set()
    for op in graph.ops:
        if not isinstance(op, Conv) or _kernel_conv(op) != "dense":
            continue
        dw = producer.get(op.input)
        if not isinstance(dw, Conv) or _kernel_conv(dw) != "depthwise" or dw.int32_output:
            continue
        if consumers.get(op.input, 0) != 1:
            continue
        _, _, ho, wo = shapes[op.output]
        dw_out = shapes[dw.output]
        if _host_amx_window(tuple(dw.weight.shape[2:]), dw.strides, tuple(dw_out[2:])) is not None:
            continue
        cout, cin, lanes = int(op.weight.shape[0]), int(op.weight.shape[1]), int(acc["dot_lanes"])
        amx = _host_amx(cout, -(-cin // DOT_BYTES))
        if amx is None and lanes != PACK_BLOCK:  # neither AMX nor the 16-lane VNNI GEMM
            continue
        block = position_block(cout, ho * wo, lanes, amx)  # on AMX: whole position tiles, whatever the channels
        if packs_words(cin, op.weight.shape[2:], op.strides, op.pads, (ho, wo), block):
            packed.add(op.name)
    return frozenset(packed)


def host_extra_kernels(op, acc: Accelerator) -> int:
    """Kernels the host compile launches for ``op`` beyond its first (compiler/passes/import_int_graph.py and
    legalize.py), 0 for a profile without ``dot_lanes``: a conv's zero-point pad (kernels.pad_nchw, an asymmetric
    input that the conv pads), a dense conv's im2col and its pad_split (padded or strided, unless the zero-point
    pad made it), an undilated max pool's pad_split (a depthwise conv pads inside its kernel)."""
    if "dot_lanes" not in acc.figures:
        return 0
    if isinstance(op, MaxPool):
        return int(op.dilations == (1, 1))
    if not isinstance(op, Conv):
        return 0
    zero_point_pad = bool(op.input_zero_point and any(op.pads))
    kernel = _kernel_conv(op)
    if kernel == "dense":
        pad_split = (any(op.pads) and not op.input_zero_point) or op.strides[1] != 1
        return int(zero_point_pad) + 1 + int(pad_split)
    return int(zero_point_pad)


def _conv_work(op: Conv, out_shape: tuple[int, ...], acc: Accelerator) -> tuple[str, int, int]:
    """(kind, real MACs, padded array work) of a conv; PERFORMANCE.md "Latency model", compute."""
    n, cout, ho, wo = out_shape
    cin_g, kh, kw = op.weight.shape[1:]
    g = op.groups
    spatial = n * _ceil_to(ho, int(acc["block_h"])) * _ceil_to(wo, int(acc["block_w"]))
    macs = n * ho * wo * cout * cin_g * kh * kw
    if g > 1 and cin_g == 1:
        # Depthwise: each output channel reads one input channel, so the array's input depth (block_ic lanes)
        # holds one useful channel: the channels go on the output axis and block_ic - 1 lanes idle.
        kind = "DepthwiseConv"
        work = spatial * _ceil_to(cout, int(acc["block_oc"])) * int(acc["block_ic"]) * kh * kw
    else:
        kind = "Conv" if g == 1 else "GroupConv"
        work = spatial * g * _ceil_to(cout // g, int(acc["block_oc"])) * _ceil_to(cin_g, int(acc["block_ic"])) * kh * kw
        if g == 1 and cin_g <= NARROW_INPUT_CHANNELS and "narrow_input_outputs_per_cycle" in acc.figures:
            # An NPU conv over a few input channels (an image stem): Vela's cycles for it exceed the padded
            # array's by a cost per output element (U65: about 1 cycle per output element beyond the array work on
            # the 384x256, 32x32 and 16x16 RGB stems of FCOS3D, yolo_neck, mobilenet_v2). ``work`` is in units of
            # macs_per_cycle, so that cost is added as output elements x macs_per_cycle / the figure.
            outputs = n * ho * wo * cout
            work += math.ceil(
                Fraction(outputs) * Fraction(acc["macs_per_cycle"]) / Fraction(acc["narrow_input_outputs_per_cycle"])
            )
    if op.int32_output:
        kind = "HeadConv"
    return kind, macs, work


def _elementwise_work(op, out_shape: tuple[int, ...], acc: Accelerator, per_output: int = 1) -> int:
    """Output-stage elements, padded to the block geometry, times ``per_output`` inputs read per output (a
    max pool compares kh x kw, an average pool adds its window). A tensor of rank != 4 counts as (N, 1, 1, rest)."""
    if len(out_shape) == 4:
        n, c, h, w = out_shape
    else:
        n, c, h, w = out_shape[0], 1, 1, math.prod(out_shape[1:])
    if isinstance(op, MaxPool):
        per_output = op.kernel[0] * op.kernel[1]
    return (
        n
        * _ceil_to(h, int(acc["block_h"]))
        * _ceil_to(w, int(acc["block_w"]))
        * _ceil_to(c, int(acc["block_oc"]))
        * per_output
    )


_KIND = {
    Add: "Add",
    ResizeNearest: "Resize",
    MaxPool: "MaxPool",
    Concat: "Concat",
    Clip: "Clip",
    AveragePool: "AveragePool",
    Reshape: "Reshape",
    Transpose: "Transpose",
    Lut: "Lut",
    Mul: "Mul",
    Softmax: "Softmax",
    ConvTranspose: "ConvTranspose",
    ResizeLinear: "ResizeLinear",
    LutAveragePool: "AveragePool",
}
# Optional per-kind throughput figures (fcos3d.boards.OPTIONAL_FIGURES) that replace the general one.
KIND_FIGURE = {
    "DepthwiseConv": "depthwise_macs_per_cycle",
    "Add": "add_per_cycle",
    "Resize": "resize_per_cycle",
    "MaxPool": "maxpool_per_cycle",
    "Concat": "concat_per_cycle",
    # NPU per-kind figures (Ethos-U board files; fitted to Vela, scripts/fit_npu_boards.py): Vela lowers these
    # kinds to command-stream ops of their own (a LUT pass, an elementwise MUL, a pooling pass).
    "Lut": "lut_per_cycle",
    "Mul": "mul_per_cycle",
    "AveragePool": "avgpool_per_cycle",
    # Host per-kind figures (HOST_FIGURES' companions): kinds that TVM's default schedules compile, each at its
    # own speed. MatMul's work is MACs, the others' output elements.
    "MatMul": "matmul_macs_per_cycle",
    "ConvTranspose": "convtranspose_per_cycle",
    "ResizeLinear": "resize_linear_per_cycle",
    "Softmax": "softmax_per_cycle",
    "LutAveragePool": "lut_avgpool_per_cycle",  # work: outputs x window (host profiles only)
}
# Optional per-kind fixed cost per op replacing op_overhead_cycles (NPU board files only; a host profile has none,
# so its numbers do not move). Vela: a Reshape is a view and costs 0 cycles (``reshape_cycles`` = 0 makes the
# whole op cost that); a conv's or a fully connected layer's set-up (weight stream, command set-up) is more than
# an elementwise op's.
KIND_OVERHEAD = {
    "Conv": "conv_overhead_cycles",
    "DepthwiseConv": "conv_overhead_cycles",
    "GroupConv": "conv_overhead_cycles",
    "HeadConv": "conv_overhead_cycles",
    "MatMul": "matmul_overhead_cycles",
    "Add": "add_overhead_cycles",
    "Mul": "mul_overhead_cycles",
    "Lut": "lut_overhead_cycles",
}
# Vela costs an elementwise op (the TOSA ADD with its RESCALEs, MUL, TABLE, RESIZE) by its elements with the depth
# rounded up to a brick of channels and no rounding of height or width: a (1, 128, 1, 1) add costs 128 elements'
# cycles, not a 4 x 8 block's. With ``elementwise_block_c`` in the profile (NPU board files) these kinds count
# their work so; a profile without it pads them to the block geometry like the other ops.
UNPADDED_ELEMENTWISE = ("Add", "Mul", "Lut", "Resize")
FIXED_COST = {"Reshape": "reshape_cycles"}
# The NPU per-kind figures above are optional figures (fcos3d.boards.OPTIONAL_FIGURES); reshape_cycles is not one
# of them: Vela's is 0, and an optional figure must be > 0.


def throughput(acc: Accelerator, kind: str) -> float:
    """Work units per cycle for an op kind: its own figure when the profile has one, else macs_per_cycle
    (convs) or elementwise_per_cycle (the rest)."""
    own = KIND_FIGURE.get(kind)
    if own in acc.figures:
        return acc[own]
    return acc["macs_per_cycle"] if kind.endswith("Conv") or kind == "MatMul" else acc["elementwise_per_cycle"]


def _overhead_figure(acc: Accelerator, kind: str) -> str:
    """The overhead figure of an op kind: its own when the profile has one, else op_overhead_cycles."""
    own = KIND_OVERHEAD.get(kind)
    return own if own in acc.figures else "op_overhead_cycles"


def layer_estimates(graph: IntGraph, acc: Accelerator) -> tuple[LayerEstimate, ...]:
    """Per op: compute cycles, memory cycles, overhead; ``cycles = max(compute, memory) + overhead``."""
    shapes = tensor_shapes(graph)
    clock = acc["clock_hz"]
    packed = host_packed_convs(graph, shapes, acc)
    out = []
    for op in graph.ops:
        out_shape = shapes[op.output]
        if isinstance(op, Conv):
            kind, macs, work = _conv_work(op, out_shape, acc)
            counts = host_counts(op, shapes[op.input], out_shape, acc)  # {} unless the profile has dot_lanes
            if op.name in packed:  # its words come packed from the depthwise conv's epilogue: no im2col
                counts.pop("pack_words_per_cycle", None)
            work = counts.get("work", work)
            extra = sum(
                (Fraction(counts[f]) / Fraction(acc[f]) for f in HOST_TERMS if f in counts and f in acc.figures),
                Fraction(0),
            )
            compute = math.ceil(Fraction(work) / Fraction(throughput(acc, kind)) + extra)
            per_channel = PARAM_BYTES_INT32 if op.int32_output else PARAM_BYTES_INT8
            weight_bytes = int(op.weight.size) + per_channel * int(op.weight.shape[0])
            out_bytes = math.prod(out_shape) * (4 if op.int32_output else 1)
        elif isinstance(op, MatMul):  # one MAC per (output element, k), as a 1x1 conv over the rows
            k = op.fan_in if op.fan_in is not None else int(shapes[op.a][-1])
            kind, macs = "MatMul", math.prod(out_shape) * k
            work = (
                _ceil_to(math.prod(out_shape[:-1]), int(acc["block_h"]) * int(acc["block_w"]))
                * _ceil_to(out_shape[-1], int(acc["block_oc"]))
                * _ceil_to(k, int(acc["block_ic"]))
            )
            compute = math.ceil(Fraction(work) / Fraction(throughput(acc, kind)))
            weight_bytes = 0 if op.weight is None else int(op.weight.size) + PARAM_BYTES_INT8 * int(op.weight.shape[0])
            out_bytes = math.prod(out_shape)
        else:
            kind, macs = _KIND[type(op)], 0
            window = math.prod(op.geometry(shapes[op.input])[0]) if isinstance(op, AveragePool) else 1
            if isinstance(op, LutAveragePool) and "dot_lanes" in acc.figures:
                # host: TVM's default code looks up the table for every window element, then requantises each
                # output with its own count; a kind of its own (the NPU profiles keep Vela's pooling pass)
                kind, window = "LutAveragePool", math.prod(op.pool.geometry(shapes[op.input])[0])
            if kind in UNPADDED_ELEMENTWISE and "elementwise_block_c" in acc.figures:
                c_block = int(acc["elementwise_block_c"])
                if len(out_shape) == 4:
                    work = out_shape[0] * out_shape[2] * out_shape[3] * _ceil_to(out_shape[1], c_block)
                else:
                    work = math.prod(out_shape[:-1]) * _ceil_to(out_shape[-1], c_block)
            else:
                work = _elementwise_work(op, out_shape, acc, window)
            compute = math.ceil(Fraction(work) / Fraction(throughput(acc, kind)))
            weight_bytes = 0
            out_bytes = math.prod(out_shape)
        act_bytes = sum(math.prod(shapes[t]) for t in dict.fromkeys(op.inputs)) + out_bytes
        if "context_bytes_per_cycle" in acc.figures:  # host: a layer inside the graph, not alone (HOST_FIGURES)
            compute += math.ceil(Fraction(act_bytes) / Fraction(acc["context_bytes_per_cycle"]))
        # Activations that fit stay in SRAM; otherwise they spill and move over the DRAM port with the weights.
        # The two ports work in parallel (Vela: the max over memory areas).
        on_chip = act_bytes <= acc["sram_bytes"]
        dram_bytes = weight_bytes + (0 if on_chip else act_bytes)
        sram_bytes = act_bytes if on_chip else 0
        memory = max(
            _cycles(dram_bytes, clock, acc["dram_bytes_per_s"]), _cycles(sram_bytes, clock, acc["sram_bytes_per_s"])
        )
        overhead = math.ceil(acc[_overhead_figure(acc, kind)])
        if "kernel_launch_cycles" in acc.figures:  # host: the op's kernels beyond its first
            extra_kernels = host_extra_kernels(op, acc) - int(op.name in packed)
            overhead += math.ceil(extra_kernels * acc["kernel_launch_cycles"])
        fixed = FIXED_COST.get(kind)
        if fixed in acc.figures:  # a kind the NPU compiler removes (a view): this many cycles, nothing else
            compute, memory, overhead = 0, 0, math.ceil(acc[fixed])
        out.append(
            LayerEstimate(
                op.name,
                kind,
                out_shape,
                macs,
                work,
                weight_bytes,
                act_bytes,
                on_chip,
                compute,
                memory,
                overhead,
                max(compute, memory) + overhead,
            )
        )
    return tuple(out)


def peak_activation_bytes(graph: IntGraph) -> int:
    """Most bytes of activations alive at once: a tensor lives from its producer to its last reader
    (graph outputs to the end); int32 head outputs count 4 bytes an element."""
    shapes = tensor_shapes(graph)
    last = {t: len(graph.ops) for t in (o.tensor for o in graph.outputs)}
    for i, op in enumerate(graph.ops):
        for t in op.inputs:
            last[t] = max(last.get(t, i), i)
    size = {t: math.prod(s) for t, s in shapes.items()}
    for op in graph.ops:
        if isinstance(op, Conv) and op.int32_output:
            size[op.output] *= 4
    live = {i.tensor for i in graph.inputs}
    peak = sum(size[t] for t in live)
    for i, op in enumerate(graph.ops):
        live.add(op.output)
        peak = max(peak, sum(size[t] for t in live))
        live = {t for t in live if last.get(t, -1) > i}
    return peak


def estimate(graph: IntGraph, board: Board | str) -> Estimate:
    """The estimate of ``graph`` on ``board`` (a Board or a name; unknown names raise UnknownBoardError)."""
    board = load_board(board) if isinstance(board, str) else board
    acc = board.accelerator
    if acc is None:
        raise ValueError(
            f"board {board.name!r} has no [accelerator] profile: add one to its TOML file "
            "(fcos3d/boards/ethos-u55-256.toml is an example)"
        )
    # A board whose accelerator nothing of ours runs on says so in every report that names it (perf.json/.html,
    # fcos3d perf, the demo's summary).
    name = f"{acc.name} [estimate only: no artifact runs on it]" if board.estimate_only else acc.name
    return Estimate(
        board.name,
        name,
        acc["clock_hz"],
        acc["macs_per_cycle"],
        layer_estimates(graph, acc),
        peak_activation_bytes(graph),
        math.ceil(acc["call_overhead_cycles"]) if "call_overhead_cycles" in acc.figures else 0,
    )
