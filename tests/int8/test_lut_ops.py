"""The lookup-table ops (Sigmoid, HardSigmoid, HardSwish, Tanh, LeakyRelu, PRelu) and Mul (SiLU = Sigmoid, Mul).

Per op and variant (symmetric int8, int8 with zero points, uint8; random and power-of-two scales): the simulator
against onnxruntime (ORT_DISABLE_ALL) at most 1 LSB with every 1-LSB difference a rounding tie (ort_ops), and the
compiled TVM module against the simulator bit for bit (0 differing elements). docs/int8.md 8.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ort_ops import (  # noqa: E402
    VARIANTS,
    OpCase,
    QGraph,
    _pow2,
    _scale,
    _zero_point,
    compare_with_ort,
    ort_run,
    random_feeds,
    with_float_outputs,
)

from fcos3d.int8.ops_lut import Lut, lut_table, round_half_up_float  # noqa: E402

SHAPE = (1, 4, 6, 6)


def _unary(op, **attrs):
    def build(g, rng, s_out, z_out):
        # a wide input scale: the whole curve (saturated ends included) is met
        return g.node(op, [g.input(SHAPE, _scale(g, rng, 0.02, 0.06), _zero_point(g, rng))], **attrs)

    return build


def _prelu(per_channel: bool):
    def build(g, rng, s_out, z_out):
        x = g.input(SHAPE, _scale(g, rng), _zero_point(g, rng))
        slope = rng.uniform(-0.5, 0.9, (SHAPE[1], 1, 1) if per_channel else (1,)).astype(np.float32)
        if g.tie:
            slope = (np.round(slope * 8) / 8).astype(np.float32)
        return g.node("PRelu", [x, g.const(slope)])

    return build


def _mul(b_shape=SHAPE, relu=False):
    def build(g, rng, s_out, z_out):
        a = g.input(SHAPE, _scale(g, rng), _zero_point(g, rng))
        b = g.input(b_shape, _scale(g, rng), _zero_point(g, rng))
        y = g.node("Mul", [a, b])
        return g.node("Relu", [y]) if relu else y

    return build


def _silu():
    """x * sigmoid(x) as quantize_static leaves it: DQ(x) -> Sigmoid -> Q(1/256) -> DQ, then Mul(DQ(x), .)."""

    def build(g, rng, s_out, z_out):
        x = g.input(SHAPE, _scale(g, rng, 0.02, 0.06), _zero_point(g, rng))
        symmetric = g.dtype == "int8" and not g.asymmetric
        s_sig = np.float32(1 / 128 if symmetric else 1 / 256)
        z_sig = -128 if (g.dtype == "int8" and g.asymmetric) else 0
        zp = g.zp(z_sig)
        sig = g.node("QuantizeLinear", [g.node("Sigmoid", [x]), g.const(s_sig, "s"), zp])
        return g.node("Mul", [x, g.node("DequantizeLinear", [sig, g.const(s_sig, "s"), zp])])

    return build


def make_case(case: OpCase, variant: str, seed: int, tie: bool = False):
    """ort_ops.make_case, fitting (s_out, z_out) to the float value of the *graph output's* Q (SiLU has two Qs)."""
    dtype = "uint8" if variant == "uint8" else "int8"

    def build(s_out: float, z_out: int):
        g = QGraph(dtype, asymmetric=variant != "int8", tie=tie)
        g.q(case.build(g, np.random.default_rng(seed), s_out, z_out), s_out, z_out)
        return g.build()

    model = build(1.0, 0)
    out = model.graph.output[0].name
    y = next(n.input[0] for n in model.graph.node if n.output[0] == out)
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
    return build(float(np.float32(s_out)), z_out)


def _conv_transpose(k=3, stride=2, pad=1, out_pad=1, dilation=1, bias=True, relu=False):
    def build(g, rng, s_out, z_out):
        s_in = _scale(g, rng)
        x = g.input((1, 4, 5, 5), s_in, _zero_point(g, rng))
        w = rng.integers(-127, 128, (4, 6, k, k)).astype(np.int8)
        s_w = rng.uniform(0.002, 0.01, 6).astype(np.float32)
        if g.tie:
            s_w = _pow2(s_w).astype(np.float32)
        inputs = [x, g.weight(w, s_w, 1)]
        if bias:
            inputs.append(g.bias(rng.integers(-2000, 2000, 6), (np.float64(s_in) * s_w).astype(np.float32)))
        attrs = dict(strides=[stride] * 2, pads=[pad] * 4, output_padding=[out_pad] * 2, dilations=[dilation] * 2)
        y = g.node("ConvTranspose", inputs, **attrs)
        return g.node("Relu", [y]) if relu else y

    return build


