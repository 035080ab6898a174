"""Each op form the TOSA emitter writes, run on the TOSA reference model, equals the simulator bit for bit.

Symmetric one-op graphs (tests/runtime/qdq_graphs.py) cover the forms (strides and odd sizes that need TOSA's
exact padding, depthwise with multiplier 1 and 2, grouped convs, int32 heads, the add rule, nearest resizes of
every index mode, ceil-free max pools, concats with and without rescales); quantize_static's asymmetric uint8
graphs (tests/int8/zoo.py) cover zero points, Clip, the SiLU table and Mul.
"""

from __future__ import annotations

import numpy as np
import pytest
from qdq_graphs import QDQGraphBuilder
from tosa_cases import emit_and_load, mismatches, requires_tosa

from fcos3d.runtime.reference.simulator import Simulator

pytestmark = requires_tosa


def _inputs(shape, seed=0):
    rng = np.random.default_rng(seed)
    return [
        rng.integers(-128, 128, size=shape, dtype=np.int8),
        np.full(shape, 127, np.int8),
        np.full(shape, -128, np.int8),
    ]


def _conv(b, x, **kw):
    b.output(b.conv(x, **kw))


def _head(b, x, **kw):
    b.conv(x, **kw, int32_output=True)


def _add(b, x, relu=False, ratio=3.0):
    ya = b.conv(x, 4, kernel=1, pad=0)
    yb = b.conv(x, 4, kernel=1, pad=0, out_scale=ya.scale * ratio)
    b.output(b.add(ya, yb, relu=relu))


def _broadcast_add(b, x):
    ya = b.conv(x, 4, kernel=1, pad=0)
    yb = b.conv(b.maxpool(x, kernel=x.shape[2], stride=1, pad=0), 4, kernel=1, pad=0)  # (N, 4, 1, 1)
    b.output(b.add(ya, yb))


def _resize(b, x, **kw):
    b.output(b.resize(x, **kw))


def _maxpool(b, x, **kw):
    b.output(b.maxpool(x, **kw))


def _concat(b, x, axis=1, shared=False):
    ya = b.conv(x, 3, kernel=1, pad=0)
    yb = b.conv(x, 3 if axis != 1 else 2, kernel=3, out_scale=ya.scale if shared else None)
    b.output(b.concat([ya, yb], axis=axis, out_scale=None if shared else ya.scale * 1.7))


