"""How an executor finds its implementation of an op: one explicit dict from op class to function.

``implementation`` looks one op up; ``check_supported`` checks a whole graph before it runs. Both raise
``MissingOpError`` naming the op class, the op and the executor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from fcos3d.errors import Fcos3dError

__all__ = ["MissingOpError", "implementation", "check_supported"]


class MissingOpError(Fcos3dError, NotImplementedError):
    """An executor has no implementation of an op class. ``executor``, ``op_class`` and ``op_names`` say which."""

    def __init__(self, executor: str, op_class: type, op_names: list[str], table: Mapping[type, Callable]):
        self.executor, self.op_class, self.op_names = executor, op_class, list(op_names)
        shown = ", ".join(repr(n) for n in self.op_names[:3]) + (" ..." if len(self.op_names) > 3 else "")
        known = ", ".join(sorted(c.__name__ for c in table))
        super().__init__(
            f"{executor} has no implementation of {op_class.__name__} (node {shown}); it implements {known}: "
            f"add {op_class.__name__} to its table or run the graph with an executor that has it"
        )


def implementation(table: Mapping[type, Callable], op: object, executor: str) -> Callable:
    """``table[type(op)]``, or ``MissingOpError`` naming the op and ``executor``."""
    fn = table.get(type(op))
    if fn is None:
        raise MissingOpError(executor, type(op), [getattr(op, "name", "?")], table)
    return fn


def check_supported(table: Mapping[type, Callable], ops: Iterable[object], executor: str) -> None:
    """Every op of ``ops`` has an entry in ``table``, else ``MissingOpError`` for the first missing class
    (listing all of its nodes)."""
    missing: dict[type, list[str]] = {}
    for op in ops:
        if type(op) not in table:
            missing.setdefault(type(op), []).append(getattr(op, "name", "?"))
    if missing:
        cls, names = next(iter(missing.items()))
        raise MissingOpError(executor, cls, names, table)
