"""The quant room: observers, BN folding, fake-quant modules, the convert pipeline, the integer model, QDQ export.

float -> Float2Calibration -> Float2QAT -> QAT2Quantize (IntModel, bit-exact with the simulator) -> export_qdq_onnx.
"""
