"""fcos3d: an open toolchain taking monocular 3D detection (FCOS3D) from nuScenes to bit-exact int8 on edge boards."""

__version__ = "0.1.0"
