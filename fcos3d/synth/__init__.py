"""The synthetic world room: a seeded road scene (world.py), its sensors (rig.py), drawn by models.py and paint.py,
written as a devkit-loadable nuScenes root by tables.py. Never imports torch; fcos3d.data never imports this room."""

from .tables import CLASS_RANGE, DEFAULT_SAMPLES_PER_SCENE, DEFAULT_SCENES, scene_plan, write_synthetic_nuscenes

__all__ = ["write_synthetic_nuscenes", "scene_plan", "CLASS_RANGE", "DEFAULT_SCENES", "DEFAULT_SAMPLES_PER_SCENE"]
