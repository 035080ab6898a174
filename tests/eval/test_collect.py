"""The collector's result file: the official result JSON, written atomically as strict JSON."""

import json

import numpy as np
import pytest

from fcos3d.boxes.results import GlobalBoxes, build_result_json
from fcos3d.data.classes import ATTRIBUTES, CLASSES, DEFAULT_ATTRIBUTE, NO_ATTRIBUTE
from fcos3d.eval.collect import write_result_json


def _build(per_sample, tokens, **kw):
    return build_result_json(per_sample, tokens, CLASSES, ATTRIBUTES, DEFAULT_ATTRIBUTE, **kw)


def test_write_result_json_is_strict_and_atomic(tmp_path):
    boxes = GlobalBoxes(
        np.zeros((1, 3)), np.ones((1, 3)), [[1.0, 0, 0, 0]], [[np.nan, 1.0]], [0.5], [0], [NO_ATTRIBUTE]
    )
    result = _build({"s": boxes}, ["s", "t"])
    path = write_result_json(result, tmp_path / "out" / "results.json")
    assert json.loads(path.read_text()) == result
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp file left behind
    with pytest.raises(ValueError):
        write_result_json({"x": float("nan")}, path)
    assert json.loads(path.read_text()) == result  # a failed write leaves the old file