def _resize_linear(mode: str, shape=(1, 3, 5, 7), scales=None, sizes=None):
    def build(g, rng, s_out, z_out):
        x = g.input(shape, _scale(g, rng), _zero_point(g, rng))
        args = [x, "", g.const(np.asarray(scales, np.float32)) if scales is not None else ""]
        if sizes is not None:
            args.append(g.const(np.asarray(sizes, np.int64)))
        return g.node("Resize", args, mode="linear", coordinate_transformation_mode=mode)

    return build


LUT_CASES: tuple[OpCase, ...] = (
    OpCase("sigmoid", _unary("Sigmoid")),
    OpCase("hard_sigmoid", _unary("HardSigmoid")),
    OpCase("hard_sigmoid_1_6", _unary("HardSigmoid", alpha=1.0 / 6.0, beta=0.5)),
    OpCase("hard_swish", _unary("HardSwish")),
    OpCase("tanh", _unary("Tanh")),
    OpCase("leaky_relu", _unary("LeakyRelu", alpha=0.1)),
    OpCase("prelu_per_channel", _prelu(True)),
    OpCase("prelu_scalar", _prelu(False)),
    OpCase("mul", _mul()),
    OpCase("mul_se_broadcast", _mul((1, 4, 1, 1))),
    OpCase("mul_relu", _mul(relu=True)),
    OpCase("silu", _silu()),
    OpCase("conv_transpose_k3s2p1op1", _conv_transpose()),
    OpCase("conv_transpose_k2s2_relu", _conv_transpose(k=2, pad=0, out_pad=0, relu=True)),
    OpCase("conv_transpose_k3s1_dilated_no_bias", _conv_transpose(stride=1, pad=2, out_pad=0, dilation=2, bias=False)),
)
# ORT computes bilinear source coordinates and weights in float32: a coordinate c < in is off by about
# 2**-22 * in, which moves the value by up to 255 * 2**-22 * in input steps (docs/int8.md 8.8).
RESIZE_CASES: tuple[OpCase, ...] = (
    OpCase("resize_linear_half_pixel_x2", _resize_linear("half_pixel", scales=[1, 1, 2, 2])),
    OpCase("resize_linear_half_pixel_sizes", _resize_linear("half_pixel", sizes=[1, 3, 8, 12])),
    OpCase("resize_linear_align_corners_x2", _resize_linear("align_corners", scales=[1, 1, 2, 2])),
    OpCase("resize_linear_align_corners_sizes", _resize_linear("align_corners", sizes=[1, 3, 9, 10])),
    OpCase("resize_linear_asymmetric_x2", _resize_linear("asymmetric", scales=[1, 1, 2, 2])),
    OpCase("resize_linear_asymmetric_down", _resize_linear("asymmetric", sizes=[1, 3, 3, 4])),
    OpCase("resize_linear_pytorch_half_pixel", _resize_linear("pytorch_half_pixel", sizes=[1, 3, 1, 12])),
)


def _act_pool(act, pool="AveragePool", **pool_attrs):
    """A float activation straight into an average pool (no Q between: quantize_static's PRelu / Tanh)."""

    def build(g, rng, s_out, z_out):
        x = g.input((1, 4, 7, 7), _scale(g, rng, 0.02, 0.06), _zero_point(g, rng))
        if act == "PRelu":
            y = g.node("PRelu", [x, g.const(rng.uniform(-0.5, 0.9, (4, 1, 1)).astype(np.float32))])
        else:
            y = g.node(act, [x])
        return g.node(pool, [y], **pool_attrs)

    return build


