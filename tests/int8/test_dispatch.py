"""Every executor is a dict from op class to implementation; an op it lacks is one error naming op and executor.

A fake op class (Softmax) is given to the simulator, the torch int model, the TVM import and the QDQ writer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from fcos3d.errors import Fcos3dError
from fcos3d.int8.dispatch import MissingOpError, check_supported, implementation
from fcos3d.int8.ops import OP_CLASSES, GraphInput, GraphOutput, IntGraph


@dataclass(frozen=True, eq=False)
class Softmax:
    """An op no executor knows."""

    name: str
    input: str
    output: str

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    def output_shape(self, x: tuple[int, ...]) -> tuple[int, ...]:
        return x


def _graph(output_dtype: str = "int8") -> IntGraph:
    x = GraphInput("x", "x", 1 / 128, False, (1, 2, 4, 4))
    y = GraphOutput("y", "y", output_dtype, np.array([1 / 128]))
    return IntGraph((x,), (Softmax("soft", "x", "y"),), (y,), {"x": 1 / 128, "y": 1 / 128})


def _expect(executor: str):
    """``executor``: a regex for the executor's name as the message gives it."""
    return pytest.raises(MissingOpError, match=rf"^{executor} has no implementation of Softmax \(node 'soft'\)")


def test_the_helper_names_op_class_node_and_executor():
    table = {int: abs}
    with _expect("my executor") as info:
        implementation(table, Softmax("soft", "x", "y"), "my executor")
    assert isinstance(info.value, Fcos3dError) and info.value.op_class is Softmax and info.value.op_names == ["soft"]
    assert "it implements int" in str(info.value)
    with _expect("my executor"):
        check_supported(table, [Softmax("soft", "x", "y")], "my executor")
    check_supported(table, [1, 2], "my executor")  # all known: no error


def test_simulator():
    from fcos3d.runtime.reference.simulator import Simulator, run_op

    with _expect(r"the numpy simulator \(fcos3d\.runtime\.reference\.simulator\)"):
        Simulator(_graph())
    with _expect(r"the numpy simulator \(fcos3d\.runtime\.reference\.simulator\)"):
        run_op(Softmax("soft", "x", "y"), np.zeros((1, 2, 4, 4), np.int8))


def test_torch_int_model():
    from fcos3d.quant.intmodel import IntModel

    with _expect(r"the torch int model \(fcos3d\.quant\.intmodel\)"):
        IntModel(_graph("int32"), strides=(8,), output_heads=("cls_score",))


def test_tvm_import():
    from fcos3d.compiler.passes.import_int_graph import import_int_graph

    with _expect(r"the TVM import \(fcos3d\.compiler\.passes\.import_int_graph\)"):
        import_int_graph(_graph())


def test_qdq_writer():
    from fcos3d.int8.writer import write_qdq

    with _expect(r"the QDQ writer \(fcos3d\.int8\.writer\)"):
        write_qdq(_graph())


def test_every_executor_implements_every_op_class():
    """The tables themselves: the simulator and the TVM import have every op class of fcos3d.int8.ops; the torch
    int model and the QDQ writer have the five the QAT trace makes (docs/int8.md 7: the others are MissingOpError)."""
    from fcos3d.compiler.passes import import_int_graph
    from fcos3d.int8 import writer
    from fcos3d.int8.ops import Add, Concat, Conv, MaxPool, ResizeNearest
    from fcos3d.quant import intmodel
    from fcos3d.runtime.reference import simulator

    for table in (simulator._KERNELS, import_int_graph._EMITTERS):
        assert set(table) == set(OP_CLASSES)
    for table in (intmodel._IMPLS, writer._WRITERS):
        assert set(table) == {Conv, Add, ResizeNearest, MaxPool, Concat}
