"""Write the int8 golden: tests/golden/int8/tiny_fcos3d_int8.onnx and the hashes of its integer outputs.

    .venv/bin/python scripts/make_int8_golden.py            # writes both files
    .venv/bin/python scripts/make_int8_golden.py --check    # recomputes, compares, writes nothing

The ONNX is a small seeded FCOS3D (tests/int8/golden_model.py: narrow MBConv backbone, BiFPN, FCOS3D head)
calibrated as the quant tests (tests/quant/quant_fixtures.py), converted to QAT, traced to the int model
(QAT2Quantize) and exported (export_qdq_onnx) for a (1, 3, 48, 80) input. The JSON holds, for every input of
tests/int8/golden_cases.py, the dtype, shape and sha256 of every output of the numpy simulator and of the
module compiled for board "host"; the two must be equal. A refactor that keeps every integer keeps both files.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "int8"))

from golden_cases import ONNX_PATH, OUTPUTS_PATH, golden_inputs, output_hashes  # noqa: E402
from golden_model import GOLDEN_SHAPE as INPUT_SHAPE  # noqa: E402
from golden_model import golden_int_model  # noqa: E402


def simulator_hashes(onnx_path: Path) -> dict:
    from fcos3d.runtime.reference.simulator import Simulator

    sim = Simulator(str(onnx_path))
    return {case: output_hashes(sim.run(x)) for case, x in golden_inputs(INPUT_SHAPE).items()}


def compiled_hashes(onnx_path: Path) -> dict:
    from fcos3d.compiler.build import compile_onnx
    from fcos3d.runtime.execute import load_artifact

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "artifact"
        compile_onnx(onnx_path, "host", out)
        art = load_artifact(out, onnx_path=onnx_path)
        return {case: output_hashes(art.run(x)) for case, x in golden_inputs(INPUT_SHAPE).items()}


def _dumps(doc: dict) -> str:
    """JSON with one line per output array (dtype, sha256, shape), keys sorted: small, readable diffs."""
    one_line = lambda m: json.dumps(json.loads(m[0]), sort_keys=True)  # noqa: E731
    pattern = r"\{\s*\"dtype\": \"\w+\",\s*\"sha256\": \"\w+\",\s*\"shape\": \[[\d,\s]*\]\s*\}"
    return re.sub(pattern, one_line, json.dumps(doc, indent=1, sort_keys=True)) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = ap.parse_args()
    from fcos3d.quant.export import export_qdq_onnx

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / ONNX_PATH.name
        export_qdq_onnx(golden_int_model(), INPUT_SHAPE, onnx_path)
        sim, compiled = simulator_hashes(onnx_path), compiled_hashes(onnx_path)
        if sim != compiled:
            raise SystemExit("the simulator and the compiled module disagree: no golden written")
        doc = {
            "description": "sha256 of the raw outputs of tests/golden/int8/tiny_fcos3d_int8.onnx per input of "
            "tests/int8/golden_cases.py, equal for the numpy simulator and the module compiled for 'host'; "
            "made by scripts/make_int8_golden.py",
            "input_shape": list(INPUT_SHAPE),
            "simulator": sim,
            "compiled_host": compiled,
        }
        text = _dumps(doc)
        data = onnx_path.read_bytes()
    if args.check:
        same_onnx = ONNX_PATH.read_bytes() == data
        same_json = OUTPUTS_PATH.read_text() == text
        print(f"onnx identical: {same_onnx}; outputs identical: {same_json}")
        raise SystemExit(0 if same_onnx and same_json else 1)
    ONNX_PATH.parent.mkdir(parents=True, exist_ok=True)
    ONNX_PATH.write_bytes(data)
    OUTPUTS_PATH.write_text(text)
    print(f"wrote {ONNX_PATH} ({len(data)} bytes) and {OUTPUTS_PATH}")


if __name__ == "__main__":
    main()
