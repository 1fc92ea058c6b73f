"""Training code for the reference models: ``python -m streamfer.models.train fraud|sensor|camera``.

Needs the ``train`` extra (PyTorch); nothing else in streamfer imports this
package. Every run is seeded, so the metrics written on the model cards come
back when the command is run again on the same software versions.
"""
