"""tuning: MetaSchedule with a kept database; the tuned module stays bit-exact and a second compile reuses it."""

from __future__ import annotations

import json
import time

import numpy as np
import onnx
import pytest
from qdq_graphs import QDQGraphBuilder

from fcos3d.compiler.tuning import Tuning


def test_tuning_options_are_checked_with_the_fix():
    with pytest.raises(ValueError, match="0"):
        Tuning(trials=-1)
    with pytest.raises(ValueError, match="--tuning-db"):
        Tuning(trials=8)


@pytest.mark.slow
def test_tuned_compile_is_exact_and_a_second_compile_reuses_the_database(tmp_path):
    from fcos3d.compiler.build import compile_onnx
    from fcos3d.runtime.execute import load_artifact
    from fcos3d.runtime.reference.simulator import Simulator

    b = QDQGraphBuilder(seed=5)
    y = b.conv(b.input((1, 8, 8, 12)), 16, kernel=1, pad=0, relu=True)
    b.output(b.conv(y, 16, kernel=3, groups=16, relu=True))
    onnx.save(b.build(), tmp_path / "g.onnx")
    db = tmp_path / "db"
    compile_onnx(tmp_path / "g.onnx", "host", tmp_path / "a", tune_trials=4, tuning_db=db)
    records = (db / "database_tuning_record.json").read_text().splitlines()
    assert records  # measured candidates were kept
    t = time.perf_counter()
    result = compile_onnx(tmp_path / "g.onnx", "host", tmp_path / "b", tune_trials=4, tuning_db=db)
    second = time.perf_counter() - t
    assert (db / "database_tuning_record.json").read_text().splitlines() == records  # nothing re-tuned
    assert second < 30 and json.loads((tmp_path / "b" / "meta.json").read_text())["tuning"]["trials"] == 4
    sim = Simulator(tmp_path / "g.onnx")
    x = np.random.default_rng(0).integers(-128, 128, size=(1, 8, 8, 12), dtype=np.int8)
    for folder in (tmp_path / "a", result.out_dir):
        got, want = load_artifact(folder).run(x), sim.run(x)
        assert all(np.array_equal(got[k], want[k]) for k in want)
