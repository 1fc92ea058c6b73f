"""Fixtures for the pipeline tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from streamfer.logs import StderrHandler


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """A command run in-process configures logging (``streamfer.logs``); undo it after."""
    root, protocol = logging.getLogger(), logging.getLogger("kafka.protocol")
    before, levels = list(root.handlers), (root.level, protocol.level)
    yield
    for handler in root.handlers[:]:
        if isinstance(handler, StderrHandler) and handler not in before:
            root.removeHandler(handler)
    root.setLevel(levels[0])
    protocol.setLevel(levels[1])
