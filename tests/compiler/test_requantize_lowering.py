"""requantize.lower_even_odd: the x86 vector form of ``q_multiply_shift_per_axis`` (even and odd int32 lanes as
sign-extended int64 words, one 32x32->64 multiply each) gives fixedpoint.requantize's integers exactly: per-channel
constants broadcast over a vectorised row (the conv epilogues) and per-lane constants (a per-position table), at the
domain's edges (int32 extremes, multiplier 2**31 - 1 and 2**29, right shifts up to 32) and on random values."""

from __future__ import annotations

import platform

import numpy as np
import pytest
import tvm
from tvm import te, tirx, topi

from fcos3d.compiler.requantize import even_odd_lowering, lower_even_odd
from fcos3d.int8 import fixedpoint as fx

X86 = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "cascadelake"})
pytestmark = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="builds x86 code and runs it on this CPU"
)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _build(rows: int, cols: int, per_lane: bool, lanes: int, left_shifts: bool = False):
    """y = requantize(x) on (rows, cols) int32; constants per row (broadcast in each vector) or per element."""
    x = te.placeholder((rows, cols), "int32", name="x")
    shape = (rows, cols) if per_lane else (rows,)
    axes = (0, 1) if per_lane else (0,)
    m, ls, rs = (te.placeholder(shape, "int32", name=n) for n in ("m", "ls", "rs"))
    y = topi.fixed_point_multiply_per_axis(x, m, ls, rs, int(left_shifts), 1, axes=axes)
    func = te.create_prim_func([x, m, ls, rs, y])
    sch = tvm.s_tir.Schedule(func)
    block = sch.get_child_blocks(sch.get_sblock("root"))[0]
    _, inner = sch.get_loops(block)
    _, vec = sch.split(inner, [None, lanes])
    sch.vectorize(vec)
    with even_odd_lowering(X86):
        lib = tvm.compile(sch.mod["main"], target=X86)

    def run(acc, mult, shift):
        rs_ = np.broadcast_to(np.maximum(-np.asarray(shift), 0), shape).astype(np.int32)
        args = [
            np.ascontiguousarray(acc, dtype=np.int32),
            np.broadcast_to(np.asarray(mult), shape).astype(np.int32),
            np.broadcast_to(np.maximum(np.asarray(shift), 0), shape).astype(np.int32),
            rs_,
            np.zeros((rows, cols), np.int32),
        ]
        arrs = [tvm.runtime.tensor(a) for a in args]
        lib(*arrs)
        return arrs[-1].numpy()

    run.asm = lib.mod.inspect_source("asm")
    return run


@pytest.mark.parametrize("lanes", [64, 16, 14, 8])  # 64: an int8 row, as 4 registers
@pytest.mark.parametrize("per_lane", [False, True])
def test_even_odd_form_equals_requantize(per_lane, lanes):
    rng = np.random.default_rng(11 + lanes + per_lane)
    rows, cols = 64, 64
    acc = np.where(
        rng.random((rows, cols)) < 0.5,
        rng.integers(-(2**24), 2**24, (rows, cols)),
        rng.integers(INT32_MIN, INT32_MAX + 1, (rows, cols)),
    )
    acc[0, :4] = [INT32_MIN, INT32_MAX, -1, 0]
    shape = (rows, cols) if per_lane else (rows,)
    m, s = fx.quantize_multiplier(np.exp2(rng.uniform(-34.0, -1.0, shape)))  # right shifts only (no left shift)
    m, s = np.array(m, dtype=np.int64), np.array(s, dtype=np.int64)
    m.flat[:3] = [fx.INT32_MAX, 2**29, 2**30 + 1]
    s.flat[:3] = [0, -32, -7]
    s = np.minimum(s, 0)
    run = _build(rows, cols, per_lane, lanes)
    got = run(acc, m, s)
    want = fx.requantize(acc, m if per_lane else m[:, None], s if per_lane else s[:, None])
    assert int(np.count_nonzero(got != want)) == 0
    assert "vpmuldq" in run.asm and "vpmullq" not in run.asm  # the even/odd form, not TVM's int64 multiply


