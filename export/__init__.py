"""Checkpoint -> ONNX export, parity verification, quantization and the ONNX metadata contract."""
