"""Readiness and lag of one stream, as ``/readyz`` and ``/metrics`` report them.

Two readiness conditions per stream, read at every check
(:meth:`~pipeline.health.HealthState.watch`):

* ``partitions:<stream>`` (:class:`PartitionsSettled`): the group gave this member its
  assignment (maybe empty: a spare member is ready and idle) and no partition state is
  being restored;
* ``broker:<stream>`` (:class:`BrokerWatch`): the cluster answered within
  ``runtime.broker_timeout_s``, as the source's and the sink's connection monitors say.
  The consumer thread also calls :meth:`BrokerWatch.watch` to log once when the cluster
  goes out of reach and once when it is back.

:class:`LagReporter` exports the consumer lag per assigned partition; the consumer
thread updates it every half second, never on the per-record path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping

from streamfer.errors import StreamferError
from streamfer.pipeline.metrics import StreamRecorder
from streamfer.streams.connection import ConnectionMonitor
from streamfer.streams.source import KafkaSource

log = logging.getLogger(__name__)


class LagReporter:
    """Exports consumer lag per assigned partition; a revoked partition's series goes away.

    Two gauges per partition, both computed on the consumer thread and nowhere on the
    per-record path: records not yet consumed (``lags``, see :meth:`KafkaSource.lag`)
    and the age of the oldest record consumed but not yet resolved (``ages``, see
    :meth:`KafkaSource.lag_seconds`). With the count of partitions assigned (0: this
    member is idle).
    """

    def __init__(self, recorder: StreamRecorder) -> None:
        self.recorder = recorder
        self._partitions: set[int] = set()  # partitions with an exported lag

    def update(
        self, lags: Mapping[tuple[str, int], int], assigned: Collection[tuple[str, int]],
        ages: Mapping[tuple[str, int], float] | None = None,
    ) -> None:  # fmt: skip
        self.recorder.set_lags({partition: n for (_, partition), n in lags.items()})
        for (_, partition), seconds in (ages or {}).items():
            self.recorder.set_lag_seconds(partition, seconds)
        self.recorder.set_partitions_assigned(len(assigned))
        self._partitions.update(p for _, p in lags)
        self._partitions.update(p for _, p in ages or {})
        gone = self._partitions - {p for _, p in assigned}
        for partition in gone:
            self.recorder.forget_partition(partition)
        self._partitions -= gone


def safe_lag(stream: str, source: KafkaSource) -> dict[tuple[str, int], int]:
    """``source.lag()``, or nothing where the cluster cannot say now."""
    try:
        return source.lag()
    except StreamferError as exc:
        log.debug("%s | lag unavailable: %s", stream, exc)
        return {}


class PartitionsSettled:
    """The ``partitions:<stream>`` condition: the group gave this member its assignment
    and no state restore is running (``restoring`` is set by the consumer thread)."""

    def __init__(self, stream: str, source: Callable[[], KafkaSource | None]) -> None:
        self.name = f"partitions:{stream}"
        self._source = source
        self.restoring = threading.Event()

    def __call__(self) -> bool:
        """An empty assignment is ready (idle): in a group with more members than the
        input has partitions, the spare members stand by, ready to take partitions over."""
        source = self._source()
        return source is not None and source.joined and not self.restoring.is_set()


class BrokerWatch:
    """The ``broker:<stream>`` condition: is the cluster reachable?"""

    def __init__(
        self,
        stream: str,
        timeout_s: float,
        recorder: StreamRecorder,
        monitors: Callable[[], list[object | None]],
    ) -> None:
        self.stream = stream
        self.name = f"broker:{stream}"
        self.timeout_s = timeout_s
        self.recorder = recorder
        self._clients = monitors  # the clients' monitors: there once they are started
        self._unreachable_since: float | None = None  # consumer thread only

    def _monitors(self) -> list[ConnectionMonitor]:
        return [m for m in self._clients() if isinstance(m, ConnectionMonitor)]

    def unreachable_s(self) -> float:
        """How long the cluster has been out of reach (0 while it answers)."""
        return max((m.unreachable_s() for m in self._monitors()), default=0.0)

    def __call__(self, gone: float | None = None) -> bool:
        """The readiness condition; the gauge is set wherever it is read (``/readyz`` and
        the consumer loop), so ``/readyz`` and ``/metrics`` never disagree."""
        gone = self.unreachable_s() if gone is None else gone
        reachable = gone < self.timeout_s
        self.recorder.set_broker_reachable(reachable)
        return reachable

    def watch(self, source: KafkaSource) -> None:
        """One log line when the cluster goes out of reach, one when it is back."""
        gone = self.unreachable_s()
        reachable = self(gone)
        if not reachable and self._unreachable_since is None:
            self._unreachable_since = time.monotonic() - gone
            errors = "; ".join(m.last_error or "" for m in self._monitors() if m.last_error)
            log.error(
                "%s | broker unreachable since %.0f s ago (%s); not ready",
                self.stream,
                gone,
                errors or "no answer",
            )
        elif reachable and self._unreachable_since is not None:  # as readiness says
            down = time.monotonic() - self._unreachable_since
            self._unreachable_since = None
            lags = safe_lag(self.stream, source)  # empty: no partition has a position yet
            log.warning(
                "%s | broker reachable again after %.0f s; lag %s",
                self.stream,
                down,
                f"{sum(lags.values()):,}" if lags else "not known yet (partitions rejoining)",
            )
