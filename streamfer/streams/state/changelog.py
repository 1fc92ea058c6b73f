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

import logging
from collections.abc import Callable

from streamfer.errors import StateError
from streamfer.streams.acks import AckCount
from streamfer.streams.sink import KafkaSink
from streamfer.streams.tracker import OffsetTracker, Span, SpanGroup

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


class Window:
    """The polls of one partition since its state was last flushed: their spans are held
    as one :class:`~streams.tracker.SpanGroup` until the flush's entries are acknowledged,
    so the commit position passes all of them or none."""

    __slots__ = ("group", "spans")

    def __init__(self) -> None:
        self.group = SpanGroup()
        self.spans: list[Span] = []


class _Acks(AckCount):
    """The delivery callback of one flush's entries: releases the window's spans at the
    last ack."""

    __slots__ = ("on_failure", "spans", "tracker", "where")

    def __init__(self, tracker: OffsetTracker, spans: list[Span], size: int, where: str,
                 on_failure: Callable[[BaseException], None]) -> None:  # fmt: skip
        super().__init__(size)
        self.tracker = tracker
        self.spans = spans
        self.where = where
        self.on_failure = on_failure

    def acked(self) -> None:
        self.tracker.release_many(self.spans)

    def failed(self, error: object) -> None:
        first, last = self.spans[0].first, self.spans[-1].end - 1
        self.on_failure(
            StateError(
                f"{self.where} | state changelog entry not written ({error}); records "
                f"{first}..{last} stay uncommitted. Note: the stream stops; a restart "
                "consumes them again"
            )
        )


class ChangelogWriter:
    """Holds each poll's span in its partition's window and sends a window's entries
    through the stream's sink, so exactly-once streams write them in the same
    transaction as the decisions and offsets.

    Ordering (at-least-once): a poll's span is *held* (``hold``) before any of its
    records can resolve and released only when the entries of its window are
    acknowledged, so no commit passes a record whose state is not in the changelog yet;
    the window's spans are passed together (see :mod:`streamfer.streams.state.manager`
    for why the restore rule needs that). Each send checks under the transaction lock
    that the spans are alive, as decisions do.
    """

    def __init__(self, sink: KafkaSink, topic: str, tracker: OffsetTracker,
                 on_failure: Callable[[BaseException], None]) -> None:  # fmt: skip
        self.sink = sink
        self.topic = topic
        self.tracker = tracker
        self.on_failure = on_failure

    def hold(self, window: Window, span: Span) -> bool:
        """Add the poll tracked as ``span`` to ``window``; False if it was abandoned."""
        if not self.tracker.hold(span, window.group):
            return False
        window.spans.append(span)
        return True

    def write(self, window: Window, partition: int, keys: list[bytes],
              values: list[bytes | None]) -> bool:  # fmt: skip
        """Send the window's entries; its spans are released at the last ack (at once
        if there are none). False if the window's polls were abandoned."""
        spans = window.spans
        if not spans:
            return True
        if not keys:
            self.tracker.release_many(spans)
            return True
        where = f"{self.topic}[{partition}]"
        acks = _Acks(self.tracker, spans, len(keys), where, self.on_failure)
        alive = spans[-1]  # abandoned together: the partition stopped being tracked
        sent = self.sink.send_many(
            self.topic, values, keys, acks, only_if=lambda: alive.alive, partition=partition
        )
        if not sent:
            log.debug("%s | %d entries of an abandoned poll not sent", where, len(keys))
        return sent
