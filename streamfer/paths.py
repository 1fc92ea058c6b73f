"""Where streamfer finds what it ships and where it keeps its caches.

Shipped files (the Kafka POM and broker configs, the pipeline configs) sit in
``deploy/kafka`` and ``deploy/configs`` of a checkout, and the wheel carries the
same files inside the package (``streamfer/kafka``, ``streamfer/configs``).
Caches go to the checkout's ``.cache/`` when running from one, else to the
user's cache directory (XDG). Nothing here depends on the current directory,
so every command works from anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def checkout_root() -> Path | None:
    """The repository this package runs from, or None when it is installed from a wheel."""
    root = PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / "deploy").is_dir():
        return root
    return None


def shipped(*parts: str) -> Path:
    """A file that ships with streamfer, e.g. ``shipped("kafka", "pom.xml")``."""
    root = checkout_root()
    base = root / "deploy" if root is not None else PACKAGE_DIR
    return base.joinpath(*parts)


def shipped_config(name: str) -> Path:
    """A shipped pipeline config by name (``fraud`` -> ``deploy/configs/fraud.yaml``)."""
    return shipped("configs", f"{name}.yaml")


def shipped_config_names() -> list[str]:
    """The names ``shipped_config`` accepts, sorted."""
    return sorted(p.stem for p in shipped("configs").glob("*.yaml"))


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/streamfer``, else ``~/.cache/streamfer``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streamfer"


def cache_dir(*parts: str) -> Path:
    """A cache folder: the checkout's ``.cache/`` when running from one, else the user's."""
    root = checkout_root()
    base = root / ".cache" if root is not None else user_cache_dir()
    return base.joinpath(*parts)