LUT_POOL_CASES: tuple[OpCase, ...] = (
    OpCase("prelu_avgpool_k3s2p1", _act_pool("PRelu", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)),
    OpCase("tanh_avgpool_k2_ceil", _act_pool("Tanh", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)),
    OpCase(
        "sigmoid_avgpool_k3_include_pad", _act_pool("Sigmoid", kernel_shape=[3, 3], pads=[1] * 4, count_include_pad=1)
    ),
)
SOFTMAX_CASES: tuple[OpCase, ...] = (
    OpCase("softmax_last_axis_6", _unary("Softmax", axis=-1)),
    OpCase(
        "softmax_tokens",
        lambda g, rng, s, z: g.node("Softmax", [g.input((1, 10, 37), _scale(g, rng, 0.02, 0.1), _zero_point(g, rng))]),
    ),
)
_TIES: dict[str, int] = {}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", LUT_CASES, ids=[c.name for c in LUT_CASES])
def test_op_matches_onnxruntime_up_to_ties(case, variant):
    for tie in (False, True):
        result = compare_with_ort(make_case(case, variant, seed=5, tie=tie), case, seed=5)
        assert result.max_diff <= 1 and result.unexplained == 0, (case.name, variant, tie, result)
        _TIES[case.name] = _TIES.get(case.name, 0) + result.ties


def _softmax_extra(x_shape, s_in, s_out):
    """The softmax recipe's stated error in LSB (docs/int8.md 8.6): the exp table's and M's roundings."""
    return ((x_shape[-1] + 1) / s_out + 255) * 2.0**-25


def _lut_pool_extra(x_shape, s_in, s_out):
    """The table's rounding: a mean moves by at most 2**-(F+1) LSB, F >= 8 (docs/int8.md 8.9)."""
    return 2.0**-9


def _resize_extra(x_shape, s_in, s_out):
    """ORT's float32 coordinates and weights: up to ``255 * 2**-22 * max(H, W)`` input steps (docs/int8.md 8.8)."""
    return 255 * 2.0**-22 * max(x_shape[2:]) * s_in / s_out


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "case, extra",
    [(c, _softmax_extra) for c in SOFTMAX_CASES]
    + [(c, _resize_extra) for c in RESIZE_CASES]
    + [(c, _lut_pool_extra) for c in LUT_POOL_CASES],
    ids=[c.name for c in SOFTMAX_CASES + RESIZE_CASES + LUT_POOL_CASES],
)
def test_widened_ops_match_onnxruntime_up_to_ties(case, extra, variant):
    """As above, with a tie's neighbourhood widened by the op's stated error (``extra``, in output LSB)."""
    for tie in (False, True):
        r = _compare(make_case(case, variant, seed=5, tie=tie), 5, extra)
        assert r["max_diff"] <= 1 and r["unexplained"] == 0, (case.name, variant, tie, r)
        _TIES[case.name] = _TIES.get(case.name, 0) + r["ties"]


def _compare(model, seed: int, extra_of) -> dict:
    from ort_ops import TIE_RTOL, _float_outputs, _io_scales, as_int8

    from fcos3d.runtime.reference.simulator import Simulator

    sim = Simulator(model)
    (s_in, *_), s_out = _io_scales(model)
    out = sim.output_names[0]
    y = _float_outputs(model)[out]
    result = {"max_diff": 0, "ties": 0, "unexplained": 0}
    for r in range(3):
        feeds = random_feeds(model, seed + 17 * r)
        ref = ort_run(with_float_outputs(model), feeds)
        extra = extra_of(next(iter(feeds.values())).shape, s_in, s_out)
        diff = np.abs(as_int8(ref[out]).astype(np.int32) - sim.run(feeds)[out].astype(np.int32))
        v = ref[y].astype(np.float64) / s_out
        near = np.abs(v - np.floor(v) - 0.5) <= TIE_RTOL * np.maximum(1.0, np.abs(v)) + extra
        result["max_diff"] = max(result["max_diff"], int(diff.max(initial=0)))
        result["ties"] += int(((diff == 1) & near).sum())
        result["unexplained"] += int(((diff > 1) | ((diff == 1) & ~near)).sum())
    return result


def test_ties_were_met():
    """Power-of-two scales (and slopes in eighths) make exact ties for PRelu and Mul (ours up, ORT to even)."""
    if not _TIES:
        pytest.skip("runs after test_op_matches_onnxruntime_up_to_ties")
    for name in ("prelu_scalar", "prelu_per_channel", "mul", "silu"):
        assert _TIES.get(name, 0) > 0, (name, _TIES)


