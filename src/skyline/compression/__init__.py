"""Inference optimization: pruning, distillation, ONNX export, int8 quantization, and their report."""
