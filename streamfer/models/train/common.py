"""Shared training plumbing: seeding, the mini-batch epoch, ONNX export with metadata, export
checks, cards."""

from __future__ import annotations

import json
import platform
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx
import onnxruntime as ort
import torch

MODELS_DIR = Path(__file__).resolve().parent.parent
OPSET = 17
MODEL_VERSION = "1.0"


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; single-threaded determinism is not forced."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


class Classifier(Protocol):
    """A reference model in training: raw scores from ``logits``, train/eval modes."""

    def logits(self, x: torch.Tensor) -> torch.Tensor: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...


def train_epoch(
    model: Classifier,
    opt: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: tuple[torch.Tensor, torch.Tensor],
    batch: int,
    gen: torch.Generator,
    after_step: Callable[[], object] | None = None,
) -> float:
    """One shuffled pass over ``data`` (inputs, targets) in mini-batches of ``logits``;
    ``after_step`` runs after every optimizer step (a per-batch scheduler). Leaves the
    model in eval mode and returns the epoch's mean loss."""
    x, y = data
    model.train()
    perm = torch.randperm(len(x), generator=gen)
    total = 0.0
    for i in range(0, len(perm), batch):
        idx = perm[i : i + batch]
        opt.zero_grad()
        loss = loss_fn(model.logits(x[idx]), y[idx])
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step()
        total += loss.item() * len(idx)
    model.eval()
    return total / len(perm)


def export_onnx(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    input_name: str,
    output_name: str,
    metadata: Mapping[str, str],
) -> None:
    """Export with a dynamic batch axis, stamp ``metadata_props``, check against torch."""
    module.eval()
    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=[input_name],
        output_names=[output_name],
        dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    model.producer_name = "streamfer.models.train"
    model.doc_string = f"streamfer reference model {metadata.get('streamfer.name', path.stem)}"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    _check_against_torch(module, example, path, input_name)


def _check_against_torch(
    module: torch.nn.Module, example: torch.Tensor, path: Path, input_name: str
) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, min(64, example.shape[0])):
        x = example[:n]
        with torch.no_grad():
            want = module(x).numpy()
        got = session.run(None, {input_name: x.numpy()})[0]
        if got.shape != want.shape or not np.allclose(got, want, atol=1e-4, rtol=1e-3):
            diff = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("nan")
            raise RuntimeError(f"{path} | ONNX output differs from torch (max |diff| {diff})")


def metadata(name: str, task: str, labels: list[str], **extra: str) -> dict[str, str]:
    return {
        "streamfer.name": name,
        "streamfer.version": MODEL_VERSION,
        "streamfer.task": task,
        "streamfer.labels": json.dumps(labels),
        **extra,
    }


def environment() -> str:
    """The software versions a card's numbers were produced with."""
    return (
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}"
    )


def size_line(path: Path) -> str:
    return f"{path.name}, {path.stat().st_size / 1024:.0f} KiB"


def fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
