"""A small builder over tosa-tools' flatbuffer serializer: named tensors, constants, TOSA 1.0 ops.

The emitter (emit.py) speaks only to this class. Constants are written with numpy (the serializer's own path
converts every value through Python objects, minutes for a full-size network); the file is TOSA 1.0.0, non-draft
(the serializer defaults to 1.1.0-draft, which Vela's TOSA 1.0 reader rejects: notes/npu.md).
"""

from __future__ import annotations

import re
import warnings

import numpy as np

from fcos3d.errors import Fcos3dError

__all__ = ["TosaToolsMissingError", "TosaWriter", "tosa_modules"]

TOSA_VERSION = (1, 0, 0)


class TosaToolsMissingError(Fcos3dError, ImportError):
    """tosa-tools is not installed in this Python environment."""


def tosa_modules():
    """``(tosa_serializer module, DType, Op, RoundingMode, ResizeMode, NanPropagationMode)``, or one error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # `serializer` is the pure-Python serializer
            from serializer import tosa_serializer as ts
        from tosa.DType import DType
        from tosa.NanPropagationMode import NanPropagationMode
        from tosa.Op import Op
        from tosa.ResizeMode import ResizeMode
        from tosa.RoundingMode import RoundingMode
    except ImportError as e:
        raise TosaToolsMissingError(
            f"the TOSA serializer is not importable ({e}): install tosa-tools==2026.8.0 (pyproject.toml pins it; "
            "`make setup` installs it)"
        ) from None
    return ts, DType, Op, RoundingMode, ResizeMode, NanPropagationMode


_NAME_OK = re.compile(r"[^A-Za-z0-9_.-]")


class TosaWriter:
    """One TOSA graph (one region, one basic block "main") being built.

    ``tensor(name, shape, dtype)`` declares an intermediate; ``const`` a constant (fast numpy serialisation);
    ``op(opcode, inputs, outputs, attr)`` adds an operator; ``serialize()`` gives the .tosa bytes. ``dtype`` is
    one of "int8", "int16", "int32", "bool". Names are made safe for the reference model's comma-separated
    command line (``fresh``).
    """

    def __init__(self):
        ts, self.DType, self.Op, self.RoundingMode, self.ResizeMode, self.NanMode = tosa_modules()
        self._ts = ts
        major, minor, patch = TOSA_VERSION
        self.ser = ts.TosaSerializer(
            "",
            tosa_version_major=major,
            tosa_version_minor=minor,
            tosa_version_patch=patch,
            tosa_version_draft=False,
        )
        self.block = self.ser.currRegion.currBasicBlock
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, str] = {}
        self._used: set[str] = set()
        self._const_cache: dict[tuple, str] = {}
        # Which op of the int8 graph each TOSA tensor was written for (Vela's per-op rows map back through it).
        self.current_op = ""
        self.owner: dict[str, str] = {}

    # -- names and tensors --------------------------------------------------------------------------------

    def fresh(self, base: str) -> str:
        """A unique tensor name derived from ``base`` ([A-Za-z0-9_.-] only)."""
        name = _NAME_OK.sub("_", base) or "t"
        k, out = 1, name
        while out in self._used:
            k += 1
            out = f"{name}_{k}"
        self._used.add(out)
        return out

    def _dtype(self, dtype: str) -> int:
        return {"int8": self.DType.INT8, "int16": self.DType.INT16, "int32": self.DType.INT32}[dtype]

    def tensor(self, base: str, shape: tuple[int, ...], dtype: str) -> str:
        name = self.fresh(base)
        self.block.addTensor(name, list(shape), self._dtype(dtype))
        self.shapes[name], self.dtypes[name] = tuple(int(d) for d in shape), dtype
        if self.current_op:
            self.owner[name] = self.current_op
        return name

    def input(self, base: str, shape: tuple[int, ...], dtype: str) -> str:
        name = self.tensor(base, shape, dtype)
        self.block.addInput(name)
        return name

    def output(self, name: str) -> None:
        self.block.addOutput(name)

    def const(self, base: str, values: np.ndarray, dtype: str, cache: bool = False) -> str:
        """A CONST tensor holding ``values`` (cast to ``dtype``, C order). ``cache``: share equal small constants."""
        arr = np.ascontiguousarray(np.asarray(values).astype({"int8": np.int8, "int32": np.int32}[dtype]))
        key = (dtype, arr.shape, arr.tobytes()) if cache else None
        if key is not None and key in self._const_cache:
            return self._const_cache[key]
        name = self.fresh(base)
        self.block.tensors[name] = _NumpyTensor(self._ts, name, arr, self._dtype(dtype))
        self.block.addOperator(self.Op.CONST, [], [name])
        self.shapes[name], self.dtypes[name] = arr.shape, dtype
        if key is not None:
            self._const_cache[key] = name
        return name

    def shape_const(self, base: str, values) -> str:
        """A CONST_SHAPE (TOSA 1.0 shape operand: resize scale/offset/border, reshape shape, slice start/size)."""
        vals = [int(v) for v in values]
        name = self.fresh(base)
        self.block.addShape(name, len(vals), vals)
        self.block.addOperator(self.Op.CONST_SHAPE, [], [name])
        return name

    def zero_point(self, value: int, dtype: str) -> str:
        """The shape-[1] zero-point operand TOSA 1.0 takes as a tensor (notes/npu.md)."""
        return self.const(f"zp_{dtype}_{int(value)}".replace("-", "m"), np.array([int(value)]), dtype, cache=True)

    # -- operators ----------------------------------------------------------------------------------------

    def attr(self):
        return self._ts.TosaSerializerAttribute()

    def op(self, opcode: int, inputs: list[str], outputs: list[str], attr=None) -> None:
        self.block.addOperator(opcode, list(inputs), list(outputs), attr)

    def clamp_attr(self, lo: int, hi: int, dtype: str):
        a = self.attr()
        np_type = {"int8": np.int8, "int32": np.int32}[dtype]
        a.ClampAttribute(
            self.ser.builder,
            list(np_type(lo).tobytes()),
            list(np_type(hi).tobytes()),
            self.NanMode.PROPAGATE,
        )
        return a

    def serialize(self) -> bytes:
        return bytes(self.ser.serialize())


class _NumpyTensor:
    """A constant tensor whose data is serialised from numpy bytes in one call (CreateNumpyVector)."""

    def __init__(self, ts, name: str, arr: np.ndarray, dtype: int):
        self.name, self.shape, self.dtype, self._arr = name, list(arr.shape), dtype, arr
        self.data = arr  # truthy for the serializer's bookkeeping; never converted element by element
        self.is_unranked = self.is_variable = False
        self.variable_name = None
        self.placeholderFilename = None
        self._ts = ts

    def serialize(self, builder):
        from tosa import TosaTensor

        fb_name = builder.CreateString(self.name)
        fb_shape = self._ts.TosaSerializer.serializeInt32Vec(builder, self.shape)
        raw = self._arr.astype(self._arr.dtype.newbyteorder("<")).tobytes()
        # As the serializer's serializeUint8Vec lays it out (bytes, 8-byte aligned), with one copy.
        builder.StartVector(1, len(raw), 8)
        builder.head = builder.Head() - len(raw)
        builder.Bytes[builder.Head() : builder.Head() + len(raw)] = raw
        builder.vectorNumElems = len(raw)
        fb_data = builder.EndVector()
        TosaTensor.Start(builder)
        TosaTensor.AddName(builder, fb_name)
        TosaTensor.AddShape(builder, fb_shape)
        TosaTensor.AddType(builder, self.dtype)
        TosaTensor.AddIsUnranked(builder, False)
        TosaTensor.AddVariable(builder, False)
        TosaTensor.AddData(builder, fb_data)
        return TosaTensor.End(builder)
