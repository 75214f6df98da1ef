"""Checkpoint -> ONNX export, parity verification (through the runtime in ``live``),
quantization and benchmarks."""
