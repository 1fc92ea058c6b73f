"""Reference models and their data: generators, fraud features, camera preprocessing.

The ONNX files (``fraud.onnx``, ``sensor.onnx``, ``camera.onnx``) and their
model cards live next to this file; ``streamfer.models.train`` (needs PyTorch) rebuilds
them and ``streamfer.models.evaluate`` recomputes the cards' metrics without PyTorch.
"""
