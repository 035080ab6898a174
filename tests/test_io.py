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


def test_atomic_dir_replaces_a_folder_whole_and_cleans_up(tmp_path):
    from fcos3d.io import atomic_dir

    target = tmp_path / "out"
    with atomic_dir(target) as d:
        (d / "a").write_text("one")
    with atomic_dir(target) as d:
        (d / "b").write_text("two")
    assert os.listdir(target) == ["b"] and os.listdir(tmp_path) == ["out"]
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "c").write_text("half")
            raise RuntimeError("failed mid-way")
    assert os.listdir(target) == ["b"] and os.listdir(tmp_path) == ["out"]


def test_atomic_dir_refuses_a_file_in_the_way(tmp_path):
    from fcos3d.io import atomic_dir

    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(NotADirectoryError):
        with atomic_dir(tmp_path / "out"):
            pass
    assert (tmp_path / "out").read_text() == "not a folder"


def test_clean_stale_removes_dead_temps_and_restores_an_old_folder(tmp_path):
    from fcos3d.io import clean_stale

    target = tmp_path / "out"
    (tmp_path / ".out.old-999999999-x").mkdir()  # killed between the two renames: the target is missing
    (tmp_path / ".out.old-999999999-x" / "model.so").write_text("old")
    (tmp_path / ".out.tmp-999999999-y").mkdir()
    (tmp_path / ".out.tmp-1-z").mkdir()  # pid 1 (init) is alive: its writer may still be at work, kept
    (tmp_path / ".other.tmp-999999999-w").write_text("another target's")
    clean_stale(target)
    assert (target / "model.so").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == sorted([".other.tmp-999999999-w", "out", ".out.tmp-1-z"])


def test_a_failed_write_names_the_file(tmp_path, monkeypatch):
    import errno

    from fcos3d.io import atomic_write_bytes

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as e:
        atomic_write_bytes(tmp_path / "x.bin", b"data")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "x.bin")
    assert os.listdir(tmp_path) == []
