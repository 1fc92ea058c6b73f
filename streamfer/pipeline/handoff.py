"""Where the threads of one stream meet: the engine queue and model swaps.

* :class:`RowQueue`: the consumer thread puts prepared record batches, the engine
  thread takes them, in consume order; bounded by the rows it holds, so a slow engine
  stops the consumer from polling (lag grows, memory does not). :func:`hand_over` puts
  one without ever getting stuck behind an engine that died; :data:`STOP` (put last)
  ends the engine thread.
* :class:`Swap`: a new model handed from the reloading thread to the engine thread,
  applied between two batches (``streamfer.pipeline.reload``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np

STOP: Final = object()
_PUT_WAIT_S = 0.2  # a full queue: how often the consumer checks the engine is alive


class InferFn(Protocol):
    """How a stream's batches reach its runner: feeds in, outputs out (``engine_wiring``)."""

    def __call__(self, feeds: dict[str, np.ndarray], /) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class Swap:
    """A new model for the engine thread: ``infer`` replaces the worker's between two
    batches; ``applied()`` runs right then on the engine thread (the stream switches its
    decisions' model identity there), then ``done`` is set."""

    infer: InferFn
    applied: Callable[[], None]
    done: threading.Event = field(default_factory=threading.Event)


class RowQueue:
    """A FIFO of prepared batches bounded by the rows it holds (not the batches).

    ``put`` blocks while ``max_rows`` rows wait (a single batch larger than that is
    taken when the queue is empty); ``get`` blocks until an item arrives.
    """

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max(1, max_rows)
        self._items: deque[Any] = deque()
        self._rows = 0
        self._cond = threading.Condition()

    @property
    def rows(self) -> int:
        return self._rows

    def put(self, item: Any, rows: int, timeout_s: float) -> bool:
        """False if there was no room within ``timeout_s``."""
        with self._cond:
            fits = lambda: not self._rows or self._rows + rows <= self.max_rows  # noqa: E731
            if not fits() and not self._cond.wait_for(fits, timeout_s):
                return False
            self._items.append((item, rows))
            self._rows += rows
            self._cond.notify_all()
            return True

    def wait_room(self, rows: int, timeout_s: float) -> bool:
        """Wait until ``rows`` more rows fit (or the queue is empty); False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._rows or self._rows + rows <= self.max_rows, timeout_s
            )

    def put_nowait(self, item: Any) -> None:
        """Put without waiting for room (the STOP sentinel)."""
        with self._cond:
            self._items.append((item, 0))
            self._cond.notify_all()

    def get(self, timeout_s: float) -> Any | None:
        with self._cond:
            if not self._items and (
                timeout_s <= 0 or not self._cond.wait_for(lambda: bool(self._items), timeout_s)
            ):
                return None
            item, rows = self._items.popleft()
            self._rows -= rows
            self._cond.notify_all()
            return item


def hand_over(inbox: RowQueue, item: Any, rows: int, engine_alive: Callable[[], bool],
              deadline: float = float("inf")) -> bool:  # fmt: skip
    """Put ``item`` on the engine's queue; False if the engine died behind a full queue
    (or ``deadline``, monotonic seconds, passed): the consumer is told, never stuck."""
    while engine_alive() and time.monotonic() < deadline:
        if inbox.put(item, rows, _PUT_WAIT_S):
            return True
    return False
