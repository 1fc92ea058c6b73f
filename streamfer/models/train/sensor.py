"""Train the IMU event classifier: a small 1-D CNN over a [100, 6] window."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from streamfer.models import evaluate as ev
from streamfer.models.generators.sensor import SENSOR_LABELS
from streamfer.models.train.common import (
    MODELS_DIR,
    environment,
    export_onnx,
    fmt,
    metadata,
    seed_everything,
    train_epoch,
)

SEED = 11
TRAIN_SEED, TRAIN_N = 0, 24_000
VALID_SEED, VALID_N = 500, 3000
EPOCHS = 10
BATCH = 128
LR = 3e-3


def _block(cin: int, cout: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(cin, cout, k, stride=stride, padding=k // 2), nn.BatchNorm1d(cout), nn.ReLU()
    )


class SensorCNN(nn.Module):
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, 1, 6))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).reshape(1, 1, 6))
        self.features = nn.Sequential(
            _block(6, 32, 7, 1), _block(32, 48, 5, 2), _block(48, 64, 5, 2), _block(64, 64, 3, 1)
        )
        self.head = nn.Linear(128, len(SENSOR_LABELS))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(((x - self.mean) / self.std).transpose(1, 2))
        return self.head(torch.cat([f.mean(dim=2), f.amax(dim=2)], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)


def train(out_dir: Path = MODELS_DIR) -> dict[str, float]:
    gen = seed_everything(SEED)
    t0 = time.perf_counter()
    print(f"sensor | generating {TRAIN_N} training windows (seed {TRAIN_SEED})")
    x, y = ev.sensor_sample(TRAIN_SEED, TRAIN_N)
    xv, yv = ev.sensor_sample(VALID_SEED, VALID_N)
    mean = x.mean(axis=(0, 1))
    std = x.std(axis=(0, 1))
    model = SensorCNN(mean, std)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    steps = EPOCHS * ((TRAIN_N + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(EPOCHS):
        loss = train_epoch(model, opt, loss_fn, (xt, yt), BATCH, gen, sched.step)
        with torch.no_grad():
            acc = float((model(torch.from_numpy(xv)).argmax(1).numpy() == yv).mean())
        print(f"sensor | epoch {epoch + 1}/{EPOCHS} loss {loss:.4f} valid acc {acc:.4f}")
    path = out_dir / "sensor.onnx"
    meta = metadata("sensor", "sensor", list(SENSOR_LABELS))
    export_onnx(model, torch.from_numpy(xv[:64]), path, "window", "probs", meta)
    heldout = ev.evaluate_sensor(path)
    print(f"sensor | held-out {heldout} | {time.perf_counter() - t0:.0f} s")
    write_card(out_dir / "sensor.md", path, heldout)
    return heldout


def write_card(card: Path, onnx_path: Path, m: dict[str, float]) -> None:
    rows = "\n".join(
        f"| {label} | {fmt(m[f'precision_{label}'])} | {fmt(m[f'recall_{label}'])} |"
        for label in SENSOR_LABELS
    )
    card.write_text(f"""# sensor — vehicle IMU event classifier

`models/sensor.onnx` ({onnx_path.stat().st_size / 1024:.0f} KiB, opset 17), version 1.0.

## Inputs and outputs

- input `window`: float32 `[N, 100, 6]`, 2 s at 50 Hz, channels ax, ay, az in
  m/s^2 (x forward, y left, z up, gravity included) and gx, gy, gz in rad/s
  (roll, pitch, yaw rate), raw units: per-channel standardisation is in the graph;
- output `probs`: float32 `[N, 4]`, softmax over
  `["normal", "hard_brake", "swerve", "impact"]` (metadata `streamfer.labels`).

The batch axis is dynamic. Metadata: `streamfer.name=sensor`, `streamfer.task=sensor`.

## Model

1-D CNN: four Conv1d+BatchNorm+ReLU blocks (32, 48, 64, 64 channels, two of
them stride 2), mean and max pooling over time, linear layer; AdamW with a
one-cycle schedule (max lr {LR}), {EPOCHS} epochs, batch {BATCH}, torch seed {SEED}.

## Training data

`streamfer.models.generators.sensor.SensorGenerator(seed={TRAIN_SEED})`, {TRAIN_N} windows (55 %
normal, 15 % each event) from 20 simulated vehicles, each with its own noise
level, gyro bias, mounting tilt and engine vibration. Normal driving carries
the hard negatives: moderate braking (to -5.5 m/s^2), lane changes (to 3 m/s^2
at 0.3-0.8 Hz), potholes and speed bumps (short vertical spikes to 12 m/s^2
with some fore-aft shake). Hard braking: -4 to -9 m/s^2 held 0.5-1.4 s with
a nose-dive pitch rate, possibly cut by the window edges (so are swerves);
swerve: 1-1.5 cycles of 2-7.5 m/s^2 lateral acceleration at 0.6-1.6 Hz with
the matching yaw rate and body roll; impact: a 6-60 m/s^2 ringing shock
(front or side) with gyro spikes and a deceleration after. Validation during
training: seed {VALID_SEED}, {VALID_N} windows.

## Held-out metrics (ONNX Runtime, CPU)

Fresh windows: seed {ev.SENSOR_HELDOUT_SEED}, {ev.SENSOR_HELDOUT_N} windows.

| metric | value |
|---|---|
| accuracy (held-out) | {fmt(m["accuracy"])} |

| label | precision | recall |
|---|---|---|
{rows}

## Limits

Synthetic signals with one event per window at most: the four classes are
well separated in this generator even with the hard negatives, so the
near-perfect accuracy above says the model learned the generator, not that it
would hold on real drives. Real IMU data has mounting changes, saturation,
clock jitter and mixed events; a production classifier needs recorded and
labelled drives.

## Retrain

```
pip install -e '.[train]'
python -m streamfer.models.train sensor
```

Deterministic (fixed seeds); produced with {environment()}.
""")