# (id, input shape, builder, kwargs)
CASES = [
    ("conv3x3_s1", (1, 3, 7, 9), _conv, dict(out_channels=5, kernel=3, stride=1, relu=True)),
    ("conv3x3_s2_odd", (1, 3, 9, 7), _conv, dict(out_channels=4, kernel=3, stride=2)),
    ("conv5x5_s2_pad1", (2, 2, 8, 11), _conv, dict(out_channels=3, kernel=5, stride=2, pad=1, relu=True)),
    ("conv3x3_s2_pad0_crop", (1, 3, 8, 8), _conv, dict(out_channels=2, kernel=3, stride=2, pad=0)),
    ("pointwise_nobias", (1, 6, 5, 5), _conv, dict(out_channels=7, kernel=1, pad=0, bias=False)),
    ("depthwise", (1, 6, 9, 9), _conv, dict(out_channels=6, kernel=3, stride=2, groups=6, relu=True)),
    ("depthwise_x2", (1, 3, 6, 6), _conv, dict(out_channels=6, kernel=3, groups=3)),
    ("grouped", (1, 6, 6, 5), _conv, dict(out_channels=4, kernel=3, groups=2)),
    ("head_int32", (1, 4, 6, 6), _head, dict(out_channels=5, kernel=1, pad=0)),
    ("head_int32_3x3", (1, 4, 6, 6), _head, dict(out_channels=3, kernel=3)),
    ("add", (1, 3, 6, 7), _add, dict()),
    ("add_relu", (1, 3, 6, 7), _add, dict(relu=True, ratio=0.3)),
    ("add_broadcast", (1, 3, 5, 5), _broadcast_add, dict()),
    ("resize_x2", (1, 3, 3, 5), _resize, dict(factor=2)),
    ("resize_x3", (1, 2, 3, 4), _resize, dict(factor=3)),
    ("resize_to_odd", (1, 2, 3, 4), _resize, dict(sizes=(5, 7))),
    ("resize_down", (1, 2, 7, 8), _resize, dict(sizes=(3, 5))),
    (
        "resize_half_pixel",
        (1, 2, 4, 5),
        _resize,
        dict(sizes=(9, 7), coordinate_mode="half_pixel", nearest_mode="round_prefer_floor"),
    ),
    (
        "resize_align_corners",
        (1, 2, 4, 5),
        _resize,
        dict(sizes=(7, 9), coordinate_mode="align_corners", nearest_mode="round_prefer_ceil"),
    ),
    (
        "resize_tf_half_pixel_floor",
        (1, 2, 4, 5),
        _resize,
        dict(sizes=(9, 11), coordinate_mode="tf_half_pixel_for_nn", nearest_mode="floor"),
    ),
    ("resize_passthrough", (1, 2, 3, 3), _resize, dict(factor=2, passthrough=True)),
    ("maxpool_k3s2p1", (1, 3, 9, 8), _maxpool, dict(kernel=3, stride=2, pad=1)),
    ("maxpool_k2s2", (1, 3, 7, 7), _maxpool, dict(kernel=2, stride=2, pad=0)),
    ("maxpool_k3s1p1", (1, 3, 5, 6), _maxpool, dict(kernel=3, stride=1, pad=1)),
    ("concat_channels", (1, 3, 5, 5), _concat, dict(axis=1)),
    ("concat_channels_shared", (1, 3, 5, 5), _concat, dict(axis=1, shared=True)),
    ("concat_height", (1, 3, 4, 5), _concat, dict(axis=2)),
    ("concat_width", (1, 3, 4, 5), _concat, dict(axis=-1)),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_form_equals_simulator(case, tmp_path):
    name, shape, build, kw = case
    for tie in (False, True):  # power-of-two scales: many exact ties in every requantisation
        b = QDQGraphBuilder(seed=len(name), tie=tie)
        build(b, b.input(shape, float_input=kw.get("passthrough", False)), **kw)  # an int8 op needs Q's scale
        sim = Simulator(b.build())
        ref = emit_and_load(sim.graph, tmp_path, f"{name}_{tie}")
        bad, total, lines = mismatches(sim, ref, _inputs(shape))
        assert total > 0 and bad == 0, f"{name} tie={tie}: " + "; ".join(lines)


def _zoo_quantized(tmp_path, make, q, name):
    from zoo import quantize

    return Simulator(quantize(make(), q, tmp_path, name))


def _asym_net():
    """Conv + Clip (ReLU6) + PRelu, depthwise + HardSwish, SiLU (Sigmoid table, Mul), add, max pool, x2 resize,
    concat."""
    from zoo import FloatNet

    g = FloatNet("asym", (1, 3, 16, 12), seed=3)
    x = g.prelu(g.clip(g.conv("input", 3, 8, stride=2)), 8)  # PRelu per channel: a table per channel
    y = g.hardswish(g.conv(x, 8, 8, group=8))
    y = g.silu(g.conv(y, 8, 8, k=1))
    z = g.add(x, y)
    p = g.maxpool(z, k=2, stride=2)
    up = g.resize_scales(g.conv(p, 8, 8, k=1), 2.0, "nearest", "asymmetric", "floor")
    return g.build([g.conv(g.concat([up, z]), 16, 6, k=1)])


@pytest.mark.parametrize("quant", ["u8s8_defaults", "s8s8_sym"])
def test_zero_points_clip_tables_and_mul_equal_simulator(quant, tmp_path):
    """quantize_static graphs: uint8 activations with zero points (its defaults) and the symmetric int8 form."""
    from zoo import DEFAULTS, SYMMETRIC

    q = DEFAULTS if quant == "u8s8_defaults" else SYMMETRIC
    sim = _zoo_quantized(tmp_path, _asym_net, q, f"asym_{quant}")
    kinds = {type(op).__name__ for op in sim.graph.ops}
    assert {"Conv", "Add", "Lut", "Mul", "MaxPool", "ResizeNearest", "Concat"} <= kinds, kinds
    if quant == "u8s8_defaults":
        assert any(sim.graph.tensor_zero_points.values()), "expected non-zero zero points"
    ref = emit_and_load(sim.graph, tmp_path, f"asym_{quant}")
    bad, total, lines = mismatches(sim, ref, _inputs((1, 3, 16, 12), seed=4))
    assert total > 0 and bad == 0, "; ".join(lines)


def test_yolo_neck_uint8_equals_simulator(tmp_path):
    """The zoo's YOLO neck (SiLU everywhere, SPPF 5x5 max pools, concats, x2 resize), quantize_static defaults."""
    from zoo import DEFAULTS, yolo_neck

    sim = _zoo_quantized(tmp_path, yolo_neck, DEFAULTS, "yolo_neck")
    ref = emit_and_load(sim.graph, tmp_path, "yolo_neck")
    bad, total, lines = mismatches(sim, ref, _inputs((1, 3, 64, 64), seed=5)[:1])
    assert total > 0 and bad == 0, "; ".join(lines)


def test_resize_outside_tosa_limits_is_one_error_naming_the_op():
    """4 -> 6 with tf_half_pixel_for_nn + ceil needs a RESIZE border of 13 at scale 12/8; TOSA admits < 12."""
    from fcos3d.compiler.tosa.emit import emit_tosa
    from fcos3d.compiler.tosa.rescale import TosaEmitError

    b = QDQGraphBuilder(seed=1)
    b.output(b.resize(b.input((1, 2, 4, 4)), sizes=(6, 6), coordinate_mode="tf_half_pixel_for_nn", nearest_mode="ceil"))
    sim = Simulator(b.build())
    with pytest.raises(TosaEmitError) as e:
        emit_tosa(sim.graph)
    msg = str(e.value)
    assert "\n" not in msg and sim.graph.ops[0].name in msg and "border" in msg, msg


def _pools_net():
    """Average pools: padded with count_include_pad 0 (a count per border position), a global pool feeding a
    Gemm (the classifier tail), a MatMul of two activations, a dilated conv and a ceil-mode max pool."""
    from zoo import FloatNet

    g = FloatNet("pools", (1, 3, 11, 9), seed=8)
    x = g.relu(g.conv("input", 3, 8))
    a = g.avgpool(x, k=3, stride=2, pad=1, count_include_pad=0)
    b = g.avgpool(g.conv(x, 8, 8, k=1), k=2, stride=2)
    t = g.matmul(g.reshape(a, [1, 8, 30]), g.transpose(g.reshape(a, [1, 8, 30]), [0, 2, 1]))
    ceil = g.maxpool(g.conv(a, 8, 4, dilation=2), k=3, stride=2, ceil=1)  # 6x5 -> 3x2: a clipped last row window
    return g.build([g.gemm(g.flatten(g.gap(b)), 8, 5), g.conv(a, 8, 4, k=1), t, g.conv(ceil, 4, 3, k=1)])


@pytest.mark.parametrize("quant", ["u8s8_defaults", "s8s8_sym"])
def test_average_pools_gemm_and_matmul_equal_simulator(quant, tmp_path):
    from zoo import DEFAULTS, SYMMETRIC

    sim = _zoo_quantized(tmp_path, _pools_net, DEFAULTS if quant == "u8s8_defaults" else SYMMETRIC, f"pools_{quant}")
    kinds = {type(op).__name__ for op in sim.graph.ops}
    assert {"AveragePool", "MatMul", "Reshape", "Transpose"} <= kinds, kinds
    ref = emit_and_load(sim.graph, tmp_path, f"pools_{quant}")
    bad, total, lines = mismatches(sim, ref, _inputs((1, 3, 11, 9), seed=6))
    assert total > 0 and bad == 0, "; ".join(lines)


@pytest.mark.parametrize("model", ["resnet18", "mobilenet_v2"])
def test_zoo_classifiers_equal_simulator(model, tmp_path):
    """quantize_static's ResNet-18 (uint8 defaults) and MobileNetV2 (symmetric): GAP, Flatten, Gemm."""
    import zoo

    q = zoo.DEFAULTS if model == "resnet18" else zoo.SYMMETRIC
    sim = _zoo_quantized(tmp_path, getattr(zoo, model), q, model)
    ref = emit_and_load(sim.graph, tmp_path, model)
    bad, total, lines = mismatches(sim, ref, _inputs((1, 3, 32, 32), seed=7))
    assert total > 0 and bad == 0, "; ".join(lines)
