"""Shared helpers of the TOSA tests: skip when the tools are missing, and the reference model vs simulator check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _missing_tools() -> str:
    """Why the TOSA tests cannot run here ('' when they can)."""
    try:
        from fcos3d.compiler.tosa.writer import tosa_modules
        from fcos3d.runtime.tosa_reference import reference_model_executable

        tosa_modules()
        reference_model_executable()
    except Exception as e:  # TosaToolsMissingError, TosaReferenceMissingError
        return str(e)
    return ""


def _missing_vela() -> str:
    try:
        from fcos3d.compiler.tosa.vela import vela_ini

        vela_ini()
    except Exception as e:
        return str(e)
    return ""


MISSING, MISSING_VELA = _missing_tools(), _missing_vela()
requires_tosa = pytest.mark.skipif(bool(MISSING), reason=f"tosa-tools missing: {MISSING}")
requires_vela = pytest.mark.skipif(
    bool(MISSING or MISSING_VELA), reason=f"tosa-tools or Vela missing: {MISSING or MISSING_VELA}"
)


def emit_and_load(graph, folder: Path, name: str = "model"):
    """Emit ``graph`` to folder/<name>.tosa and open it on the reference model."""
    from fcos3d.compiler.tosa.emit import emit_tosa
    from fcos3d.runtime.tosa_reference import TosaReferenceModel

    program = emit_tosa(graph)
    path = program.write(Path(folder) / f"{name}.tosa")
    return TosaReferenceModel(path, program.io)


def mismatches(sim, ref, xs) -> tuple[int, int, list[str]]:
    """(differing elements, compared elements, one line per differing output) of the reference model against
    the simulator over the inputs ``xs``; a dtype or shape difference counts every element."""
    bad = total = 0
    lines = []
    for x in xs:
        want, got = sim.run(x), ref.run(x)
        for name, w in want.items():
            g = got[name]
            n = int(np.count_nonzero(g != w)) if (g.shape == w.shape and g.dtype == w.dtype) else w.size
            if n:
                lines.append(f"{name}: {n}/{w.size} differ ({g.dtype}{g.shape} vs {w.dtype}{w.shape})")
            bad += n
            total += w.size
    return bad, total, lines
