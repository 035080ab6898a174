"""Graph check run after every pass: the module is well formed and computes in integers only.

Float tensors anywhere (Relax bindings or TIR buffers) would mean some arithmetic left the bit-exact integer
contract of docs/int8.md; an int8 conv with the default int8 out_dtype would overflow its accumulator.
"""

from __future__ import annotations

from tvm import IRModule, relax, tirx

__all__ = ["INTEGER_DTYPES", "GraphCheckError", "check_integer"]

# int8 activations/weights, int32 accumulators and constants, int64 shapes and gather indices, bool flags.
INTEGER_DTYPES = frozenset({"int8", "int32", "int64", "bool"})


class GraphCheckError(ValueError):
    """A pass produced a module that breaks an invariant; the message names the pass and the functions."""


def _dtypes(ty) -> list[str]:
    if isinstance(ty, relax.TensorType):
        return [str(ty.dtype)] if str(ty.dtype) else []  # "" is an unknown dtype (not produced by our passes)
    if isinstance(ty, relax.TupleType):
        return [d for f in ty.fields for d in _dtypes(f)]
    return []


def _relax_problems(name: str, func: relax.Function) -> list[str]:
    problems = [
        f"{name}: parameter {getattr(p, 'name_hint', None) or p.name} is {d}"
        for p in func.params
        for d in _dtypes(p.ty)
        if d not in INTEGER_DTYPES
    ]

    def visit(expr):
        if isinstance(expr, relax.Binding) or not isinstance(expr, relax.Call):
            return
        op = getattr(expr.op, "name", "")
        if op in ("relax.nn.conv2d",) and str(expr.attrs.out_dtype) != "int32":
            problems.append(f"{name}: {op} has out_dtype {expr.attrs.out_dtype!s}, expected int32")
        for d in _dtypes(expr.ty) if expr.ty is not None else []:
            if d not in INTEGER_DTYPES:
                problems.append(f"{name}: {op or 'call'} produces {d}")

    relax.analysis.post_order_visit(func.body, visit)
    return problems


def _tir_problems(name: str, func: tirx.PrimFunc) -> list[str]:
    # TVM 0.27: PrimFunc params are the buffers themselves (their dtype is the element type).
    return [f"{name}: buffer {p.name} is {p.dtype}" for p in func.params if str(p.dtype) not in INTEGER_DTYPES]


def check_integer(mod: IRModule, after: str = "?") -> IRModule:
    """Raise ``GraphCheckError`` unless ``mod`` is well formed and integer-only; returns ``mod``."""
    if not relax.analysis.check_well_formed(mod):
        raise GraphCheckError(f"after pass {after!r}: the module is not well formed (relax.analysis.well_formed)")
    problems = []
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            problems += _relax_problems(gv.name_hint, func)
        elif isinstance(func, tirx.PrimFunc):
            problems += _tir_problems(gv.name_hint, func)
    if problems:
        raise GraphCheckError(f"after pass {after!r}: non-integer computation:\n  " + "\n  ".join(problems))
    return mod
