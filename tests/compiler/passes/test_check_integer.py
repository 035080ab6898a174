"""check_integer: accepts the integer modules our passes make, rejects float arithmetic."""

from __future__ import annotations

import pytest
from tvm import relax

from fcos3d.compiler.passes.check_integer import GraphCheckError, check_integer


def _module(dtype: str, out_dtype: str):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape=(1, 2, 4, 4), dtype=dtype))
    w = relax.const(__import__("numpy").ones((2, 2, 1, 1), dtype=dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_output(relax.op.nn.conv2d(x, w, out_dtype=out_dtype))
        bb.emit_func_output(y)
    return bb.get()


def test_integer_module_passes():
    mod = _module("int8", "int32")
    assert check_integer(mod) is mod
    assert check_integer(relax.transform.LegalizeOps()(mod)) is not None


@pytest.mark.parametrize(
    ("dtype", "out_dtype", "message"),
    [
        ("float32", "float32", "float32"),
        ("int8", "int8", "out_dtype int8"),  # an int8 accumulator would overflow
    ],
)
def test_float_or_narrow_accumulator_is_rejected(dtype, out_dtype, message):
    with pytest.raises(GraphCheckError, match=message):
        check_integer(_module(dtype, out_dtype), after="test")
