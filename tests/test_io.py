"""Atomic writes: whole files or nothing, parents created, ordinary permissions, no temp files left."""

import json
import os

import pytest

from fcos3d.io import atomic_write_bytes, atomic_write_json


def test_atomic_write_replaces_and_cleans_up(tmp_path):
    path = tmp_path / "a" / "b" / "x.bin"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(path.parent) == ["x.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_write_json_failure_keeps_old_file(tmp_path):
    path = tmp_path / "m.json"
    atomic_write_json(path, {"a": 1.5}, indent=2)
    assert json.loads(path.read_text()) == {"a": 1.5}
    with pytest.raises(ValueError):
        atomic_write_json(path, {"a": float("nan")}, allow_nan=False)
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1.5}
    assert os.listdir(tmp_path) == ["m.json"]
