"""Float training: it learns, resumes to the same weights, and 2-process DDP equals one big batch."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from trainer_tiny import tiny_config

from fcos3d.trainer.checkpoint import checkpoint_path, load_checkpoint
from fcos3d.trainer.config import build
from fcos3d.trainer.loop import Reporter, train
from fcos3d.trainer.optim import SGD
from fcos3d.trainer.stages import run_predict


class _Recorder(Reporter):
    def __init__(self, kill_at=None):
        self.losses, self.kill_at = [], kill_at

    def on_step(self, step, losses, lr):
        self.losses.append(sum(losses.values()))
        if self.kill_at is not None and step == self.kill_at:
            raise KeyboardInterrupt  # as if the process were killed before its next checkpoint


def _weights(path):
    return load_checkpoint(path, expected_stage="float")["state_dict"]


@pytest.mark.slow
def test_short_training_learns(synth_lmdb, tmp_path):
    torch.set_num_threads(min(2, int(os.environ.get("OMP_NUM_THREADS", "2"))))  # a pytest-xdist worker's share
    cfg = tiny_config(synth_lmdb, tmp_path, epochs=12, lr=3e-3, deterministic=False, val=True)
    rec = _Recorder()
    train(cfg, "float", work_dir=tmp_path, reporter=rec)
    first, last = sum(rec.losses[:5]) / 5, sum(rec.losses[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    metrics = run_predict(cfg, "float", ckpt=checkpoint_path(tmp_path, "float", "last"))
    assert metrics["mAP"] > 0.0, metrics


def test_resume_mid_epoch_gives_the_same_weights(synth_lmdb, tmp_path):
    torch.set_num_threads(1)
    straight = tiny_config(synth_lmdb, tmp_path / "a", epochs=2, max_steps=7, checkpoint_interval=2)
    train(straight, "float", work_dir=tmp_path / "a")

    killed = tiny_config(synth_lmdb, tmp_path / "b", epochs=2, max_steps=7, checkpoint_interval=2)
    with pytest.raises(KeyboardInterrupt):
        train(killed, "float", work_dir=tmp_path / "b", reporter=_Recorder(kill_at=5))
    assert load_checkpoint(checkpoint_path(tmp_path / "b", "float", "last"))["step"] == 4  # mid-epoch (9 steps/epoch)
    summary = train(killed, "float", work_dir=tmp_path / "b", resume=True)
    assert summary["steps"] == 7
    a, b = (
        _weights(checkpoint_path(tmp_path / "a", "float", "last")),
        _weights(checkpoint_path(tmp_path / "b", "float", "last")),
    )
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, cfg, out):
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    try:
        train(cfg, "float", work_dir=out)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_process_ddp_equals_one_process_with_the_combined_batch(synth_lmdb, tmp_path):
    # SGD: the weight change is lr x gradient, so equal weights mean equal gradients. (Adam's first step is
    # lr x sign(g), which turns float noise on a zero gradient into a full step.)
    torch.set_num_threads(1)
    sgd = dict(type=SGD, lr=0.05, momentum=0.9, weight_decay=1e-4)
    one = tiny_config(synth_lmdb, tmp_path / "one", batch_size=4, max_steps=1, deterministic=False, optimizer=sgd)
    train(one, "float", work_dir=tmp_path / "one")
    two = tiny_config(synth_lmdb, tmp_path / "two", batch_size=2, max_steps=1, deterministic=False, optimizer=sgd)
    mp.spawn(_ddp_worker, args=(2, _free_port(), two, tmp_path / "two"), nprocs=2, join=True)
    a, b = (
        _weights(checkpoint_path(tmp_path / "one", "float", "last")),
        _weights(checkpoint_path(tmp_path / "two", "float", "last")),
    )
    assert load_checkpoint(checkpoint_path(tmp_path / "one", "float", "last"))["step"] == 1
    # Weights (parameters) within 1e-5 absolute; BN running statistics (buffers, some of size ~1e3 after
    # one step from the input's variance) within 1e-5 relative.
    params = {k for k, _ in build(one["model"], "model").named_parameters(remove_duplicate=False)}
    compared = 0
    for k in a:
        if a[k].is_floating_point():
            atol, rtol = (1e-5, 0.0) if k in params else (1e-6, 1e-5)
            diff = (b[k] - a[k]).abs().max().item()
            assert torch.allclose(b[k], a[k], rtol=rtol, atol=atol), (
                f"{k}: max |diff| {diff:.3g}, max |w| {a[k].abs().max():.3g}"
            )
            compared += k in params
    assert compared > 100
