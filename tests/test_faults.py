"""Fault tests: kill -9 at several points of pack, checkpoint saves (in training too), export and compile over an
existing output, and a small full file system (a tmpfs, where the tests run as root) under pack, checkpoint save
and compile. Afterwards the previous output is intact and loadable, the next run leaves no temp file behind, and
a training resumed after the kill reaches the weights of an uninterrupted one.

A kill point is a function of the writer (``module.name``, its n-th call whose arguments mention ``match``): a
child process runs the command with that function wrapped to SIGKILL itself before (or right after) the call.
The child must die there (exit -9): a point never reached fails the test, so the points stay true to the code.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS / "runtime"))  # rpc_servers (the small QDQ model), qdq_graphs
sys.path.insert(0, str(TESTS / "trainer"))  # trainer_tiny
sys.path.insert(0, str(TESTS / "quant"))  # quant_fixtures
from rpc_servers import random_inputs, small_model  # noqa: E402

pytestmark = pytest.mark.timeout(600)

_HOOK = """
import importlib, os, signal, sys
sys.path[:0] = {paths!r}

def _kill_at(module, name, n, when, match):
    mod = importlib.import_module(module)
    real = getattr(mod, name)
    seen = [0]

    def hooked(*args, **kwargs):
        if match is None or any(match in str(a) for a in args):
            seen[0] += 1
            if seen[0] == n:
                if when == "after":
                    real(*args, **kwargs)
                os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    setattr(mod, name, hooked)

