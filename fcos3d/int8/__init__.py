"""The integer contract: op classes with their constants, the rounding, the QDQ/QOperator ONNX reader and writer.

numpy and onnx only (docs/int8.md); every executor (simulator, torch int model, TVM) imports from here.
"""
