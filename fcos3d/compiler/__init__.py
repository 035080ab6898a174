"""fcos3d.compiler: int8 QDQ ONNX -> integer Relax -> TVM shared library for a board.

check.py loads and checks the ONNX; pipeline.py lists the passes; build.py writes the artifact folder.
Never imports torch.
"""
