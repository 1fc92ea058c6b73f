"""The ``consumer`` and ``producer`` sections: every default is the client option's own
(``streamfer.streams.client``); a stream's latency knobs fill in its waits."""

from __future__ import annotations

from functools import partial
from typing import Literal

from pydantic import Field

from streamfer.pipeline.config.base import Frozen, option_default
from streamfer.pipeline.latency import LatencyKnobs
from streamfer.streams.client import Compression, ConsumerOptions, ProducerOptions

_consumer = partial(option_default, ConsumerOptions)
_producer = partial(option_default, ProducerOptions)


class ConsumerConfig(Frozen):
    """Consumer settings; each default is the client option's own (``streamfer.streams.client``)."""

    group_id: str = "streamfer"
    """Consumer group of every stream of the pipeline; also names state changelog topics."""
    max_poll_records: int = Field(default=_consumer("max_poll_records"), ge=1)
    """Most records one poll returns (one poll of a partition stays one batch)."""
    fetch_max_wait_ms: int | None = Field(default=None, ge=0)
    """Longest the broker waits to fill a fetch, for every stream; unset: each stream's latency
    profile (a stream's latency.fetch_max_wait_ms wins)."""
    max_partition_fetch_bytes: int = Field(default=_consumer("max_partition_fetch_bytes"), ge=1024)
    """Most bytes one fetch returns per partition; must exceed the largest record."""
    session_timeout_ms: int = Field(default=_consumer("session_timeout_ms"), ge=1000)
    """A worker silent this long is dropped from the group and its partitions reassigned."""
    max_poll_interval_ms: int = Field(default=_consumer("max_poll_interval_ms"), ge=1000)
    """A worker that does not poll for this long leaves the group."""
    auto_offset_reset: Literal["earliest", "latest"] = _consumer("auto_offset_reset")
    """Where a group without a committed offset starts reading."""

    def options(self, knobs: LatencyKnobs, *, isolation_level: Literal["read_uncommitted",
                "read_committed"] = "read_uncommitted") -> ConsumerOptions:  # fmt: skip
        """The options of one stream's consumer; its waits come from ``knobs`` (the stream's
        resolved latency, ``StreamConfig.knobs``)."""
        own = self.model_dump(exclude={"fetch_max_wait_ms"})  # each key named as the option
        return ConsumerOptions(
            **own,
            fetch_max_wait_ms=knobs.fetch_max_wait_ms,
            fetch_min_bytes=knobs.fetch_min_bytes,
            isolation_level=isolation_level,
        )


class ProducerConfig(Frozen):
    """Producer settings; each default is the client option's own (``streamfer.streams.client``).

    ``delivery_timeout_ms``: how long the client retries a decision or dead letter the
    cluster does not take before reporting it failed (the stream then stops, or counts
    a dead letter as ``dead_letter_failed``: ``dead_letters.on_failure``).
    """

    linger_ms: int | None = Field(default=None, ge=0)
    """How long the producer waits to fill a batch of decisions, for every stream; unset: each
    stream's latency profile (a stream's latency.linger_ms wins)."""
    compression_type: Compression = _producer("compression")
    """Compression of produced batches."""
    max_request_size: int = Field(default=_producer("max_request_size"), ge=1024)
    """Largest produce request; also caps a decision or dead letter."""
    delivery_timeout_ms: int = Field(default=_producer("delivery_timeout_ms"), ge=1000)
    """How long the client retries a publish the cluster does not take before it counts as
    failed."""
    transaction_timeout_ms: int = Field(default=_producer("transaction_timeout_ms"), ge=1000)
    """With delivery: exactly_once, the broker aborts a transaction open longer than this."""

    def options(self, knobs: LatencyKnobs, *, transactional_id: str | None = None
                ) -> ProducerOptions:  # fmt: skip
        """The options of one stream's producer; its linger comes from ``knobs``."""
        own = self.model_dump(exclude={"linger_ms", "compression_type"})  # named as the option
        return ProducerOptions(
            **own,
            linger_ms=knobs.linger_ms,
            compression=self.compression_type,
            transactional_id=transactional_id,
        )
