"""ONNX Runtime backend: the embedded CPU default (CUDA provider with onnxruntime-gpu)."""