_kill_at({module!r}, {name!r}, {n!r}, {when!r}, {match!r})
"""


def _run_killed(point: tuple, program: str) -> None:
    """Run ``program`` in a child process with the kill point installed; it must die of SIGKILL there."""
    module, name, n, when, match = point
    paths = [str(TESTS / "runtime"), str(TESTS / "trainer"), str(TESTS / "quant")]
    code = _HOOK.format(paths=paths, module=module, name=name, n=n, when=when, match=match) + program
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == -signal.SIGKILL, f"the kill point {point} was not reached:\n{proc.stderr[-3000:]}"


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _point_id(point: tuple) -> str:
    module, name, n, when, _ = point
    return f"{when}-{module.rsplit('.', 1)[-1]}.{name}#{n}"


# -- pack -------------------------------------------------------------------------------------------------------

PACK = """
from fcos3d.data.packer import pack_nuscenes
pack_nuscenes({root!r}, "val", {version!r}, {target!r}, num_workers=0)
"""
PACK_POINTS = [
    ("fcos3d.data.packer", "encode_record", 3, "before", None),  # mid-write: a half LMDB in the temp folder
    ("fcos3d.io", "_replace_dir", 1, "before", None),  # the new LMDB complete beside the old, not yet in place
    ("fcos3d.io", "_exchange", 1, "after", None),  # swapped in; the old one not yet removed
]


def _lmdb_records(path: Path) -> list:
    from fcos3d.data.dataset import NuscenesMonoDataset, close_lmdb_envs

    close_lmdb_envs()
    ds = NuscenesMonoDataset(path)
    records = [ds.read_record(i) for i in range(len(ds))]
    ds[len(ds) - 1]  # decodes (the JPEG too)
    close_lmdb_envs()
    return [(r["sample_data_token"], r["img"]) for r in records]


@pytest.mark.parametrize("point", PACK_POINTS, ids=_point_id)
def test_kill_during_pack_keeps_the_previous_lmdb(synth_nusc, tmp_path, point):
    from fcos3d.data.packer import pack_nuscenes

    root, version = synth_nusc
    target = tmp_path / "lmdb"
    pack_nuscenes(root, "val", version, target, num_workers=0)
    before = _lmdb_records(target / "val_lmdb")
    _run_killed(point, PACK.format(root=str(root), version=version, target=str(target)))
    assert _lmdb_records(target / "val_lmdb") == before  # the same records either way: old or new, never torn
    assert len(_names(target)) > 1  # the killed run left its temp folder...
    pack_nuscenes(root, "val", version, target, num_workers=0)
    assert _names(target) == ["val_lmdb"]  # ...which the next run removed
    assert _lmdb_records(target / "val_lmdb") == before


# -- checkpoints, alone and in training -------------------------------------------------------------------------

SAVE = """
import torch
from fcos3d.trainer.checkpoint import save_checkpoint
save_checkpoint({path!r}, stage="float", state_dict={{"w": torch.full((64,), 2.0)}}, step=2)
"""
SAVE_POINTS = [
    ("os", "fsync", 1, "before", None),  # the temp file written, not yet synced
    ("os", "replace", 1, "before", "checkpoint"),  # synced, not yet renamed over the previous one
]


@pytest.mark.parametrize("point", SAVE_POINTS, ids=_point_id)
def test_kill_during_a_checkpoint_save_keeps_the_previous_one(tmp_path, point):
    from fcos3d.trainer.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint

    path = checkpoint_path(tmp_path, "float", "last")
    save_checkpoint(path, stage="float", state_dict={"w": torch.ones(64)}, step=1)
    _run_killed(point, SAVE.format(path=str(path)))
    ck = load_checkpoint(path, expected_stage="float")
    assert ck["step"] == 1 and torch.equal(ck["state_dict"]["w"], torch.ones(64))
    assert len(_names(tmp_path)) == 2  # the killed save's temp file...
    save_checkpoint(path, stage="float", state_dict={"w": torch.zeros(64)}, step=3)
    assert _names(tmp_path) == [path.name]  # ...removed by the next save of that checkpoint


TRAIN = """
import torch
from trainer_tiny import tiny_config
from fcos3d.trainer.loop import train
torch.set_num_threads(1)
train(tiny_config({lmdb!r}, {work!r}, epochs=2, max_steps=7, checkpoint_interval=2), "float", work_dir={work!r})
"""


def test_kill_during_a_training_checkpoint_write_then_resume_gives_the_same_weights(synth_lmdb, tmp_path):
    from trainer_tiny import tiny_config

    from fcos3d.trainer.checkpoint import checkpoint_path, load_checkpoint
    from fcos3d.trainer.loop import train

    torch.set_num_threads(1)
    straight = tmp_path / "straight"
    train(tiny_config(synth_lmdb, straight, epochs=2, max_steps=7, checkpoint_interval=2), "float", work_dir=straight)

    work = tmp_path / "killed"
    # the second write of the last checkpoint (step 4) is killed when its temp file is complete, before the rename
    point = ("os", "replace", 2, "before", "float-checkpoint-last")
    _run_killed(point, TRAIN.format(lmdb=str(synth_lmdb), work=str(work)))
    last = checkpoint_path(work, "float", "last")
    assert load_checkpoint(last, expected_stage="float")["step"] == 2  # the previous checkpoint, whole
    assert any(n.startswith(f".{last.name}.tmp-") for n in _names(work))
    summary = train(
        tiny_config(synth_lmdb, work, epochs=2, max_steps=7, checkpoint_interval=2), "float", work_dir=work, resume=True
    )
    assert summary["steps"] == 7
    assert not [n for n in _names(work) if ".tmp-" in n]
    a = load_checkpoint(checkpoint_path(straight, "float", "last"))["state_dict"]
    b = load_checkpoint(last)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- export -----------------------------------------------------------------------------------------------------

EXPORT = """
import torch
from quant_fixtures import INPUT_SHAPE, calibrate, tiny_float_model
from fcos3d.quant.convert import Float2QAT
from fcos3d.quant.export import export_qdq_onnx
torch.set_num_threads(1)
qat = Float2QAT()(calibrate(tiny_float_model(seed={seed}), seed=100)).eval()
export_qdq_onnx(qat, INPUT_SHAPE, {path!r}, simplify=False)
"""
EXPORT_POINTS = [("os", "fsync", 1, "before", None), ("os", "replace", 1, "before", ".onnx")]


def _export(seed: int, path: Path) -> None:
    """Export in a child process, as the killed runs do (same interpreter, same threads)."""
    paths = [str(TESTS / "quant"), str(TESTS / "trainer")]
    program = f"import sys\nsys.path[:0] = {paths!r}\n" + EXPORT.format(seed=seed, path=str(path))
    subprocess.run([sys.executable, "-c", program], check=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))


@pytest.mark.parametrize("point", EXPORT_POINTS, ids=_point_id)
def test_kill_during_export_keeps_the_previous_onnx(tmp_path, point):
    path = tmp_path / "model.onnx"
    _export(0, path)
    before = path.read_bytes()
    _run_killed(point, EXPORT.format(seed=1, path=str(path)))
    assert path.read_bytes() == before
    onnx.checker.check_model(onnx.load(str(path)))
    assert len(_names(tmp_path)) == 2  # the killed export's temp file...
    _export(1, path)
    assert _names(tmp_path) == ["model.onnx"] and path.read_bytes() != before  # ...removed by the next export


# -- compile over an existing artifact --------------------------------------------------------------------------

COMPILE = """
from fcos3d.compiler.build import compile_onnx
compile_onnx({onnx!r}, "host", {out!r})
"""
COMPILE_POINTS = [
    (("fcos3d.compiler.build", "export_library", 1, "after", None), "old"),  # model.so linked, no meta.json yet
    (("fcos3d.io", "_replace_dir", 1, "before", None), "old"),  # the new artifact complete beside the old
    (("fcos3d.io", "_exchange", 1, "after", None), "new"),  # swapped in; the old not yet removed
]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults_onnx")
    for seed in (0, 1):
        onnx.save(small_model(seed), folder / f"m{seed}.onnx")
    return folder / "m0.onnx", folder / "m1.onnx"


@pytest.mark.parametrize("point, which", COMPILE_POINTS, ids=[_point_id(p) for p, _ in COMPILE_POINTS])
def test_kill_during_a_recompile_keeps_a_whole_artifact(two_models, tmp_path, point, which):
    from fcos3d.compiler.build import compile_onnx
    from fcos3d.runtime.execute import load_artifact

    old, new = two_models
    out = tmp_path / "art"
    compile_onnx(old, "host", out)
    _run_killed(point, COMPILE.format(onnx=str(new), out=str(out)))
    art = load_artifact(out, onnx_path=old if which == "old" else new)  # whole, hashes checked, the expected model
    art.run(random_inputs(1)[0])
    assert len(_names(tmp_path)) == 2  # the killed compile's temp folder...
    compile_onnx(new, "host", out)
    assert _names(tmp_path) == ["art"]  # ...removed by the next compile
    load_artifact(out, onnx_path=new).run(random_inputs(1)[0])


# -- a full file system ----------------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """A 16 MiB tmpfs (root only; skipped where it cannot be mounted), and ``fill(leave)`` to use it up."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    filler = mnt / "filler"

    def fill(leave: int) -> None:
        st = os.statvfs(mnt)
        free = st.f_bavail * st.f_frsize
        with open(filler, "ab") as f:
            f.write(b"\0" * max(0, free - leave))

    try:
        yield mnt, fill, filler
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_during_pack(synth_nusc, small_fs, capsys, monkeypatch):
    from fcos3d.cli import main as main_cli
    from fcos3d.data.packer import pack_nuscenes

    mnt, fill, filler = small_fs
    root, version = synth_nusc
    target = mnt / "lmdb"
    pack_nuscenes(root, "val", version, target, num_workers=0)
    before = _lmdb_records(target / "val_lmdb")
    fill(leave=64 * 1024)
    args = ["fcos3d", "data", "pack", "--src-data-dir", str(root), "--split-name", "val", "--version", version]
    monkeypatch.setattr(sys, "argv", [*args, "--target-data-dir", str(target), "--num-workers", "0"])
    with pytest.raises(SystemExit) as e:
        main_cli.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "disk" in err and str(target) in err, err
    assert _lmdb_records(target / "val_lmdb") == before and _names(target) == ["val_lmdb"]
    filler.unlink()
    pack_nuscenes(root, "val", version, target, num_workers=0)
    assert _names(target) == ["val_lmdb"] and _lmdb_records(target / "val_lmdb") == before


