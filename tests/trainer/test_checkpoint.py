"""Checkpoints: atomic round trip, weights_only loading, clear errors for foreign files and stages."""

import pickle

import pytest
import torch

from fcos3d.errors import Fcos3dError
from fcos3d.trainer.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint


def test_roundtrip(tmp_path):
    sd = {"w": torch.arange(6.0).reshape(2, 3)}
    p = save_checkpoint(
        checkpoint_path(tmp_path, "float", "last"), stage="float", state_dict=sd, epoch=3, metrics={"NDS": 0.5}
    )
    assert p.name == "float-checkpoint-last.pth.tar"
    assert [x.name for x in tmp_path.iterdir()] == [p.name]  # no temp file left
    ck = load_checkpoint(p, expected_stage="float")
    assert torch.equal(ck["state_dict"]["w"], sd["w"]) and ck["epoch"] == 3 and ck["metrics"]["NDS"] == 0.5


def test_wrong_stage(tmp_path):
    p = save_checkpoint(tmp_path / "c.pth.tar", stage="float", state_dict={})
    with pytest.raises(Fcos3dError, match="a 'float'-stage checkpoint where a 'qat' one is needed"):
        load_checkpoint(p, expected_stage="qat")


def test_foreign_files(tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save({"conv.weight": torch.zeros(1)}, plain)
    with pytest.raises(Fcos3dError, match="not an fcos3d checkpoint"):
        load_checkpoint(plain)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(Fcos3dError, match="not a loadable checkpoint"):
        load_checkpoint(junk)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_payload_refused(tmp_path):
    # weights_only=True must refuse arbitrary objects rather than execute them.
    p = tmp_path / "evil.pth"
    torch.save({"format": "fcos3d-checkpoint", "x": _Evil()}, p, pickle_module=pickle)
    with pytest.raises(Fcos3dError, match=r"evil\.pth: holds a pickled Python object \(print\).*could run code"):
        load_checkpoint(p)


def test_a_marked_checkpoint_without_weights_is_refused(tmp_path):
    p = tmp_path / "empty.pth"
    torch.save({"format": "fcos3d-checkpoint", "format_version": 1, "stage": "float"}, p)
    with pytest.raises(Fcos3dError, match=r"empty\.pth: an fcos3d checkpoint without weights"):
        load_checkpoint(p, expected_stage="float")


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno
    import os

    import fcos3d.io

    p = checkpoint_path(tmp_path, "float", "last")
    save_checkpoint(p, stage="float", state_dict={"w": torch.ones(3)}, step=1)
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fcos3d.io.os, "fsync", full)
    with pytest.raises(OSError, match="No space left") as e:
        save_checkpoint(p, stage="float", state_dict={"w": torch.zeros(3)}, step=2)
    assert e.value.filename == str(p)  # named, so the CLI's one line says which file
    monkeypatch.setattr(fcos3d.io.os, "fsync", real_fsync)
    assert load_checkpoint(p)["step"] == 1 and [x.name for x in tmp_path.iterdir()] == [p.name]


def test_temp_file_of_a_killed_save_is_removed_by_the_next_save(tmp_path):
    p = checkpoint_path(tmp_path, "float", "last")
    (tmp_path / f".{p.name}.tmp-999999999-abc").write_bytes(b"half")  # a save killed mid-write (no such pid)
    (tmp_path / "notes.txt").write_text("not ours")
    save_checkpoint(p, stage="float", state_dict={"w": torch.ones(1)})
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted([p.name, "notes.txt"])
