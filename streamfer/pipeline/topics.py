"""Every stream's output, dead-letter and state changelog topic exists before the pipeline
publishes.

Production clusters usually disable ``auto.create.topics.enable``; a producer
sending to a topic that is not there blocks, then fails every record. So
``Pipeline.start()`` calls :func:`ensure_output_topics` once, before any
stream starts: one metadata request tells which output and DLQ topics are
missing. With ``kafka.create_topics`` (the default) they are created with the
partition count of their stream's input topic and
``kafka.topic_replication_factor`` replicas; a topic another worker created
first counts as created. Otherwise, or when the cluster refuses, the start
fails with a message naming each missing topic, its stream and the fix.

A stream whose input topic does not exist yet is left out (its partition
count is not known, and guessing one would fix it for good): the stream waits
for its input topic (``streamfer.pipeline.inputs``) and calls
``ensure_output_topics(config, streams=[name])`` once it appears.

A stream with ``state.enabled`` also needs its changelog topic
(``<consumer.group_id>.<stream>.state``): created the same way, compacted
(``streamfer.streams.state.changelog_config``). An existing changelog with fewer
partitions than its input topic fails the start: input partition ``p`` keeps
its state in changelog partition ``p``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from streamfer.errors import ConfigError, StreamError
from streamfer.pipeline.config import PipelineConfig
from streamfer.streams.admin import create_topics, max_message_bytes, topic_partitions
from streamfer.streams.client import ProducerOptions
from streamfer.streams.state.changelog import changelog_config

log = logging.getLogger(__name__)

Role = Literal["output", "dead-letter", "state changelog", "shadow"]


@dataclass(frozen=True)
class MissingTopic:
    """An output or DLQ topic that does not exist, and the stream that publishes to it."""

    topic: str
    role: Role
    stream: str
    partitions: int  # as the stream's input topic

    def describe(self) -> str:
        where = f"{self.role} topic {self.topic!r} ({self.partitions} partitions)"
        return f"stream {self.stream}: {where}"


def missing_topics(
    config: PipelineConfig, partitions: Mapping[str, int], streams: Collection[str] | None = None
) -> list[MissingTopic]:
    """The output and DLQ topics absent from ``partitions`` (topic -> partition count)
    of ``streams`` (names; default all) whose input topic exists."""
    missing: list[MissingTopic] = []
    for s in config.streams:
        size = partitions.get(s.input_topic)
        if size is None or (streams is not None and s.name not in streams):
            continue
        wanted: tuple[tuple[str, Role], ...] = (
            (s.output_topic, "output"),
            (s.resolved_dlq_topic, "dead-letter"),
        )
        if s.state.enabled:
            wanted += ((s.state_topic(config.consumer.group_id), "state changelog"),)
        if s.shadow is not None:
            wanted += ((s.shadow.output_topic, "shadow"),)
        missing += [MissingTopic(t, r, s.name, size) for t, r in wanted if t not in partitions]
    return missing


def short_changelogs(
    config: PipelineConfig, partitions: Mapping[str, int], streams: Collection[str] | None = None
) -> list[str]:
    """Existing changelog topics with fewer partitions than their stream's input topic."""
    out = []
    for s in config.streams:
        if streams is not None and s.name not in streams:
            continue
        topic = s.state_topic(config.consumer.group_id)
        have, need = partitions.get(topic), partitions.get(s.input_topic)
        if s.state.enabled and have is not None and need is not None and have < need:
            out.append(
                f"stream {s.name}: state changelog topic {topic!r} has {have} partitions, "
                f"input topic {s.input_topic!r} {need}"
            )
    return out


