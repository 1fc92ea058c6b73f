"""``python -m streamfer.models.train fraud|sensor|camera|all``: retrain, export, evaluate,
write cards."""

from __future__ import annotations

import argparse
import importlib
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamfer.models.train",
        description="Retrain a reference model, export it to models/<name>.onnx and rewrite "
        "its model card with held-out metrics. Needs the 'train' extra (PyTorch).",
    )
    parser.add_argument("model", choices=["fraud", "sensor", "camera", "all"])
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("streamfer.models.train | PyTorch is not installed. Note: pip install -e '.[train]'")
        return 2
    names = ["fraud", "sensor", "camera"] if args.model == "all" else [args.model]
    for name in names:
        importlib.import_module(f"streamfer.models.train.{name}").train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
