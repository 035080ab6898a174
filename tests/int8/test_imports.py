"""ARCHITECTURE.md: fcos3d/int8 is the contract every executor reads, so it imports only numpy, onnx, the standard
library, itself and fcos3d.errors (no torch, no tvm, no other room)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import fcos3d.int8


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("fcos3d.int8" if node.level else node.module)
    return names


def test_int8_imports_only_numpy_onnx_and_the_standard_library():
    files = sorted(Path(fcos3d.int8.__file__).parent.glob("*.py"))
    assert {f.name for f in files} >= {"ops.py", "fixedpoint.py", "reader.py", "writer.py", "dispatch.py"}
    for path in files:
        for name in _imports(path):
            root = name.split(".")[0]
            ok = (
                root in sys.stdlib_module_names
                or root in ("numpy", "onnx")
                or name.startswith("fcos3d.int8")
                or name == "fcos3d.errors"
            )
            assert ok, (path.name, name)
