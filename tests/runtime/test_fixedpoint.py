"""Tests of fcos3d/int8/fixedpoint.py: exact goldens, exact properties, and TVM bit-exactness.

Tolerance: none. Every comparison here is integer equality (the rule is docs/int8.md "Requantisation").
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fcos3d.int8 import fixedpoint as fx

GOLDEN = Path(__file__).parent / "golden" / "requant_ties.json"
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True)


def exact(acc: int, m: int, shift: int) -> int:
    """The documented rule in exact rationals: floor(acc * m * 2**(shift-31) + 1/2)."""
    return math.floor(Fraction(acc * m) * Fraction(2) ** (shift - 31) + Fraction(1, 2))


@pytest.fixture(scope="module")
def golden():
    doc = json.loads(GOLDEN.read_text())
    rows = doc["requantize"]["rows"]
    cols = {name: [r[i] for r in rows] for i, name in enumerate(doc["requantize"]["columns"])}
    req = {k: np.array(v, dtype=np.int64) for k, v in cols.items() if k != "kind"}
    req["kind"] = np.array(cols["kind"])
    mult = doc["quantize_multiplier"]["rows"]
    return req, mult


# ---------------------------------------------------------------- goldens


def test_requantize_matches_goldens_exactly(golden):
    req, _ = golden
    got = fx.requantize(req["acc"], req["multiplier"], req["shift"])
    assert got.dtype == np.int64
    bad = np.flatnonzero(got != req["expected"])
    assert bad.size == 0, [
        (
            int(req["acc"][i]),
            int(req["multiplier"][i]),
            int(req["shift"][i]),
            int(req["expected"][i]),
            int(got[i]),
        )
        for i in bad[:10]
    ]


def test_goldens_cover_the_edges(golden):
    req, _ = golden
    ties = req["kind"] == "tie"
    assert ties.sum() > 500
    assert (req["acc"][ties] < 0).any() and (req["acc"][ties] > 0).any()  # ties of both signs
    assert req["shift"].min() == fx.MIN_SHIFT and req["shift"].max() == fx.MAX_SHIFT
    assert {0, 2**29, 2**30, 2**31 - 1} <= set(req["multiplier"].tolist())
    assert {INT32_MIN, INT32_MAX} <= set(req["acc"].tolist())
    # a tie really is a tie, and ties go toward +inf: -2.5 -> -2, 2.5 -> 3
    for acc, m, s, e in zip(  # noqa: B905
        req["acc"][ties][:200],
        req["multiplier"][ties][:200],
        req["shift"][ties][:200],
        req["expected"][ties][:200],
    ):
        v = Fraction(int(acc) * int(m)) * Fraction(2) ** (int(s) - 31)
        assert v.denominator == 2 and e == v + Fraction(1, 2)


def test_quantize_multiplier_matches_goldens(golden):
    _, rows = golden
    scales = np.array([float.fromhex(r[0]) for r in rows])
    m, s = fx.quantize_multiplier(scales)
    assert m.dtype == np.int32 and s.dtype == np.int32
    assert m.tolist() == [r[1] for r in rows]
    assert s.tolist() == [r[2] for r in rows]


# ---------------------------------------------------------------- quantize_multiplier


@SETTINGS
@given(st.floats(min_value=2.0**-32, max_value=2.0**30, exclude_min=True, exclude_max=True))
def test_quantize_multiplier_has_24_significant_bits_within_2_pow_minus_24_relative(scale):
    m, s = fx.quantize_multiplier(scale)
    m, s = int(m), int(s)
    assert (2**30 < m < 2**31) or m == 2**29
    assert m % 2 ** (31 - fx.MULTIPLIER_BITS) == 0  # what makes the float32 form of the rounding exact
    assert -31 <= s <= 32
    represented = Fraction(m) * Fraction(2) ** (s - 31)
    assert abs(represented - Fraction(scale)) <= Fraction(scale) / 2**24
    # the nearest 24-bit fraction: the neighbours one unit of the 24th bit away are no closer
    unit = Fraction(2) ** (s - 24)
    assert abs(represented - Fraction(scale)) <= min(abs(represented + d - Fraction(scale)) for d in (-unit, unit))


def test_quantize_multiplier_edges():
    m, s = fx.quantize_multiplier(np.array([0.0, 2.0**-33, 2.0**-32, 1.0, 0.5, 2.0**20, 1.0 - 2.0**-40]))
    assert m.tolist() == [
        0,
        0,
        0,
        2**29,
        2**29,
        2**29,
        2**29,
    ]  # powers of two avoid TVM's 2**30 special case
    assert s.tolist() == [0, 0, 0, 2, 1, 22, 2]
    m0, s0 = fx.quantize_multiplier(0.25)
    assert m0.shape == () and int(m0) == 2**29 and int(s0) == 0
    m2, _ = fx.quantize_multiplier(np.full((3, 4), 0.3, dtype=np.float32))
    assert m2.shape == (3, 4)
    # a flushed scale (<= 2**-32) rounds every int32 accumulator to 0 under the exact rule, as (0, 0) does
    extremes = np.array([INT32_MIN, INT32_MIN + 1, -1, 1, INT32_MAX])
    assert all(math.floor(Fraction(int(a), 2**32) + Fraction(1, 2)) == 0 for a in extremes)
    assert fx.requantize(extremes, *fx.quantize_multiplier(2.0**-32)).tolist() == [0] * 5


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -1e-3, -float("inf"), 2.0**30, 1e12])
def test_quantize_multiplier_rejects_outside_valid_range(scale):
    with pytest.raises(ValueError, match="valid range"):
        fx.quantize_multiplier(np.array([0.5, scale]))


def test_conv_multipliers_uses_float64_product_of_stored_scales():
    s_in, s_w, s_out = np.float32(0.0123), np.float32([0.01, 0.02, 0.0]), np.float32(0.05)
    m, s = fx.conv_multipliers(s_in, s_w, s_out)
    want = fx.quantize_multiplier((np.float64(s_in) * s_w.astype(np.float64)) / np.float64(s_out))
    assert m.tolist() == want[0].tolist() and s.tolist() == want[1].tolist()
    assert int(m[2]) == 0  # a dead channel (zero weight scale) requantises to 0
    with pytest.raises(ValueError):
        fx.conv_multipliers(0.1, [0.1], 0.0)


# ---------------------------------------------------------------- requantize


@SETTINGS
@given(
    acc=st.integers(INT32_MIN, INT32_MAX),
    m=st.one_of(st.integers(0, INT32_MAX), st.integers(2**30, INT32_MAX)),
    shift=st.integers(-32, 32),
)
def test_requantize_equals_fraction_reference(acc, m, shift):
    want = exact(acc, m, shift)
    if INT32_MIN <= want <= INT32_MAX:
        assert int(fx.requantize(np.array([acc]), m, shift)[0]) == want
    else:
        with pytest.raises(ValueError, match="int32"):
            fx.requantize(np.array([acc]), m, shift)


@st.composite
def exact_ties(draw):
    """(acc, m, shift) with acc * m * 2**(shift - 31) == k + 1/2 exactly; acc int32, m in [2**30, 2**31)."""
    shift = draw(st.integers(-30, 0))
    total = 31 - shift  # acc * m must be an odd multiple of 2**(total - 1)
    v = draw(st.integers(max(0, total - 32), 29))  # trailing zero bits of m; acc supplies the other total-1-v
    odd = draw(st.integers(2 ** (30 - v), 2 ** (31 - v) - 1).map(lambda o: o | 1))
    period = 2 ** (total - v)
    j = draw(st.integers(-(2**31) // period - 1, (2**31 - 1) // period))
    acc = 2 ** (total - 1 - v) + j * period
    assume(INT32_MIN <= acc <= INT32_MAX)
    return acc, odd << v, shift


@SETTINGS
@given(exact_ties())
def test_requantize_rounds_exact_ties_toward_plus_inf(case):
    acc, m, shift = case
    value = Fraction(acc * m) * Fraction(2) ** (shift - 31)
    assert value.denominator == 2
    assert int(fx.requantize(np.array([acc]), m, shift)[0]) == math.floor(value) + 1


@SETTINGS
@given(st.integers(-(2**40), 2**40), st.integers(0, 40))
def test_round_half_up_shift(x, n):
    assert int(fx.round_half_up_shift(np.array([x]), n)[0]) == math.floor(Fraction(x, 2**n) + Fraction(1, 2))


def test_worked_example_from_docs():
    m, s = fx.quantize_multiplier(0.3)
    assert (int(m), int(s)) == (1288490240, -1)  # 10066330 * 2**7
    assert fx.requantize(np.array([5, -5]), m, s).tolist() == [2, -2]
    assert fx.requantize(np.array([3, -3]), *fx.quantize_multiplier(0.5)).tolist() == [
        2,
        -1,
    ]  # ties go up


def test_requantize_per_channel_axis_equals_per_element():
    rng = np.random.default_rng(0)
    acc = rng.integers(-(2**24), 2**24, size=(2, 5, 3, 4)).astype(np.int32)  # (N, C, H, W)
    m, s = fx.quantize_multiplier(rng.uniform(1e-5, 0.9, size=5))
    got = fx.requantize(acc, m, s, axis=1)
    want = np.array(
        [
            [
                [[exact(int(acc[n, c, h, w]), int(m[c]), int(s[c])) for w in range(4)] for h in range(3)]
                for c in range(5)
            ]
            for n in range(2)
        ]
    )
    assert np.array_equal(got, want)
    got_last = fx.requantize(np.moveaxis(acc, 1, -1), m, s, axis=-1)
    assert np.array_equal(np.moveaxis(got_last, -1, 1), want)
    with pytest.raises(ValueError, match="channels"):
        fx.requantize(acc, m[:4], s[:4], axis=1)


def test_requantize_rejects_outside_domain():
    with pytest.raises(ValueError, match="int32"):
        fx.requantize(np.array([2**31], dtype=np.int64), 2**30 + 1, -1)
    with pytest.raises(ValueError, match="shifts"):
        fx.requantize(np.array([1]), 2**30 + 1, -33)
    with pytest.raises(ValueError, match="multipliers"):
        fx.requantize(np.array([1]), 2**31, 0)
    with pytest.raises(ValueError, match="multipliers"):
        fx.requantize(np.array([1]), -5, 0)
    with pytest.raises(ValueError, match="leave"):
        fx.requantize(np.array([2**20]), 2**31 - 1, 12)
    with pytest.raises(TypeError):
        fx.requantize(np.array([1.5]), 2**30 + 1, 0)


def test_requantize_int8_saturates_and_fuses_relu():
    acc = np.array([-(2**20), -300, -1, 0, 1, 300, 2**20], dtype=np.int32)
    m, s = fx.quantize_multiplier(0.5)  # y = round_half_up(acc / 2)
    assert fx.requantize_int8(acc, m, s).tolist() == [-128, -128, 0, 0, 1, 127, 127]
    assert fx.requantize_int8(acc, m, s, relu=True).tolist() == [0, 0, 0, 0, 1, 127, 127]
    assert fx.requantize_int8(acc, m, s).dtype == np.int8
    assert fx.saturate(np.array([-5, 5, 300]), 0, 127).tolist() == [0, 5, 127]


def test_accumulator_bound():
    assert fx.accumulator_bound(1, 0) == 128 * 127
    # the largest fan-in whose accumulator always fits int32 with no bias
    k = INT32_MAX // (128 * 127)
    assert fx.accumulator_bound(k) <= INT32_MAX < fx.accumulator_bound(k + 1)
    assert k == 132104


# ---------------------------------------------------------------- add rule


def exact_add_rule(a: int, b: int, r: fx.AddRescale) -> int:
    a32 = exact(a, r.multiplier_a, r.shift_a)
    b32 = exact(b, r.multiplier_b, r.shift_b)
    return exact(a32 + b32, r.multiplier_out, r.shift_out)


@pytest.mark.parametrize(
    "s_a,s_b,s_o",
    [
        (0.02, 0.05, 0.07),
        (0.05, 0.02, 0.03),
        (0.013, 0.013, 0.026),
        (0.1, 0.0001, 0.1),
        (0.004, 0.03, 0.002),
    ],
)
def test_add_rule_exhaustive_int8(s_a, s_b, s_o):
    r = fx.add_multipliers(np.float32(s_a), np.float32(s_b), np.float32(s_o))
    big = (r.multiplier_a, r.shift_a) if s_a >= s_b else (r.multiplier_b, r.shift_b)
    assert big == (2**29, fx.ADD_COMMON_BITS + 2)  # the larger input's rescale is exactly x * 2**20
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    y = fx.add_requantize(a.astype(np.int8), b.astype(np.int8), r)
    y_relu = fx.add_requantize(a.astype(np.int8), b.astype(np.int8), r, relu=True)
    assert y.dtype == np.int8 and np.array_equal(y_relu, np.maximum(y, 0))
    # spot-check the integer steps against exact rationals
    rng = np.random.default_rng(1)
    for i, j in rng.integers(0, 256, size=(300, 2)):
        want = min(127, max(-128, exact_add_rule(int(a[i, j]), int(b[i, j]), r)))
        assert int(y[i, j]) == want
    # and the result is the correctly rounded real sum except right at a tie (at most 1 LSB off)
    real = (a * np.float64(np.float32(s_a)) + b * np.float64(np.float32(s_b))) / np.float64(np.float32(s_o))
    ref = np.clip(np.floor(real + 0.5), -128, 127)
    diff = np.abs(y - ref)
    assert diff.max() <= 1
    near_tie = np.abs(real - np.floor(real) - 0.5) < 1e-4
    assert np.all(diff[~near_tie] == 0)


# ---------------------------------------------------------------- TVM bit-exactness


def _tvm():
    try:
        import tvm
        from tvm import te, topi
    except Exception as exc:  # noqa: BLE001 - any import failure means "no TVM here"
        pytest.skip(f"apache-tvm is not importable ({exc!r}); the TVM bit-exactness tests need apache-tvm 0.27")
    return tvm, te, topi


def _target(tvm):
    return tvm.target.Target({"kind": "llvm"})


@pytest.fixture(scope="module")
def tvm_per_axis():
    """TVM topi.fixed_point_multiply_per_axis on an (n,) tensor, one channel per element, built for llvm."""
    tvm, te, topi = _tvm()
    n = te.var("n")
    x = te.placeholder((n,), "int32", name="x")
    m = te.placeholder((n,), "int32", name="m")
    ls = te.placeholder((n,), "int32", name="ls")
    rs = te.placeholder((n,), "int32", name="rs")
    y = topi.fixed_point_multiply_per_axis(x, m, ls, rs, 1, 1, axes=(0,))
    lib = tvm.compile(te.create_prim_func([x, m, ls, rs, y]), target=_target(tvm))
    dev = tvm.cpu()

    def run(acc, mult, shift):
        acc, mult, shift = (np.asarray(v, dtype=np.int64) for v in (acc, mult, shift))
        args = [acc, mult, np.maximum(shift, 0), np.maximum(-shift, 0), np.zeros_like(acc)]
        arrs = [tvm.runtime.tensor(a.astype(np.int32), dev) for a in args]
        lib(*arrs)
        return arrs[-1].numpy()

    return run


def test_tvm_per_axis_equals_requantize_on_goldens(golden, tvm_per_axis):
    req, _ = golden
    got = tvm_per_axis(req["acc"], req["multiplier"], req["shift"])
    ours = fx.requantize(req["acc"], req["multiplier"], req["shift"])
    bad = np.flatnonzero(got != ours)
    assert bad.size == 0, [
        (
            int(req["acc"][i]),
            int(req["multiplier"][i]),
            int(req["shift"][i]),
            int(ours[i]),
            int(got[i]),
        )
        for i in bad[:10]
    ]


def test_tvm_per_axis_equals_requantize_on_random(tvm_per_axis):
    rng = np.random.default_rng(2024)
    n = 200_000
    acc = np.where(
        rng.random(n) < 0.5,
        rng.integers(-(2**26), 2**26, n),
        rng.integers(INT32_MIN, INT32_MAX + 1, n),
    )
    m, s = fx.quantize_multiplier(np.exp2(rng.uniform(-34.0, 0.0, n)))
    ours = fx.requantize(acc, m, s)
    assert np.array_equal(tvm_per_axis(acc, m, s), ours)
    # left shifts (scales >= 1) on accumulators small enough for the result to fit int32
    m, s = fx.quantize_multiplier(np.exp2(rng.uniform(0.0, 20.0, n)))
    small = rng.integers(-(2**10), 2**10, n)
    assert np.array_equal(tvm_per_axis(small, m, s), fx.requantize(small, m, s))


def test_tvm_per_axis_nchw_channel_axis():
    """The compiler's layout: (N, C, H, W) int32 accumulators, per-output-channel constants on axis 1."""
    tvm, te, topi = _tvm()
    rng = np.random.default_rng(7)
    shape, c = (2, 16, 5, 7), 16
    acc = rng.integers(-(2**24), 2**24, size=shape).astype(np.int32)
    m, s = fx.quantize_multiplier(rng.uniform(1e-6, 1e-2, size=c))
    x = te.placeholder(shape, "int32", name="x")
    mp, lp, rp = (te.placeholder((c,), "int32", name=nm) for nm in ("m", "ls", "rs"))
    y = topi.fixed_point_multiply_per_axis(x, mp, lp, rp, 1, 1, axes=(1,))
    z = topi.cast(topi.clip(y, -128, 127), "int8")
    lib = tvm.compile(te.create_prim_func([x, mp, lp, rp, z]), target=_target(tvm))
    dev = tvm.cpu()
    args = [
        acc,
        m,
        np.maximum(s, 0).astype(np.int32),
        np.maximum(-s, 0).astype(np.int32),
        np.zeros(shape, np.int8),
    ]
    arrs = [tvm.runtime.tensor(a, dev) for a in args]
    lib(*arrs)
    assert np.array_equal(arrs[-1].numpy(), fx.requantize_int8(acc, m, s, axis=1))


