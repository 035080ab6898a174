"""3D box geometry in numpy: frames, projection, decoding, rotated BEV NMS (shared by every stage)."""
