"""Session fixtures shared across test folders: a small synthetic nuScenes root for the metric tests."""

import pytest

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