def ensure_output_topics(
    config: PipelineConfig, timeout_s: float = 10.0, streams: Collection[str] | None = None
) -> list[str]:
    """Create the missing output and DLQ topics (when allowed) of ``streams`` (names;
    default all) whose input topic exists; the names created.

    Raises ConfigError when topics are missing and ``kafka.create_topics`` is
    false, StreamError when the cluster cannot be asked or refuses to create them.
    """
    kafka = config.kafka
    settings = kafka.to_settings()
    group = config.consumer.group_id
    topics = {t for s in config.streams for t in (s.input_topic, s.output_topic)}
    topics |= {s.resolved_dlq_topic for s in config.streams}
    topics |= {s.shadow.output_topic for s in config.streams if s.shadow is not None}
    topics |= {s.state_topic(group) for s in config.streams if s.state.enabled}
    partitions = topic_partitions(settings, topics, timeout_s=timeout_s, client=kafka.client)
    short = short_changelogs(config, partitions, streams)
    if short:
        raise ConfigError(
            f"{settings.describe()} | " + "; ".join(short) + ". Note: a changelog needs as "
            "many partitions as its input topic; add partitions to it (its state is then "
            "rebuilt from the input's committed records on) or delete it"
        )
    missing = missing_topics(config, partitions, streams)
    if not missing:
        return []
    listed = "\n".join(f"  {m.describe()}" for m in missing)
    if not kafka.create_topics:
        raise ConfigError(
            f"{settings.describe()} | {len(missing)} topic(s) missing and kafka.create_topics "
            f"is false:\n{listed}\nNote: create them (partitions as shown) or set "
            "kafka.create_topics: true"
        )
    wanted: dict[str, int] = {}
    for m in missing:  # a topic two streams publish to: the larger input's partition count
        wanted[m.topic] = max(wanted.get(m.topic, 0), m.partitions)
    lags = {s.state_topic(group): s.state.min_compaction_lag_s for s in config.streams}
    plain = {t: n for t, n in wanted.items() if t not in lags}
    try:
        create_topics(
            settings,
            plain,
            replication_factor=kafka.topic_replication_factor,
            timeout_s=timeout_s,
            client=kafka.client,
        )
        for topic, n in wanted.items():
            if topic in lags:
                create_topics(
                    settings,
                    {topic: n},
                    config=changelog_config(lags[topic]),
                    replication_factor=kafka.topic_replication_factor,
                    timeout_s=timeout_s,
                    client=kafka.client,
                )
    except StreamError as exc:
        raise StreamError(
            f"{settings.describe()} | could not create {len(wanted)} missing topic(s) "
            f"({_reason(exc)}):\n{listed}\nNote: create them (partitions as shown, "
            f"replication factor {kafka.topic_replication_factor or 'the broker default'}) or let "
            "this client create them"
        ) from exc
    for m in missing:
        log.info("created %s", m.describe())
    return sorted(wanted)


def _reason(exc: StreamError) -> str:
    """The broker's error code and its meaning (what the admin adapters put after
    ``failed: ``), not the whole request."""
    return str(exc).rpartition(" failed: ")[2]


def message_limits(config: PipelineConfig, timeout_s: float = 10.0) -> dict[str, int]:
    """``max.message.bytes`` of every output and dead-letter topic: dead letters are cut
    to fit it and the producer's batches kept within it. Empty when the cluster does
    not say (no DescribeConfigs permission): the producer's own limits apply then."""
    topics = {t for s in config.streams for t in (s.output_topic, s.resolved_dlq_topic)}
    settings = config.kafka.to_settings()
    try:
        return max_message_bytes(settings, topics, timeout_s=timeout_s, client=config.kafka.client)
    except StreamError as exc:
        log.warning(
            "%s | topic limits unknown (%s); dead letters are cut to the producer's "
            "max_request_size only",
            settings.describe(),
            exc,
        )
        return {}


def within_limits(options: ProducerOptions, limits: Iterable[int | None]) -> ProducerOptions:
    """``options`` with ``batch_size`` at most the smallest of ``limits`` (bytes).

    A topic refuses a whole record batch larger than its ``max.message.bytes``, and a
    batch may gather many small records up to ``batch_size``: a dead-letter topic with a
    small limit would otherwise refuse dead letters that each fit.
    """
    known = [n for n in limits if n is not None]
    if not known or min(known) >= options.batch_size:
        return options
    log.info(
        "producer batch size %d bytes lowered to %d: the smallest max.message.bytes of the "
        "topics written",
        options.batch_size,
        min(known),
    )
    return dataclasses.replace(options, batch_size=min(known))
