"""compile_onnx writes an artifact whole or not at all: a temp folder beside the target, meta.json last with the
sha256 of every file, one rename. A failed recompile leaves the previous artifact loadable; a folder that is not
an artifact is never replaced."""

from __future__ import annotations

import json
import os

import onnx
import pytest
from rpc_servers import random_inputs, small_model, write_artifact

from fcos3d.artifact import ArtifactError
from fcos3d.compiler import build
from fcos3d.io import sha256_file
from fcos3d.runtime.execute import load_artifact


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """(onnx path, artifact folder) of small_model(0) for host."""
    return write_artifact(tmp_path_factory.mktemp("build"), "host")


def _only(folder):
    return sorted(os.listdir(folder))


def test_meta_records_the_sha256_of_every_file(compiled):
    _, art = compiled
    meta = json.loads((art / "meta.json").read_text())
    assert sorted(meta["files"]) == sorted(n for n in os.listdir(art) if n != "meta.json")
    for name, digest in meta["files"].items():
        assert sha256_file(art / name) == digest
    assert _only(art.parent) == ["host", "model.onnx"]  # no temp folder beside it


def test_failed_recompile_keeps_the_previous_artifact(compiled, tmp_path, monkeypatch):
    onnx_path, art = compiled
    out = tmp_path / "art"
    build.compile_onnx(onnx_path, "host", out)
    before = {n: sha256_file(out / n) for n in os.listdir(out)}

    def link_fails(executable, path, board):
        path.write_bytes(b"\x7fELF half a library")  # what a failed link leaves behind
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(build, "export_library", link_fails)
    other = tmp_path / "other.onnx"
    onnx.save(small_model(seed=1), other)
    with pytest.raises(OSError, match="No space left"):
        build.compile_onnx(other, "host", out)
    assert {n: sha256_file(out / n) for n in os.listdir(out)} == before
    assert _only(tmp_path) == ["art", "other.onnx"]
    load_artifact(out, onnx_path=onnx_path).run(random_inputs(1)[0])


def test_recompile_replaces_the_whole_folder(compiled, tmp_path):
    onnx_path, art = compiled
    out = tmp_path / "art"
    build.compile_onnx(onnx_path, "host", out)
    (out / "ir-after-fuse.py").write_text("# a dump of an earlier compile\n")
    other = tmp_path / "other.onnx"
    onnx.save(small_model(seed=1), other)
    build.compile_onnx(other, "host", out)
    assert "ir-after-fuse.py" not in os.listdir(out)
    assert _only(tmp_path) == ["art", "other.onnx"]
    load_artifact(out, onnx_path=other)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: (p.mkdir(), (p / "notes.txt").write_text("mine")), r"holds no meta\.json \(e\.g\. notes\.txt\)"),
        (lambda p: p.write_text("a file"), r"exists and is not an artifact folder"),
    ],
)
def test_a_folder_that_is_not_an_artifact_is_never_replaced(compiled, tmp_path, make, match):
    onnx_path, _ = compiled
    out = tmp_path / "out"
    make(out)
    with pytest.raises(ArtifactError, match=match):
        build.compile_onnx(onnx_path, "host", out)
    assert _only(tmp_path) == ["out"]


def test_a_foreign_file_inside_an_artifact_is_never_deleted(compiled, tmp_path):
    onnx_path, _ = compiled
    out = tmp_path / "art"
    build.compile_onnx(onnx_path, "host", out)
    (out / "my-results.csv").write_text("keep me")
    with pytest.raises(ArtifactError, match=r"my-results\.csv is not part of the artifact"):
        build.compile_onnx(onnx_path, "host", out)
    assert (out / "my-results.csv").read_text() == "keep me"
