"""The import rules of the house (README "Layout", ../shared/ARCHITECTURE.md), read from the source with ast.

Every import statement of fcos3d/ counts, also the ones inside functions (heavy imports are made where they
are used, but they are still arrows between rooms). A forbidden arrow fails with its file and line.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fcos3d"
STDLIB = set(sys.stdlib_module_names) | {"__future__"}

# room: ("only", allowed module prefixes besides the standard library and the room itself)
#    or ("not", forbidden module prefixes).
RULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "fcos3d.errors": ("only", ()),
    "fcos3d.io": ("only", ()),
    "fcos3d.artifact": ("only", ("numpy", "fcos3d.errors", "fcos3d.io")),
    "fcos3d.boards": ("only", ("fcos3d.errors",)),
    "fcos3d.boxes": ("only", ("numpy",)),
    "fcos3d.int8": ("only", ("numpy", "onnx", "fcos3d.errors")),
    "fcos3d.runtime.reference": ("only", ("numpy", "fcos3d.int8", "fcos3d.boards", "fcos3d.errors")),
    "fcos3d.runtime": (
        "not",
        ("torch", "fcos3d.trainer", "fcos3d.quant", "fcos3d.model", "fcos3d.compiler", "fcos3d.synth", "fcos3d.cli"),
    ),
    "fcos3d.compiler": (
        "not",
        (
            "torch",
            "fcos3d.trainer",
            "fcos3d.quant",
            "fcos3d.model",
            "fcos3d.runtime",
            "fcos3d.data",
            "fcos3d.eval",
            "fcos3d.synth",
            "fcos3d.cli",
        ),
    ),
    "fcos3d.model": (
        "not",
        ("fcos3d.trainer", "fcos3d.quant", "fcos3d.compiler", "fcos3d.runtime", "fcos3d.cli", "fcos3d.synth", "tvm"),
    ),
    # quant builds on model (which reads the class list of fcos3d.data.classes), never on the rooms after it
    "fcos3d.quant": (
        "not",
        ("fcos3d.trainer", "fcos3d.compiler", "fcos3d.runtime", "fcos3d.cli", "fcos3d.synth", "fcos3d.eval", "tvm"),
    ),
    "fcos3d.data": (
        "not",
        (
            "fcos3d.trainer",
            "fcos3d.quant",
            "fcos3d.compiler",
            "fcos3d.runtime",
            "fcos3d.model",
            "fcos3d.eval",
            "fcos3d.synth",
            "fcos3d.cli",
            "tvm",
        ),
    ),
    "fcos3d.synth": (
        "not",
        (
            "torch",
            "fcos3d.trainer",
            "fcos3d.quant",
            "fcos3d.compiler",
            "fcos3d.runtime",
            "fcos3d.model",
            "fcos3d.eval",
            "fcos3d.cli",
            "tvm",
        ),
    ),
    "fcos3d.eval": (
        "not",
        (
            "torch",
            "fcos3d.trainer",
            "fcos3d.quant",
            "fcos3d.compiler",
            "fcos3d.runtime",
            "fcos3d.model",
            "fcos3d.synth",
            "fcos3d.cli",
            "tvm",
        ),
    ),
    "fcos3d.trainer": ("not", ("fcos3d.cli", "fcos3d.synth")),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in the file; relative imports resolved."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                # `from . import x` imports the submodule x
                found += [(f"{name}.{a.name}" if not node.module else name, node.lineno) for a in node.names]
            else:
                found.append((node.module, node.lineno))
    return found


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _room(module: str) -> str | None:
    """The most specific room of RULES that ``module`` belongs to."""
    rooms = [r for r in RULES if _under(module, r)]
    return max(rooms, key=len) if rooms else None


def _violations() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        room = _room(module)
        for name, line in _imports(path):
            where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
            if _under(name, "fcos3d.cli") and not _under(module, "fcos3d.cli"):
                bad.append(f"{where}: nothing imports the CLI")
            if room is None or _under(name, room):
                continue
            kind, names = RULES[room]
            if kind == "only":
                ok = name.split(".")[0] in STDLIB or any(_under(name, p) for p in names)
                if not ok:
                    bad.append(f"{where}: {room} may import only the standard library and {list(names)}")
            elif any(_under(name, p) for p in names):
                bad.append(f"{where}: {room} must not import {[p for p in names if _under(name, p)][0]}")
    return bad


def test_every_import_follows_the_house_rules():
    bad = _violations()
    assert not bad, "forbidden imports:\n" + "\n".join(bad)


def test_the_rule_checker_sees_a_forbidden_arrow(tmp_path, monkeypatch):
    """The checker itself can fail: a room importing a forbidden one is reported with file and line."""
    pkg = tmp_path / "fcos3d"
    (pkg / "compiler").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "compiler" / "__init__.py").write_text("")
    (pkg / "compiler" / "bad.py").write_text(
        "import os\n\n\ndef f():\n    from ..trainer import stages\n    import torch\n"
    )
    (pkg / "boxes.py").write_text("from .io import atomic_write_json\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    bad = _violations()
    assert any("compiler/bad.py:5 imports fcos3d.trainer" in b for b in bad), bad
    assert any("compiler/bad.py:6 imports torch" in b for b in bad), bad
    assert any("boxes.py:1 imports fcos3d.io" in b for b in bad), bad
    assert not any(":1 imports os" in b for b in bad)


@pytest.mark.parametrize(
    "module, heavy",
    [
        ("fcos3d.cli.main", ("torch", "tvm", "nuscenes", "onnx", "matplotlib")),  # `fcos3d --help` starts fast
        ("fcos3d.cli.compile", ("torch", "tvm")),
        ("fcos3d.runtime.execute", ("torch",)),
        ("fcos3d.runtime.validate", ("torch",)),
        ("fcos3d.int8", ("torch", "tvm")),
    ],
)
def test_heavy_packages_are_imported_where_used(module, heavy):
    code = f"import sys, {module}; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing {module} pulled in {out}"
