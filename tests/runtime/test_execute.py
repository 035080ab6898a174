"""Tests of fcos3d/runtime/execute.py run locally: bit-exact with the simulator, and clear errors for artifacts
whose meta.json and model.so do not belong together (truncated library, wrong sha, wrong board, missing output)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from rpc_servers import random_inputs, write_artifact

from fcos3d.errors import Fcos3dError
from fcos3d.runtime.execute import ArtifactError, load_artifact, parse_device, read_elf
from fcos3d.runtime.reference.simulator import Simulator


@pytest.fixture(scope="module")
def host_artifact(tmp_path_factory):
    """(onnx path, artifact folder) of rpc_servers.small_model compiled for host."""
    return write_artifact(tmp_path_factory.mktemp("exec"), "host")


@pytest.fixture
def copy_of(host_artifact, tmp_path):
    """A fresh copy of the host artifact folder, to break."""
    dst = tmp_path / "art"
    shutil.copytree(host_artifact[1], dst)
    return dst


def _edit_meta(folder, edit):
    meta = json.loads((folder / "meta.json").read_text())
    edit(meta)
    (folder / "meta.json").write_text(json.dumps(meta))


def test_local_run_equals_simulator(host_artifact):
    onnx_path, folder = host_artifact
    art = load_artifact(folder, onnx_path=onnx_path)
    sim = Simulator(onnx_path)
    assert art.device == "local" and art.output_names == sim.output_names
    assert [o["dtype"] for o in art.meta["outputs"]] == ["int8", "int32"]
    for x in random_inputs(3):
        got, want = art.run(x), sim.run(x)
        assert list(got) == list(want)
        for name in want:
            assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape
            np.testing.assert_array_equal(got[name], want[name])


def test_read_elf_names_the_machine(host_artifact):
    import platform

    info = read_elf(host_artifact[1] / "model.so")
    assert info.arch == platform.machine() and info.is_64 and info.needed_bytes <= info.size


def test_truncated_library(copy_of):
    lib = copy_of / "model.so"
    data = lib.read_bytes()
    lib.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=r"model\.so: truncated library .*fcos3d-compile"):
        load_artifact(copy_of)
    lib.write_bytes(data[:30])
    with pytest.raises(ArtifactError, match=r"model\.so: not an ELF"):
        load_artifact(copy_of)


def test_missing_library(copy_of):
    (copy_of / "model.so").unlink()
    with pytest.raises(ArtifactError, match=r"model\.so is missing; recompile with fcos3d-compile"):
        load_artifact(copy_of)


def test_wrong_onnx_sha(copy_of, host_artifact):
    _edit_meta(copy_of, lambda m: m["onnx"].update(sha256="0" * 64))
    # meta.json's own ONNX path is still there: checked without being asked
    with pytest.raises(
        ArtifactError, match=r"meta\.json was compiled from an ONNX with sha256 000000000000.*fcos3d-compile"
    ):
        load_artifact(copy_of)
    with pytest.raises(ArtifactError, match="model.onnx"):
        load_artifact(copy_of, onnx_path=host_artifact[0])


def test_onnx_moved_away_is_not_checked(copy_of):
    _edit_meta(copy_of, lambda m: m["onnx"].update(path="/nonexistent/model.onnx", sha256="0" * 64))
    load_artifact(copy_of)  # an artifact copied to a board folder without its ONNX still loads


def test_wrong_board(copy_of):
    # meta.json claims the Arm board, the library is this machine's
    _edit_meta(copy_of, lambda m: (m.update(board="cortex-a55"), m["target"].update(mtriple="aarch64-linux-gnu")))
    with pytest.raises(ArtifactError, match=r"x86_64 library but .*meta\.json says board 'cortex-a55'.*fcos3d-compile"):
        load_artifact(copy_of)


def test_expected_board(copy_of):
    with pytest.raises(ArtifactError, match=r"compiled for board 'host', not 'cortex-a55'.*--target cortex-a55"):
        load_artifact(copy_of, board="cortex-a55")


def test_missing_output(copy_of):
    _edit_meta(copy_of, lambda m: m["outputs"].pop())
    art = load_artifact(copy_of)
    with pytest.raises(ArtifactError, match=r"meta\.json lists 1 outputs, model\.so returns 2.*fcos3d-compile"):
        art.run(random_inputs(1)[0])


def test_output_fields_checked(copy_of):
    _edit_meta(copy_of, lambda m: m["outputs"][1].pop("dtype"))
    with pytest.raises(ArtifactError, match=r"outputs\[1\] lacks \['dtype'\]"):
        load_artifact(copy_of)


def test_other_tvm_version(copy_of):
    _edit_meta(copy_of, lambda m: m["versions"].update({"apache-tvm": "0.19.0"}))
    with pytest.raises(
        ArtifactError, match=r"compiled with apache-tvm 0\.19\.0, this machine has .*apache-tvm==0\.19\.0"
    ):
        load_artifact(copy_of)


def test_errors_are_fcos3d_errors(copy_of):
    (copy_of / "meta.json").write_text("{")
    with pytest.raises(Fcos3dError, match="not valid JSON"):
        load_artifact(copy_of)


def test_arm_library_is_refused_locally(tmp_path):
    if shutil.which("aarch64-linux-gnu-g++") is None:
        pytest.skip("needs the cross compiler aarch64-linux-gnu-g++ (apt-get install g++-aarch64-linux-gnu)")
    _, folder = write_artifact(tmp_path, "cortex-a55")
    assert read_elf(folder / "model.so").arch == "aarch64"
    with pytest.raises(ArtifactError, match=r"aarch64 library \(board 'cortex-a55'\).*device='HOST:PORT'"):
        load_artifact(folder)


@pytest.mark.parametrize("device, want", [(None, None), ("local", None), ("10.0.0.7:9090", ("10.0.0.7", 9090))])
def test_parse_device(device, want):
    assert parse_device(device) == want


@pytest.mark.parametrize("device", ["board", "host:", ":9090", "host:99999"])
def test_parse_device_rejects(device):
    with pytest.raises(Fcos3dError, match="HOST:PORT"):
        parse_device(device)


# -- the artifact is one whole: meta.json's sha256 of every file, the library inside the folder ----------------


def test_library_from_another_compile_is_refused(copy_of, tmp_path):
    # a hand-copied model.so (or half of a recompile) beside the old meta.json: refused, never run silently
    _, other = write_artifact(tmp_path / "other", "host", seed=1)
    shutil.copy(other / "model.so", copy_of / "model.so")
    with pytest.raises(ArtifactError, match=r"model\.so is not the file compiled with .*meta\.json.*fcos3d-compile"):
        load_artifact(copy_of)


def test_a_listed_file_missing_or_changed_is_refused(copy_of):
    meta = json.loads((copy_of / "meta.json").read_text())
    assert set(meta["files"]) >= {"model.so"} and all(len(h) == 64 for h in meta["files"].values())
    _edit_meta(copy_of, lambda m: m["files"].update({"gone.bin": "0" * 64}))
    with pytest.raises(ArtifactError, match=r"gone\.bin is missing \(meta\.json lists it\)"):
        load_artifact(copy_of)
    (copy_of / "gone.bin").write_bytes(b"changed")
    with pytest.raises(ArtifactError, match=r"gone\.bin is not the file compiled with"):
        load_artifact(copy_of)


def test_meta_without_file_hashes_is_refused(copy_of):
    _edit_meta(copy_of, lambda m: m.pop("files"))
    with pytest.raises(ArtifactError, match=r"records no sha256 of the artifact's files.*fcos3d-compile"):
        load_artifact(copy_of)


@pytest.mark.parametrize("library", ["../model.so", "/tmp/model.so", "sub/model.so", "..", ""])
def test_library_path_outside_the_folder_is_refused(copy_of, library):
    _edit_meta(copy_of, lambda m: m.update(library=library))
    with pytest.raises(ArtifactError, match=r"is not a file name inside the artifact folder"):
        load_artifact(copy_of)


def test_meta_that_is_not_utf8_or_not_an_object(copy_of):
    (copy_of / "meta.json").write_bytes(b'{"format": "\xff\xfe"}')
    with pytest.raises(ArtifactError, match=r"meta\.json: not UTF-8 text"):
        load_artifact(copy_of)
    (copy_of / "meta.json").write_text("[1, 2]")
    with pytest.raises(ArtifactError, match=r"meta\.json: a JSON list, not an object"):
        load_artifact(copy_of)


def test_meta_shape_that_is_not_the_library_s_is_one_error(copy_of):
    # meta.json edited by hand to another input shape: TVM's own check failure becomes one ArtifactError
    _edit_meta(copy_of, lambda m: m["inputs"][0].update(shape=[1, 3, 8, 8]))
    art = load_artifact(copy_of)
    with pytest.raises(ArtifactError, match=r"model\.so: running it failed .*does not describe this library"):
        art.run(np.zeros((1, 3, 8, 8), np.int8))