def _tvm_scalar(tvm, te, topi, multiplier: int, shift: int):
    x = te.placeholder((te.var("n"),), "int32", name="x")
    y = topi.fixed_point_multiply(x, int(multiplier), int(shift))
    return tvm.compile(te.create_prim_func([x, y]), target=_target(tvm))


def _run1(tvm, lib, x):
    dev = tvm.cpu()
    a = tvm.runtime.tensor(np.asarray(x, dtype=np.int32), dev)
    b = tvm.runtime.tensor(np.zeros(len(x), dtype=np.int32), dev)
    lib(a, b)
    return b.numpy()


def test_tvm_scalar_fixed_point_multiply_equals_requantize():
    """topi.fixed_point_multiply (per-tensor, constant multiplier) on pairs quantize_multiplier produces,
    powers of two included (scale 1.0 too): they map to 2**29, so TVM stays exact."""
    tvm, te, topi = _tvm()
    scales = [
        1.0,
        0.5,
        2.0**-31,
        1.0 / 128,
        2.0**20,
        3.0,
        0.3,
        1.0 / 3,
        0.0,
        float.fromhex("0x1.fffffffcp-1"),
        2.0**-32 * 1.5,
        7.3e-5,
        0.011,
        0.9999,
    ]
    rng = np.random.default_rng(5)
    base = np.array(
        [
            INT32_MIN,
            INT32_MIN + 1,
            -(2**30),
            -3,
            -2,
            -1,
            0,
            1,
            2,
            3,
            2**30,
            INT32_MAX - 1,
            INT32_MAX,
        ]
    )
    for scale in scales:
        m, s = (int(v) for v in fx.quantize_multiplier(scale))
        assert m != 2**30
        acc = np.concatenate([base, rng.integers(INT32_MIN, INT32_MAX + 1, 2000), rng.integers(-999, 1000, 2000)])
        limit = INT32_MAX / max(scale, 1e-300)
        acc = acc[np.abs(acc) <= min(limit, 2.0**31)]  # results must fit int32 (the documented domain)
        got = _run1(tvm, _tvm_scalar(tvm, te, topi, m, s), acc)
        assert np.array_equal(got, fx.requantize(acc, m, s)), (scale, m, s)


