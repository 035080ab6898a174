"""Session fixtures shared across test folders (a small synthetic nuScenes root for the metric tests), and the
split of the cores between pytest-xdist workers (`make test` runs `pytest -n auto`)."""

import os

import pytest

# Started first, so that the longest files do not run alone at the end of a parallel run (durations on this 2-core
# machine, serial: the demo about 200 s, the rest at most 80 s each).
LONGEST_FIRST = ("tests/test_demo.py", "tests/trainer/test_train_float.py", "tests/compiler/test_tuning.py")


def _split_cores() -> None:
    """Under pytest-xdist, each worker gets its share of the cores for torch, OpenMP, TVM's thread pool and the
    subprocesses the tests start. Without it two workers each run 2-thread spinning pools on 2 cores, and the
    short-training test took 403 s instead of 58 s."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1:
        return
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TVM_NUM_THREADS"):
        os.environ.setdefault(var, threads)


_split_cores()


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


SYNTH_VERSION = "v1.0-mini"


@pytest.fixture(scope="session")
def synth_nusc(tmp_path_factory):
    """(dataroot, version) of a synthetic nuScenes: 3 scenes (1 val) x 3 key frames, 320x180 images, seed 0.

    Three key frames so that every object is tracked and has a velocity. Treat it as read-only.
    """
    from fcos3d.synth import write_synthetic_nuscenes

    root = tmp_path_factory.mktemp("synth_nusc")
    write_synthetic_nuscenes(root, version=SYNTH_VERSION, seed=0, scenes=3, samples_per_scene=3, image_size=(320, 180))
    return root, SYNTH_VERSION


@pytest.fixture(scope="session")
def synth_lmdb(synth_nusc, tmp_path_factory):
    """Packed train and val LMDBs of synth_nusc: the folder holding train_lmdb/ and val_lmdb/."""
    from fcos3d.data.packer import pack_nuscenes

    root, version = synth_nusc
    out = tmp_path_factory.mktemp("synth_lmdb")
    for split in ("train", "val"):
        pack_nuscenes(root, split_name=split, version=version, target_data_dir=out, num_workers=0)
    return out
