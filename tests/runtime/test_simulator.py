"""Tests of fcos3d/runtime/reference/simulator.py: the integer simulator against onnxruntime, and its API.

Tolerance ladder (docs/int8.md section 5; the kernels are checked exactly in test_kernels.py). vs onnxruntime
(ORT_DISABLE_ALL): int8 outputs at most 1 LSB apart and every difference at a rounding tie of the exact
value (ORT rounds a float32 value half to even, we round the exact one half up), >= 99.9% equal on a
graph with thousands of outputs; copies (resize, max pool, same-scale concat) exactly equal; int32 head
outputs times their scale within the float32 error bound of ORT's float conv.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from onnx import TensorProto, helper
from qdq_graphs import QDQGraphBuilder, ort_run, single_op_graphs, small_graphs

from fcos3d.int8.ops import Add, Concat, Conv, ResizeNearest
from fcos3d.runtime.reference import kernels
from fcos3d.runtime.reference.simulator import Simulator, run_op

# ---------------------------------------------------------------- against onnxruntime


def _abs_conv(op: Conv, x: np.ndarray) -> np.ndarray:
    """sum |x| * |w| per output (float64): the scale of ORT's float32 accumulation error."""
    o, cg, kh, kw = op.weight.shape
    cols, (ho, wo) = kernels.im2col(np.abs(x.astype(np.float64)), (kh, kw), op.strides, op.pads)
    cols = cols.reshape(x.shape[0], op.groups, cg * kh * kw, ho * wo)
    wm = np.abs(op.weight.astype(np.float64)).reshape(op.groups, o // op.groups, -1)
    return np.matmul(wm, cols).reshape(x.shape[0], o, ho, wo)


def _ideal(op, ins: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """(exact real result in output LSB, its float error tolerance) for a rounding op; None for copies."""
    if isinstance(op, Conv):
        x = ins[0]
        acc = kernels.conv2d_int8(x, op.weight, op.bias, op.strides, op.pads, op.groups).astype(np.float64)
        scale = (op.accumulator_scale / op.output_scale).reshape(1, -1, 1, 1)
        v = acc * scale
        k = op.weight[0].size
        tol = 2.0**-22 * (k + 4) * (_abs_conv(op, x) + np.abs(op.bias).reshape(1, -1, 1, 1)) * scale
        return (np.maximum(v, 0) if op.relu else v), tol + 1e-9
    if isinstance(op, Add):
        a, b = (t.astype(np.float64) for t in ins)
        v = (a * op.scale_a + b * op.scale_b) / op.output_scale
        tol = 2.0**-18 * max(op.scale_a, op.scale_b) / op.output_scale + 2.0**-20 * np.abs(v)
        return (np.maximum(v, 0) if op.relu else v), tol
    if isinstance(op, Concat) and any(r is not None for r in op.rescales):
        v = np.concatenate([t * (s / op.output_scale) for t, s in zip(ins, op.input_scales)], axis=op.axis)
        return v, 2.0**-20 * np.abs(v) + 1e-9
    return None


def _resize_ambiguous(op: ResizeNearest, x_shape, y_shape) -> tuple[np.ndarray, np.ndarray]:
    """Per output row / column: is the exact source coordinate on a rounding boundary while ORT's float32
    scale is not exact? There ORT's float formula may pick the neighbour; the rational spec is ours."""
    masks = []
    for axis, (n_in, n_out) in enumerate(zip(x_shape[2:], y_shape[2:])):
        if op.sizes is not None:
            scale = Fraction(n_out, n_in)
        else:
            scale = op.scales[axis]
        inexact = Fraction(float(np.float32(float(scale)))) != scale or op.coordinate_mode == "align_corners"
        mask = np.zeros(n_out, bool)
        if inexact:
            for d in range(n_out):
                half = Fraction(1, 2)
                x = {
                    "asymmetric": d / scale,
                    "half_pixel": (d + half) / scale - half,
                    "pytorch_half_pixel": (d + half) / scale - half if n_out > 1 else Fraction(0),
                    "tf_half_pixel_for_nn": (d + half) / scale,
                    "align_corners": Fraction(d * (n_in - 1), n_out - 1) if n_out > 1 else Fraction(0),
                }[op.coordinate_mode]
                boundary = x.denominator == 1 if op.nearest_mode in ("floor", "ceil") else x.denominator == 2
                mask[d] = boundary
        masks.append(mask)
    return masks[0], masks[1]


def check_op_against_ort(op, ins: list[np.ndarray], ours: np.ndarray, ort_value: np.ndarray) -> int:
    """Assert the simulator's result of one op against onnxruntime's; returns the number of differences."""
    if isinstance(op, Conv) and op.int32_output:
        x = ins[0]
        ref = ours.astype(np.float64) * op.accumulator_scale.reshape(1, -1, 1, 1)
        k = op.weight[0].size
        s = op.accumulator_scale.reshape(1, -1, 1, 1)
        tol = 2.0**-22 * (k + 4) * (_abs_conv(op, x) + np.abs(op.bias).reshape(1, -1, 1, 1)) * s + 1e-12
        assert ours.dtype == np.int32
        assert np.all(np.abs(ort_value.astype(np.float64) - ref) <= tol), np.abs(ort_value - ref).max()
        return 0
    assert ours.dtype == np.int8 and ort_value.dtype == np.int8 and ours.shape == ort_value.shape
    diff = ours.astype(np.int32) - ort_value.astype(np.int32)
    assert np.abs(diff).max(initial=0) <= 1
    mismatch = diff != 0
    if isinstance(op, ResizeNearest):
        rows, cols = _resize_ambiguous(op, ins[0].shape, ours.shape)
        ok = ~(rows[:, None] | cols[None, :])
        assert not np.any(mismatch[..., ok]), "resize differs from onnxruntime away from float ambiguities"
        return int(mismatch.sum())
    ideal = _ideal(op, ins)
    if ideal is None:
        assert not np.any(mismatch), f"{type(op).__name__} must copy int8 values exactly"
        return 0
    v, tol = ideal
    near_tie = np.abs(v - np.floor(v) - 0.5) <= tol
    assert np.all(near_tie[mismatch]), "a difference from onnxruntime away from a rounding tie"
    # At exact ties inside the int8 range the simulator rounds half up (docs/int8.md section 2).
    exact_tie = (v - np.floor(v) == 0.5) & (v > -128) & (v < 127)
    assert np.array_equal(ours[exact_tie], (np.floor(v[exact_tie]) + 1).astype(np.int8))
    return int(mismatch.sum())


def _with_all_int8_outputs(model: onnx.ModelProto, sim: Simulator) -> onnx.ModelProto:
    """The same graph, with every int8 tensor an output too (so ORT shows each op's inputs and result)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output} | {i.name for i in m.graph.input}
    for op in sim.graph.ops:
        if op.output not in have and not (isinstance(op, Conv) and op.int32_output):
            m.graph.output.append(helper.make_tensor_value_info(op.output, TensorProto.INT8, None))
            have.add(op.output)
    return m


def check_graph_op_by_op(model: onnx.ModelProto, x: np.ndarray, feeds: dict) -> tuple[int, int]:
    """Each op of the simulator, fed with ORT's own inputs for it, against ORT's result: (differences, total)."""
    sim = Simulator(model)
    ort = ort_run(_with_all_int8_outputs(model, sim), feeds)
    ort[sim.graph.inputs[0].tensor] = x
    diffs = total = 0
    for op in sim.graph.ops:
        ins = [ort[t] for t in op.inputs]
        ours = run_op(op, *ins)
        diffs += check_op_against_ort(op, ins, ours, ort[op.output])
        total += ours.size
    # End to end as well: the whole run equals the op-by-op run wherever ORT agreed on every op.
    if diffs == 0:
        for name, value in sim.run(x).items():
            if value.dtype == np.int8:
                assert np.array_equal(value, ort[name])
    return diffs, total


@settings(max_examples=300, deadline=None, derandomize=True)
@given(single_op_graphs())
def test_single_op_graphs_match_onnxruntime(case):
    check_graph_op_by_op(case.model, case.x, case.feeds)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(small_graphs())
def test_small_graphs_match_onnxruntime_op_by_op(case):
    check_graph_op_by_op(case.model, case.x, case.feeds)


def _all_patterns_graph(tie: bool = False, seed: int = 7) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    """Every supported pattern: conv 3x3 s1/s2, depthwise, pointwise, bias / no bias, ReLU, add of two
    differently scaled branches, nearest x2, max pool 3x3 s2 p1, concat, and an int32 head conv."""
    shape = (1, 3, 32, 48)
    b = QDQGraphBuilder(seed=seed, tie=tie)
    x = b.input(shape)
    s1 = b.conv(x, 16, 3, 2, relu=True)  # (1, 16, 16, 24)
    dw = b.conv(s1, 16, 3, groups=16, relu=True, bias=False)
    pw = b.conv(dw, 16, 1, pad=0)
    res = b.add(pw, s1, relu=False)  # scales differ
    s2 = b.conv(res, 24, 3, 2, relu=True)  # (1, 24, 8, 12)
    up = b.resize(b.conv(s2, 16, 1, pad=0), 2)  # (1, 16, 16, 24)
    fused = b.add(up, res, relu=True)
    pool = b.maxpool(fused, 3, 2, 1)  # (1, 16, 8, 12)
    cat = b.concat([pool, s2], out_scale=None)  # the pool's scale; s2 is requantised to it
    feat = b.conv(cat, 32, 3, relu=True)
    b.output(feat)
    b.conv(feat, 10, 3, int32_output=True)
    b.conv(feat, 3, 1, pad=0, int32_output=True)
    return b.build(), shape


def test_all_patterns_graph_matches_onnxruntime_end_to_end():
    """>= 99.9% of int8 elements equal and at most 1 LSB apart; int32 heads within float32 tolerance."""
    model, shape = _all_patterns_graph()
    x = np.random.default_rng(0).integers(-128, 128, size=shape, dtype=np.int8)
    sim = Simulator(model)
    ours = sim.run(x, keep_intermediates=True)
    ort = ort_run(_with_all_int8_outputs(model, sim), {"image": x})
    equal = total = 0
    for op in sim.graph.ops:
        if isinstance(op, Conv) and op.int32_output:
            continue
        a, b = ours[op.output].astype(np.int32), ort[op.output].astype(np.int32)
        assert np.abs(a - b).max() <= 1, op.name
        equal += int((a == b).sum())
        total += a.size
    assert total > 20_000 and equal / total >= 0.999, (equal, total)
    floats = sim.run_float(x)
    for o in sim.graph.outputs:
        if o.dtype == "int32":
            ref = ort[o.name].astype(np.float64)
            np.testing.assert_allclose(floats[o.name], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    diffs, _ = check_graph_op_by_op(model, x, {"image": x})
    assert diffs == 0  # op by op too: these scales and this input give no (near-)tie at all


def test_tie_scales_differ_from_onnxruntime_only_at_ties():
    """Power-of-two scales: many exact .5 results; we round them up, ORT to even: 1 LSB apart there only."""
    model, shape = _all_patterns_graph(tie=True)
    x = np.random.default_rng(1).integers(-128, 128, size=shape, dtype=np.int8)
    diffs, total = check_graph_op_by_op(model, x, {"image": x})
    assert diffs > 0  # the test would be vacuous without ties


def test_exact_tie_rounds_half_up():
    """r = s_in * s_w / s_out = 1/2 exactly: y = floor(x / 2 + 1/2); 3 -> 2 and -3 -> -1 (ORT: 2 and -2)."""
    b = QDQGraphBuilder()
    x = b.input((1, 1, 1, 8))
    y = b.conv(
        x,
        1,
        1,
        pad=0,
        bias=False,
        weight=np.ones((1, 1, 1, 1), np.int8),
        weight_scales=np.array([0.5]),
        out_scale=1 / 128,
    )
    b.output(y)
    xs = np.array([-5, -3, -1, 0, 1, 3, 5, 127], np.int8).reshape(1, 1, 1, 8)
    got = Simulator(b.build()).run(xs)[y.name].ravel()
    assert got.tolist() == [-2, -1, 0, 0, 1, 2, 3, 64]


# ---------------------------------------------------------------- the Simulator API


def test_quantize_input_is_exact_for_camera_bytes_and_rounds_half_up():
    model, _ = _all_patterns_graph()
    sim = Simulator(model)
    u8 = np.arange(256, dtype=np.float32)
    assert np.array_equal(sim.quantize_input((u8 - 128) / 128), (np.arange(256) - 128).astype(np.int8))
    ties = np.array([0.5, -0.5, 1.5, -1.5, 300.0, -300.0]) / 128
    assert sim.quantize_input(ties).tolist() == [1, 0, 2, -1, 127, -128]
    with pytest.raises(ValueError, match="NaN"):
        sim.quantize_input(np.array([np.nan]))


def test_run_float_and_output_scales():
    model, shape = _all_patterns_graph()
    sim = Simulator(model)
    x = np.random.default_rng(2).integers(-128, 128, size=shape, dtype=np.int8)
    raw = sim.run(x)
    floats = sim.run_float(x)
    from_float = sim.run_float(x.astype(np.float64) / 128)  # a float image is quantised first
    assert all(np.array_equal(from_float[k], floats[k]) for k in floats)
    for name, scales in sim.output_scales.items():
        assert scales.dtype == np.float64 and scales.ndim == 1
        expect = raw[name].astype(np.float64) * scales.reshape(1, -1, 1, 1)
        assert np.array_equal(floats[name], expect)
    dtypes = sim.output_dtypes
    assert sorted(dtypes.values()) == ["int32", "int32", "int8"]
    head = next(n for n, d in dtypes.items() if d == "int32")
    assert raw[head].dtype == np.int32 and sim.output_scales[head].shape == (raw[head].shape[1],)


def test_run_checks_its_input_and_keeps_intermediates_on_request():
    model, shape = _all_patterns_graph()
    sim = Simulator(model)
    x = np.zeros(shape, np.int8)
    with pytest.raises(TypeError, match="int8"):
        sim.run(x.astype(np.float32))
    with pytest.raises(ValueError, match="declares"):
        sim.run(np.zeros((1, 3, 16, 48), np.int8))
    everything = sim.run({"image": x}, keep_intermediates=True)
    assert all(op.output in everything for op in sim.graph.ops)
    assert set(sim.run(x)) == set(sim.output_names)


def test_simulator_loads_a_path(tmp_path):
    model, shape = _all_patterns_graph()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(3).integers(-128, 128, size=shape, dtype=np.int8)
    a, b = Simulator(path).run(x), Simulator(model).run(x)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_reference_package_imports_only_numpy_and_the_int8_contract():
    """ARCHITECTURE.md: the simulator imports numpy, fcos3d.int8 (ops, rounding, reader) and boards; no torch."""
    import ast
    from pathlib import Path

    import fcos3d.runtime.reference as ref

    stdlib = {"__future__", "collections", "dataclasses", "fractions", "functools", "math", "pathlib", "typing"}
    for path in Path(ref.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                ok = name.split(".")[0] in stdlib | {"numpy"} or name.startswith(("fcos3d.int8", "fcos3d.boards"))
                assert ok, (path.name, name)
