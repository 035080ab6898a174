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


def _build(rows: int, cols: int, per_lane: bool, lanes: int):
    """y = requantize(x) on (rows, cols) int32; constants per row (broadcast in each vector) or per element."""
    x = te.placeholder((rows, cols), "int32", name="x")
    shape = (rows, cols) if per_lane else (rows,)
    axes = (0, 1) if per_lane else (0,)
    m, ls, rs = (te.placeholder(shape, "int32", name=n) for n in ("m", "ls", "rs"))
    y = topi.fixed_point_multiply_per_axis(x, m, ls, rs, 0, 1, axes=axes)
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
            np.zeros(shape, np.int32),
            rs_,
            np.zeros((rows, cols), np.int32),
        ]
        arrs = [tvm.runtime.tensor(a) for a in args]
        lib(*arrs)
        return arrs[-1].numpy()

    return run


@pytest.mark.parametrize("lanes", [16, 8])
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
    got = _build(rows, cols, per_lane, lanes)(acc, m, s)
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
        assert lower_even_odd(with_lshift).same_as(with_lshift)  # left shifts keep TVM's lowering
        narrow = _vector_call(4, lshift=False)
        assert lower_even_odd(narrow).same_as(narrow)
    with even_odd_lowering(tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"})):
        assert lower_even_odd(call).same_as(call)  # NEON has no 64-bit lane multiply