def test_tvm_scalar_special_cases_multiplier_2_pow_30():
    """Why quantize_multiplier never returns 2**30: TVM 0.27's scalar q_multiply_shift switches to an int32
    shift path for that constant. Canary: if this starts failing, TVM changed and the note in
    quantize_multiplier / docs/int8.md should be revisited."""
    tvm, te, topi = _tvm()
    with pytest.raises(Exception, match="[Ss]hift"):  # shift == 1: `1 << -1`, rejected at compile time
        _tvm_scalar(tvm, te, topi, 2**30, 1)
    got = _run1(tvm, _tvm_scalar(tvm, te, topi, 2**30, 0), [INT32_MAX, 3])
    ours = fx.requantize(np.array([INT32_MAX, 3]), 2**30, 0)
    assert ours.tolist() == [2**30, 2]
    assert got.tolist() == [-(2**30), 2]  # int32 overflow of x + 2**0 in the special path
    # the same value as (2**29, shift + 1) is exact
    got = _run1(tvm, _tvm_scalar(tvm, te, topi, 2**29, 1), [INT32_MAX, 3])
    assert got.tolist() == ours.tolist()


def test_tvm_add_rule_exhaustive_int8():
    """The add rule as TVM expresses it (three per-tensor fixed_point_multiply, an int32 add, a clip) equals
    add_requantize on every pair of int8 inputs."""
    tvm, te, topi = _tvm()
    r = fx.add_multipliers(np.float32(0.021), np.float32(0.047), np.float32(0.061))
    shape = (256, 256)
    a = te.placeholder(shape, "int8", name="a")
    b = te.placeholder(shape, "int8", name="b")
    a32 = topi.fixed_point_multiply(topi.cast(a, "int32"), r.multiplier_a, r.shift_a)
    b32 = topi.fixed_point_multiply(topi.cast(b, "int32"), r.multiplier_b, r.shift_b)
    y = topi.fixed_point_multiply(topi.add(a32, b32), r.multiplier_out, r.shift_out)
    z = topi.cast(topi.clip(y, 0, 127), "int8")  # with the fused ReLU
    lib = tvm.compile(te.create_prim_func([a, b, z]), target=_target(tvm))
    av, bv = (g.astype(np.int8) for g in np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij"))
    dev = tvm.cpu()
    arrs = [tvm.runtime.tensor(v, dev) for v in (av, bv, np.zeros(shape, np.int8))]
    lib(*arrs)
    assert np.array_equal(arrs[-1].numpy(), fx.add_requantize(av, bv, r, relu=True))