@pytest.mark.parametrize("per_lane", [False, True])
def test_even_odd_form_with_left_shifts_equals_requantize(per_lane):
    """Scales up to 2**20 (an add's common domain, docs/int8.md 4.4) beside right shifts in the same vector: the
    left shift applied to the 64-bit product."""
    rng = np.random.default_rng(23 + per_lane)
    rows, cols = 32, 64
    shape = (rows, cols) if per_lane else (rows,)
    m, s = fx.quantize_multiplier(np.exp2(rng.uniform(-20.0, 20.0, shape)))
    m, s = np.array(m, dtype=np.int64), np.array(s, dtype=np.int64)
    scale = (m * np.exp2(s - 31.0)).reshape(shape if per_lane else (rows, 1))
    limit = np.minimum(2.0**31 - 1, (2.0**31 - 2) / scale)  # results inside int32 (the domain)
    acc = np.round(rng.uniform(-1.0, 1.0, (rows, cols)) * limit).astype(np.int64)
    acc[:, :3] = [0, 255, -255]
    assert (s > 0).any() and (s <= 0).any()
    got = _build(rows, cols, per_lane, 16, left_shifts=True)(acc, m, s)
    want = fx.requantize(acc, m if per_lane else m[:, None], s if per_lane else s[:, None])
    assert int(np.count_nonzero(got != want)) == 0


def _vector_call(lanes: int, lshift: bool):
    x = tirx.Broadcast(tirx.Var("x", "int32"), lanes)
    c = lambda v, t="int32": tirx.Broadcast(tirx.const(v, t), lanes)  # noqa: E731
    return tirx.q_multiply_shift_per_axis(x, c(2**30), c(0), c(3), c(31), c(lshift, "bool"), c(True, "bool"))


