"""The changelog topic of a stream's state: its name, its settings, and the batch writer.

One topic per stateful stream, ``<consumer group>.<stream>.state``, with the
input topic's partition count: the entries of input partition ``p`` go to
changelog partition ``p`` (explicitly, not by key hash), so one partition's
state is restored from one changelog partition.

It is compacted (the newest entry per key stays) with ``min.compaction.lag.ms``
keeping every entry younger than the lag: restore needs, per key, the newest
entry below the committed offset, which after a crash may be older than the
newest entry (see :mod:`streamfer.streams.state.restore` for the guarantee and its limit).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

from streamfer.errors import StateError
from streamfer.streams.sink import KafkaSink
from streamfer.streams.tracker import OffsetTracker, Span

log = logging.getLogger(__name__)

_HOUR_MS = 3_600_000


def changelog_topic(group_id: str, stream: str) -> str:
    return f"{group_id}.{stream}.state"


def changelog_config(min_compaction_lag_s: float) -> dict[str, str]:
    """Topic settings of a changelog: compacted, recent history kept for ``min_compaction_lag_s``;
    segments roll at least hourly (only closed segments are ever compacted)."""
    lag_ms = int(min_compaction_lag_s * 1000)
    return {
        "cleanup.policy": "compact",
        "min.compaction.lag.ms": str(lag_ms),
        "segment.ms": str(max(lag_ms, _HOUR_MS)),
    }


class _Acks:
    """The delivery callback of one batch's entries: releases its span at the last ack."""

    __slots__ = ("count", "failed", "on_failure", "size", "span", "tracker", "where")

    def __init__(self, tracker: OffsetTracker, span: Span, size: int, where: str,
                 on_failure: Callable[[BaseException], None]) -> None:  # fmt: skip
        self.tracker = tracker
        self.span = span
        self.size = size
        self.where = where
        self.on_failure = on_failure
        self.count = itertools.count(1)  # next() is atomic: callbacks may run on two threads
        self.failed = False

    def __call__(self, error: object | None, _message: object) -> None:
        if error is not None:
            if not self.failed:
                self.failed = True
                self.on_failure(
                    StateError(
                        f"{self.where} | state changelog entry not written ({error}); records "
                        f"{self.span.first}..{self.span.end - 1} stay uncommitted. Note: the "
                        "stream stops; a restart consumes them again"
                    )
                )
            return
        if next(self.count) == self.size:
            self.tracker.release(self.span)


class ChangelogWriter:
    """Sends a batch's entries through the stream's sink, so exactly-once streams write
    them in the same transaction as the decisions and offsets.

    Ordering (at-least-once): the batch's span is *held* before anything of it is sent and
    released only when every entry is acknowledged, so no commit passes a record whose
    state is not in the changelog yet, whenever its decision is acknowledged. Each send
    checks under the transaction lock that the span is alive, as decisions do.
    """

    def __init__(self, sink: KafkaSink, topic: str, tracker: OffsetTracker,
                 on_failure: Callable[[BaseException], None]) -> None:  # fmt: skip
        self.sink = sink
        self.topic = topic
        self.tracker = tracker
        self.on_failure = on_failure

    def write(self, span: Span, partition: int, keys: list[bytes], values: list[bytes | None]
              ) -> bool:  # fmt: skip
        """Send the entries of the batch tracked as ``span``; False if it was abandoned."""
        if not keys:
            return True
        if not self.tracker.hold(span):
            return False
        where = f"{self.topic}[{partition}]"
        acks = _Acks(self.tracker, span, len(keys), where, self.on_failure)
        sent = self.sink.send_many(
            self.topic, values, keys, acks, only_if=lambda: span.alive, partition=partition
        )
        if not sent:
            log.debug("%s | %d entries of an abandoned poll not sent", where, len(keys))
        return sent
