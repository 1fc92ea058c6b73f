"""Deterministic synthetic data: payment transactions, vehicle IMU windows, road scenes.

The reference models are trained on these, and the demo, the producers and the
benchmarks stream them, so a model always sees data shaped like its training data.
"""
