"""TensorRT backend (extra `gpu`): nothing here imports tensorrt or pycuda at import time."""
