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
    with pytest.raises(Fcos3dError, match="not a loadable checkpoint"):
        load_checkpoint(p)