def test_even_odd_applies_only_where_it_should():
    call = _vector_call(16, lshift=False)
    assert lower_even_odd(call).same_as(call)  # outside even_odd_lowering: TVM's own lowering
    with even_odd_lowering(X86):
        assert not lower_even_odd(call).same_as(call)
        with_lshift = _vector_call(16, lshift=True)
        assert not lower_even_odd(with_lshift).same_as(with_lshift)  # left shifts too, on the product
        narrow = _vector_call(4, lshift=False)
        assert not lower_even_odd(narrow).same_as(narrow)  # any even lane count up to 16
        odd = _vector_call(7, lshift=False)
        assert lower_even_odd(odd).same_as(odd)
    with even_odd_lowering(tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"})):
        assert lower_even_odd(call).same_as(call)  # NEON has no 64-bit lane multiply


# ---------------------------------------------------------------- the float32 form (docs/int8.md 2.5)


def _build_float32(rows: int, cols: int, per_lane: bool, lanes: int, zero_point: int, lo: int, hi: int, target=X86):
    """int8 ``clamp(requantize(x) + zero_point, lo, hi)`` through emit_requantize's float32-marked compute, the
    epilogue of a conv; returns (run, assembly)."""
    from fcos3d.compiler.requantize import _requantize_float32_marked

    x = te.placeholder((rows, cols), "int32", name="x")
    shape = (rows, cols) if per_lane else (rows,)
    axes = (0, 1) if per_lane else (0,)
    m, ls, rs = (te.placeholder(shape, "int32", name=n) for n in ("m", "ls", "rs"))
    scale = te.placeholder(shape, "int32", name="scale")  # the float32 scale's bits
    y = _requantize_float32_marked(x, m, ls, rs, scale, 1, axes)
    z = te.compute(
        (rows, cols), lambda i, j: tirx.Cast("int8", tirx.max(tirx.min(y[i, j] + zero_point, hi), lo)), name="z"
    )
    sch = tvm.s_tir.Schedule(te.create_prim_func([x, m, ls, rs, scale, z]))
    sch.compute_inline(sch.get_sblock("requantize"))
    _, inner = sch.get_loops(sch.get_sblock("z"))
    _, vec = sch.split(inner, [None, lanes])
    sch.vectorize(vec)
    with even_odd_lowering(target):
        lib = tvm.compile(sch.mod["main"], target=target)

    def run(acc, mult, shift):
        shift = np.broadcast_to(np.asarray(shift), shape)
        mult = np.broadcast_to(np.asarray(mult), shape)
        args = [
            np.ascontiguousarray(acc, dtype=np.int32),
            mult.astype(np.int32),
            np.maximum(shift, 0).astype(np.int32),
            np.maximum(-shift, 0).astype(np.int32),
            (mult * np.exp2(shift - 31.0)).astype(np.float32).view(np.int32),  # as emit_requantize_table makes it
            np.zeros((rows, cols), np.int8),
        ]
        arrs = [tvm.runtime.tensor(a) for a in args]
        lib(*arrs)
        return arrs[-1].numpy()

    return run, lib.mod.inspect_source("asm") if target is X86 else ""


def _float32_cases(rows: int, cols: int, per_lane: bool, seed: int):
    """Accumulators |x| <= 2**24 and 24-bit multipliers: exact ties of both signs and their neighbours, the bound's
    extremes, results inside and far outside int8; scales from 2**-26 to 2**6 (left shifts too)."""
    rng = np.random.default_rng(seed)
    shape = (rows, cols) if per_lane else (rows, 1)
    m, s = fx.quantize_multiplier(np.exp2(rng.uniform(-26.0, 6.0, shape)))
    m, s = np.array(m, dtype=np.int64), np.array(s, dtype=np.int64)
    if not per_lane:
        m[:16], s[:16] = fx.quantize_multiplier(np.exp2(rng.uniform(-13.0, -7.0, (16, 1))))
    scale = m * np.exp2(s - 31.0)
    span = np.minimum(2.0**24, 400.0 / scale)  # accumulators whose results reach a little beyond int8
    acc = np.round(rng.uniform(-1.0, 1.0, (rows, cols)) * span).astype(np.int64)
    # ties: acc * m * 2**(s - 31) == k + 1/2 <=> acc = odd * 2**(30 - s - z), z the multiplier's trailing zeros
    z = np.array([(int(v) & -int(v)).bit_length() - 1 for v in m.ravel()]).reshape(m.shape)
    step = np.broadcast_to(2.0 ** (30 - s - z), (rows, cols))
    tie_ok = (step >= 1) & (step <= 2.0**23)
    odd = 2 * np.floor(rng.uniform(-0.5, 0.5, (rows, cols)) * np.maximum(span / step, 1.0)) + 1
    ties = (odd * step).astype(np.int64) + rng.integers(-1, 2, (rows, cols))  # the tie or a neighbour
    pick = tie_ok & (rng.random((rows, cols)) < 0.5) & (np.abs(ties) <= 2**24)
    acc = np.where(pick, ties, acc)
    if not per_lane:  # rows whose values sit closest below and above a tie: where a float32 rounding would err
        for row in range(min(rows, 16)):
            acc[row] = _closest_to_ties(int(m[row, 0]), int(s[row, 0]), cols)
    acc[:, :6] = [2**24, -(2**24), 0, 1, -1, 2**24 - 1]
    return acc, m, s


def _closest_to_ties(m: int, s: int, count: int) -> np.ndarray:
    """The ``count`` accumulators (results within int8) whose exact ``acc * m * 2**(s - 31)`` lies nearest below or
    above some k + 1/2 without being it: 2**-20 or closer, under half a float32 unit of results from 2 to 128."""
    t = 31 - s
    span = min(2**20, int(128 * 2**t / m))
    acc = np.arange(-span, span + 1, dtype=np.int64)
    frac = np.mod(acc * m, 2**t) - 2 ** (t - 1)  # 0 at a tie
    order = np.argsort(np.where(frac == 0, 2**62, np.abs(frac)), kind="stable")
    return acc[order[:count]]


@pytest.mark.parametrize("lanes", [32, 16, 15, 14])  # 14, 15: widened to 16 and narrowed back; 32: 2 registers
@pytest.mark.parametrize("per_lane", [False, True])
def test_float32_form_equals_requantize_then_saturate(per_lane, lanes):
    rows, cols = 96, 480 if lanes == 15 else 224
    acc, m, s = _float32_cases(rows, cols, per_lane, seed=5 + per_lane)
    for zero_point, lo, hi in [(0, -128, 127), (-3, -3, 127), (5, 5, 60)]:
        run, asm = _build_float32(rows, cols, per_lane, lanes, zero_point, lo, hi)
        assert "rd-sae" in asm  # the float32 form ran, rounded toward -inf by the instruction itself
        got = run(acc, m if per_lane else m[:, 0], s if per_lane else s[:, 0])
        want = fx.requantize_int8(acc, m, s, zero_point=zero_point, bounds=(lo, hi))
        assert int(np.count_nonzero(got != want)) == 0, (zero_point, lo, hi)
        assert len(np.unique(want)) > 50  # the cases reach well inside the range, not only its ends


def test_float32_mark_falls_back_to_the_integer_form_elsewhere():
    """A scalar loop and a CPU without AVX-512 (AVX2 has no embedded rounding): the mark is removed and the
    integer form computes the same integers."""
    rows, cols = 16, 64
    acc, m, s = _float32_cases(rows, cols, False, seed=9)
    want = fx.requantize_int8(acc, m, s, zero_point=0, bounds=(-128, 127))
    avx2 = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"})
    for lanes, target in [(1, X86), (8, avx2)]:
        run, asm = _build_float32(rows, cols, False, lanes, 0, -128, 127, target)
        assert "rd-sae" not in asm
        assert int(np.count_nonzero(run(acc, m[:, 0], s[:, 0]) != want)) == 0, (lanes, str(target))


def test_float32_form_only_for_24_bit_multipliers_and_bounded_values():
    from fcos3d.compiler.requantize import FLOAT32_EXACT, float32_exact

    m24 = np.array([2**29, 1288490240])
    assert float32_exact(m24, FLOAT32_EXACT)
    assert not float32_exact(m24, FLOAT32_EXACT + 1)
    assert not float32_exact(m24, None)
    assert not float32_exact(np.array([2**29, 1288490189]), 100)  # a 31-bit multiplier (not ours)


def _int32_form_values(x: np.ndarray, odd: int, e: int) -> np.ndarray:
    """What emit_requantize_int32 emits, in int32 numpy (every intermediate checked to stay in int32)."""
    p = x.astype(np.int64) * odd
    q = p << e if e >= 0 else p + (1 << (-e - 1))
    assert p.min() >= INT32_MIN and p.max() <= INT32_MAX and q.min() >= INT32_MIN and q.max() <= INT32_MAX
    return q if e >= 0 else q >> -e


@pytest.mark.parametrize("zero_point", [0, 37, -128])
def test_int32_form_of_the_add_rescales_equals_requantize(zero_point):
    """An add's input rescales (docs/int8.md 4.4) as one int32 multiply, add and shift (requantize.int32_form):
    equal to fixedpoint.requantize on every int8 input, for 300 random scale triples; None where an
    intermediate would leave int32 (then the compiler keeps the int64 form)."""
    from fcos3d.compiler.requantize import int32_form

    rng = np.random.default_rng(abs(zero_point) + 5)
    lo, hi = fx.INT8_MIN - zero_point, fx.INT8_MAX - zero_point
    x = np.arange(lo, hi + 1, dtype=np.int64)
    used = refused = 0
    for scales in np.exp(rng.uniform(-7, 2, size=(300, 3))):
        r = fx.add_multipliers(*(float(s) for s in scales))
        for m, s in ((r.multiplier_a, r.shift_a), (r.multiplier_b, r.shift_b)):
            want = fx.requantize(x.astype(np.int32), m, s)
            form = int32_form(m, s, lo, hi)
            if form is None:
                refused += 1
                zeros = (m & -m).bit_length() - 1
                # refused only where the product nears int32's edge (or the shift is 31 and more)
                assert max(-lo, hi) * (m >> zeros) > 2**30 or s - 31 + zeros <= -31
                continue
            used += 1
            np.testing.assert_array_equal(_int32_form_values(x, *form), want)
    assert used >= 300  # the larger input of every add is a power of two (a left shift), at least
    if zero_point == 0:
        assert refused == 0  # symmetric: -128 <= x <= 127 and a 24-bit multiplier fit
    assert int32_form(2**30, 21, -128, 127) == (1, 20)  # the larger input: x << 20
    assert int32_form(2**31 - 1, 0, 0, 255) is None  # a 31-bit multiplier times 255 leaves int32
    assert int32_form((2**24 - 1) << 7, 0, -128, 127) == (2**24 - 1, -24)  # the largest 24-bit multiplier, symmetric