def test_full_disk_during_a_checkpoint_save(small_fs):
    from fcos3d.trainer.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint

    mnt, fill, filler = small_fs
    path = checkpoint_path(mnt / "work", "float", "last")
    save_checkpoint(path, stage="float", state_dict={"w": torch.ones(1000)}, step=1)
    fill(leave=16 * 1024)
    with pytest.raises(OSError) as e:
        save_checkpoint(path, stage="float", state_dict={"w": torch.zeros(100_000)}, step=2)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    assert load_checkpoint(path)["step"] == 1 and _names(path.parent) == [path.name]
    filler.unlink()
    save_checkpoint(path, stage="float", state_dict={"w": torch.zeros(100_000)}, step=2)
    assert load_checkpoint(path)["step"] == 2 and _names(path.parent) == [path.name]


def test_full_disk_during_a_recompile(two_models, small_fs):
    from fcos3d.cli.boundary import expected_message
    from fcos3d.compiler.build import compile_onnx
    from fcos3d.runtime.execute import load_artifact

    mnt, fill, filler = small_fs
    old, new = two_models
    out = mnt / "art"
    compile_onnx(old, "host", out)
    fill(leave=8 * 1024)
    with pytest.raises(Exception) as e:
        compile_onnx(new, "host", out)
    message = expected_message(e.value)
    assert message is not None and "\n" not in message, repr(e.value)
    assert "disk" in message or "No space" in message, message
    load_artifact(out, onnx_path=old).run(random_inputs(1)[0])
    assert _names(mnt) == ["art", "filler"]
    filler.unlink()
    compile_onnx(new, "host", out)
    assert _names(mnt) == ["art"]
    shutil.rmtree(out)
