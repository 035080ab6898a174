"""fcos3d.compiler: int8 QDQ ONNX -> integer Relax -> TVM shared library for a board.

check.py loads and checks the ONNX; pipeline.py lists the passes; kernels.py (int8 conv kernels),
intrinsics.py (VNNI / sdot) and tuning.py (MetaSchedule) serve them; build.py writes the artifact folder.
Never imports torch.
"""
