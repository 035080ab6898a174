"""The fixed inputs and the output hashes of the int8 golden (scripts/make_int8_golden.py, test_golden.py).

One place defines both, so the script that writes tests/golden/int8/*.json and the test that reads it agree.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "int8"
ONNX_PATH = GOLDEN_DIR / "tiny_fcos3d_int8.onnx"
OUTPUTS_PATH = GOLDEN_DIR / "tiny_fcos3d_outputs.json"
SEED = 20240601


def golden_inputs(shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """{case name: int8 (N, C, H, W)}: seeded random, all 127, all -128, a +127/-128 checkerboard."""
    rng = np.random.default_rng(SEED)
    n, c, h, w = shape
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    board = np.where((yy + xx) % 2 == 0, 127, -128).astype(np.int8)  # (H, W)
    return {
        "random": rng.integers(-128, 128, size=shape, dtype=np.int8),
        "all_127": np.full(shape, 127, dtype=np.int8),
        "all_-128": np.full(shape, -128, dtype=np.int8),
        "checkerboard": np.ascontiguousarray(np.broadcast_to(board, shape)),
    }


def output_hashes(outputs: dict[str, np.ndarray]) -> dict[str, dict]:
    """{output name: {dtype, shape, sha256 of the C-order bytes}}, names sorted."""
    return {
        name: {
            "dtype": str(a.dtype),
            "shape": list(a.shape),
            "sha256": hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest(),
        }
        for name, a in sorted(outputs.items())
    }