def test_compiled_module_equals_the_simulator_bit_for_bit():
    """Every case x variant x scale kind in one TVM module: 0 differing elements on random and extreme inputs."""
    import tvm
    from tvm import relax

    from fcos3d.boards import load_board
    from fcos3d.compiler.build import board_target, build_executable
    from fcos3d.compiler.pipeline import run_pipeline
    from fcos3d.runtime.reference.simulator import Simulator

    sims, feeds = {}, {}
    for case in LUT_CASES + SOFTMAX_CASES + RESIZE_CASES + LUT_POOL_CASES:
        for variant in VARIANTS:
            for tie in (False, True):
                model = make_case(case, variant, seed=5, tie=tie)
                name = f"{case.name}_{variant}_{int(tie)}"
                sims[name] = Simulator(model)
                rnd = random_feeds(model, seed=9)
                extremes = [
                    {k: np.full_like(v, getattr(np.iinfo(v.dtype), e)) for k, v in rnd.items()} for e in ("min", "max")
                ]
                feeds[name] = [rnd, *extremes]
    target = board_target(load_board("host"))
    graphs = {name: sim.graph for name, sim in sims.items()}
    vm = relax.VirtualMachine(build_executable(run_pipeline(graphs, target).mod, target), tvm.cpu())
    differing = {}
    for name, sim in sims.items():
        for feed in feeds[name]:
            want = sim.run(feed)
            ints = sim._bind_inputs(feed)
            args = [tvm.runtime.tensor(np.ascontiguousarray(ints[i.tensor])) for i in sim.graph.inputs]
            got = vm[name](*args)
            for k, out in enumerate(sim.graph.outputs):
                differing[name] = differing.get(name, 0) + int(np.count_nonzero(got[k].numpy() != want[out.name]))
    assert sum(differing.values()) == 0, {k: v for k, v in differing.items() if v}


def test_table_rounds_half_up_exactly():
    assert round_half_up_float(np.array([0.5, -0.5, 1.5, -1.5, 0.49999999999999994, 2.0])).tolist() == [
        1,
        0,
        2,
        -1,
        0,
        2,
    ]
    t = lut_table(lambda v: v, 1.0, 0, 2.0, 0)  # y = round_half_up(q / 2)
    q = np.arange(-128, 128)
    assert np.array_equal(t, np.floor(q / 2 + 0.5).astype(np.int8))


def test_lut_checks_its_table():
    with pytest.raises(ValueError, match="table must be int8"):
        Lut("l", "x", "y", np.zeros(255, np.int8))
    per_channel = Lut("l", "x", "y", np.zeros((3, 256), np.int8))
    with pytest.raises(ValueError, match="3 channel tables"):
        per_channel.output_shape((1, 4, 2, 2))


@pytest.mark.parametrize("mode", ["half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel"])
def test_linear_weights_are_the_exact_clamped_source_coordinates(mode):
    from fractions import Fraction

    from fcos3d.int8.ops_resize_linear import _source, linear_axis_weights

    for n, m in [(5, 9), (7, 10), (4, 8), (6, 3), (1, 4), (3, 1)]:
        scale = Fraction(m, n)
        i0, i1, w0, w1, den = linear_axis_weights(n, m, scale, mode)
        assert np.all((w0 >= 0) & (w1 >= 0) & (w0 + w1 == den)) and np.all((i0 >= 0) & (i1 <= n - 1))
        for o in range(m):
            c = min(max(_source(o, n, m, scale, mode), Fraction(0)), Fraction(n - 1))
            assert Fraction(int(w0[o] * i0[o] + w1[o] * i1[o]), den) == c, (n, m, o)


def test_refusals_name_the_reason():
    from fcos3d.int8.patterns import UnsupportedGraphError
    from fcos3d.int8.reader import parse_qdq

    def model(op, **attrs):
        def build(g, rng, s_out, z_out):
            x = g.input((1, 4, 5, 5), 0.05, 0)
            if op == "ConvTranspose":
                w = g.weight(np.ones((4, 2, 3, 3), np.int8), np.full(2, 0.01, np.float32), 1)
                return g.node(op, [x, w], **attrs)
            return g.node(op, [x], **attrs)

        return make_case(OpCase(op, build), "int8", seed=1)

    for m, why in ((model("ConvTranspose", group=2), "group"), (model("Softmax", axis=1), None)):
        if why is None:  # axis 1 of a rank-4 input: parsed, refused by the shape rule
            with pytest.raises(ValueError, match="not the last axis"):
                parse_qdq(m).ops[0].output_shape((1, 4, 5, 5))
            continue
        with pytest.raises(UnsupportedGraphError, match=why):
            parse_qdq(m)
