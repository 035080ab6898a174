"""The TOSA tests import the QDQ graph builders (tests/runtime), the zoo and the golden cases (tests/int8)."""

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TESTS / "runtime"))  # qdq_graphs.py
sys.path.insert(0, str(TESTS / "int8"))  # zoo.py, golden_cases.py
