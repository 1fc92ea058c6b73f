"""Train the fraud scorer: an MLP over FraudFeaturizer features, standardisation in-graph."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from streamfer.models import evaluate as ev
from streamfer.models.features import FEATURE_NAMES
from streamfer.models.metrics import roc_auc
from streamfer.models.train.common import (
    MODELS_DIR,
    environment,
    export_onnx,
    fmt,
    metadata,
    seed_everything,
    train_epoch,
)

SEED = 7
EPOCHS = 12
BATCH = 1024
LR = 2e-3


class FraudMLP(nn.Module):
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        f = len(mean)
        self.net = nn.Sequential(
            nn.Linear(f, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1)
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def train(out_dir: Path = MODELS_DIR) -> dict[str, float]:
    gen = seed_everything(SEED)
    t0 = time.perf_counter()
    print(
        f"fraud | generating {ev.FRAUD_TRAIN.n_records} training records "
        f"(seed {ev.FRAUD_TRAIN.seed})"
    )
    x, y = ev.fraud_sample(ev.FRAUD_TRAIN)
    xv, yv = ev.fraud_sample(ev.FRAUD_VALID)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std < 1e-6, 1.0, std)
    model = FraudMLP(mean, std)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))[:, None]
    loss_fn = nn.BCEWithLogitsLoss()  # unweighted: the score stays a calibrated P(fraud)
    for epoch in range(EPOCHS):
        loss = train_epoch(model, opt, loss_fn, (xt, yt), BATCH, gen)
        sched.step()
        with torch.no_grad():
            sv = model(torch.from_numpy(xv)).numpy()[:, 0]
        auc = roc_auc(yv, sv)
        print(f"fraud | epoch {epoch + 1}/{EPOCHS} loss {loss:.4f} valid AUC {auc:.4f}")
    path = out_dir / "fraud.onnx"
    meta = metadata("fraud", "fraud", ["fraud"])
    meta["streamfer.features"] = ",".join(FEATURE_NAMES)
    export_onnx(model, torch.from_numpy(xv[:64]), path, "features", "score", meta)
    heldout = ev.evaluate_fraud(path, ev.FRAUD_HELDOUT)
    check = ev.evaluate_fraud(path, ev.FRAUD_CHECK)
    print(f"fraud | held-out {heldout} | CI sample {check} | {time.perf_counter() - t0:.0f} s")
    write_card(out_dir / "fraud.md", path, heldout, check, int(y.sum()), len(y))
    return heldout


def write_card(
    card: Path,
    onnx_path: Path,
    heldout: dict[str, float],
    check: dict[str, float],
    n_fraud: int,
    n_train: int,
) -> None:
    h, c = ev.FRAUD_HELDOUT, ev.FRAUD_CHECK
    features = "\n".join(f"| {i} | `{name}` |" for i, name in enumerate(FEATURE_NAMES))
    card.write_text(f"""# fraud — transaction fraud scorer

`models/fraud.onnx` ({onnx_path.stat().st_size / 1024:.0f} KiB, opset 17), version 1.0.

## Inputs and outputs

- input `features`: float32 `[N, {len(FEATURE_NAMES)}]`, the vector of
  `streamfer.models.features.FraudFeaturizer.transform(tx)` (raw values: standardisation
  with the training mean and standard deviation is part of the graph);
- output `score`: float32 `[N, 1]`, P(fraud) in 0..1 (trained with unweighted
  binary cross-entropy, so it reads as a probability at a ~1 % base rate).

The batch axis is dynamic. Metadata: `streamfer.name=fraud`,
`streamfer.task=fraud`, `streamfer.labels=["fraud"]`, `streamfer.features`
(comma-separated feature names, to check against the featurizer).

| index | feature |
|---|---|
{features}

The featurizer keeps per-card state (last time and place, running typical
amount, timestamps of the last hour) in an LRU of cards, so one card's
transactions must reach the same process in order (key by `card_id`).

## Model

MLP {len(FEATURE_NAMES)} → 64 → 32 → 1 (ReLU), sigmoid output; AdamW lr {LR}, cosine
schedule, {EPOCHS} epochs, batch {BATCH}, torch seed {SEED}.

## Training data

`streamfer.models.generators.transactions.TransactionGenerator(seed={ev.FRAUD_TRAIN.seed},
fraud_rate=0.01, n_cards=5000)`, the first {n_train} records ({n_fraud} fraudulent),
featurized in stream order. Legitimate spend follows per-card habits (home
city, typical ticket, online share, local-time daily rhythm, occasional trips
with plausible travel time, rare big purchases). Fraud comes in episodes on
compromised cards: card-not-present bursts at risky merchants from another
city (sometimes after a tiny test charge), skimmed-card ATM withdrawals far
away, stolen-card shopping nearby at electronics/jewellery merchants, and
single ordinary-looking account-takeover purchases; half start at local night.
Validation during training: seed {ev.FRAUD_VALID.seed}, {ev.FRAUD_VALID.n_records} records.

## Held-out metrics (ONNX Runtime, CPU)

Fresh stream: seed {h.seed}, {h.n_records} records, n_cards {h.n_cards},
fraud share {heldout["fraud_share"]:.4f}. Review rate {ev.REVIEW_RATE:.0%}: the
highest-scoring 1 % of transactions go to review.

| metric | value |
|---|---|
| ROC-AUC (held-out) | {fmt(heldout["roc_auc"])} |
| precision at 1% review rate | {fmt(heldout["precision_at_review_rate"])} |
| recall at 1% review rate | {fmt(heldout["recall_at_review_rate"])} |

CI's check sample (seed {c.seed}, {c.n_records} records, n_cards {c.n_cards}): ROC-AUC
{fmt(check["roc_auc"])}; `tests/models/test_models.py` regenerates a fresh sample
and compares its AUC with the held-out value above within a tolerance.

## Limits

Synthetic data only: the patterns are the textbook ones, cleanly separated
compared with real card fraud; do not read these numbers as what a production
scorer achieves. No merchant-level or device features.

## Retrain

```
pip install -e '.[train]'
python -m streamfer.models.train fraud
```

Deterministic (fixed seeds); produced with {environment()}.
""")
