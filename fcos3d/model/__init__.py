"""The model room: EfficientNet backbone, BiFPN neck, FCOS3D head, targets and losses (torch).

Never imports trainer, quant, compiler or runtime; decoding of the raw outputs lives in fcos3d.boxes.decode.
"""
