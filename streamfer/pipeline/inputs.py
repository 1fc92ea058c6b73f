"""Is a stream's input topic there? Said once in the log, on ``/readyz`` and in a gauge.

A consumer subscribed to a topic that does not exist finds it only at its next
periodic metadata refresh: five minutes by default in librdkafka
(``topic.metadata.refresh.interval.ms``) and in kafka-python
(``metadata_max_age_ms``). Lowering those for every consumer would add metadata
requests for as long as the pipeline runs; lowering them only while a topic is
missing needs a new client anyway (librdkafka reads them once, at creation), and
re-subscribing does not make either client refresh at once in every version. So
the stream asks the cluster itself, through the admin client (whose metadata
requests never auto-create a topic), about once a second while its input is
missing, and creates its consumer only once the topic exists: a consumer
subscribing to an existing topic is assigned its partitions within its first
polls, with both clients. Once everything exists nothing is asked beyond what
the consumer does anyway. A stream that has no partitions assigned, or whose
consumer reported the topic unknown (librdkafka keeps the partitions of a deleted
topic assigned and only says so), asks now and then (1 s after, then less and
less often, at most every 30 s) whether its topic was deleted, and if so closes
its consumer (which would find the topic again only at its next metadata
refresh) and waits again.

While the topic is missing: the readiness problem ``topic_missing:<stream>:<topic>``
is raised, ``streamfer_input_topic_missing{stream,...,topic}`` is 1, one WARNING
said so, and one reminder is logged a minute; one INFO line when it appears.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from streamfer.pipeline.config.kafka import KafkaConfig
from streamfer.pipeline.health import HealthState
from streamfer.pipeline.metrics import StreamRecorder
from streamfer.streams.admin import topic_partitions

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0  # while missing: how often the cluster is asked
REMIND_EVERY_S = 60.0  # while missing: one log line this often
UNASSIGNED_FIRST_S = 1.0  # no partitions: the first check for a deleted topic
UNASSIGNED_MOST_S = 30.0  # ... then doubling up to this
CHECK_TIMEOUT_S = 5.0  # one metadata request about the input topic


def partition_count(kafka: KafkaConfig, topic: str) -> Callable[[], int | None]:
    """``exists`` of :class:`InputTopic`: ``topic``'s partition count, asked of the
    cluster through the configured client (None: no such topic; StreamError: the cluster
    cannot be asked)."""

    def count() -> int | None:
        settings = kafka.to_settings()
        return topic_partitions(
            settings, [topic], timeout_s=CHECK_TIMEOUT_S, client=kafka.client
        ).get(topic)

    return count


class InputTopic:
    """The input topic of one stream as the stream's consumer thread sees it.

    ``exists()`` asks the cluster (returns the partition count, None when the topic
    does not exist; raises StreamError when the cluster cannot be asked). Every
    method runs on the consumer thread; ``missing`` may be read from any.
    """

    def __init__(
        self,
        stream: str,
        topic: str,
        exists: Callable[[], int | None],
        health: HealthState,
        recorder: StreamRecorder,
        *,
        clock: Callable[[], float] = time.monotonic,
        check_every_s: float = CHECK_EVERY_S,
        remind_every_s: float = REMIND_EVERY_S,
    ) -> None:
        self.stream, self.topic = stream, topic
        self._exists, self._health, self._recorder = exists, health, recorder
        self._clock = clock
        self.check_every_s, self.remind_every_s = check_every_s, remind_every_s
        self._missing = threading.Event()  # set on the consumer thread, read from any
        self._missing_since = 0.0
        self._next_remind = 0.0
        self._next_unassigned = 0.0
        self._unassigned_wait = UNASSIGNED_FIRST_S
        self._was_assigned = True  # the first unassigned check waits UNASSIGNED_FIRST_S

    @property
    def missing(self) -> bool:
        return self._missing.is_set()

    @property
    def problem(self) -> str:
        """The readiness problem raised while the topic is missing."""
        return f"topic_missing:{self.stream}:{self.topic}"

    def present(self) -> bool:
        """Ask the cluster now; True when the topic exists. A topic found missing is
        reported (see the module doc); a missing topic that appeared, too."""
        partitions = self._exists()
        if partitions is None:
            self._mark_missing(deleted=False)
            return False
        if self.missing:
            gone = self._clock() - self._missing_since
            log.info(
                "%s | input topic %s exists now (%d partitions) after %.0f s of waiting; "
                "consuming",
                self.stream,
                self.topic,
                partitions,
                gone,
            )
        self._set(False)
        return True

    def wait(self, stop: threading.Event) -> bool:
        """While missing: wait ``check_every_s`` (or until ``stop``), then ask again;
        True once the topic exists. Logs the reminder when due."""
        if stop.wait(self.check_every_s):
            return False
        now = self._clock()
        if now >= self._next_remind:
            self._next_remind = now + self.remind_every_s
            log.warning(
                "%s | still waiting for input topic %s (missing for %.0f s); not ready",
                self.stream,
                self.topic,
                now - self._missing_since,
            )
        return self.present()

    def deleted(self, assigned: bool, suspect: bool = False) -> bool:
        """Called regularly while consuming: True when the stream has had no partitions
        (or the client reported the topic unknown: ``suspect``) for a while and the
        cluster says the topic is gone; then call ``lost()`` once the consumer is closed.
        With partitions assigned and nothing suspect it asks nothing."""
        now = self._clock()
        if assigned and not suspect:
            self._was_assigned = True
            return False
        if self._was_assigned:  # just lost them (or never had any): ask soon
            self._was_assigned = False
            self._unassigned_wait = UNASSIGNED_FIRST_S
            self._next_unassigned = now + self._unassigned_wait
            return False
        if now < self._next_unassigned:
            return False
        self._unassigned_wait = min(self._unassigned_wait * 2, UNASSIGNED_MOST_S)
        self._next_unassigned = now + self._unassigned_wait
        return self._exists() is None

    def lost(self) -> None:
        """After ``deleted()`` said so and the consumer was closed: report it (waiting)."""
        self._mark_missing(deleted=True)

    def _mark_missing(self, deleted: bool) -> None:
        if self.missing:
            return
        self._set(True)
        self._missing_since = self._clock()
        self._next_remind = self._missing_since + self.remind_every_s
        if deleted:
            what = "was deleted; waiting for it to be created again"
        else:
            what = (
                "does not exist yet; waiting for it (created by an admin or a producer's "
                "auto-create)"
            )
        log.warning(
            "%s | input topic %s %s. Not ready until it appears.", self.stream, self.topic, what
        )

    def _set(self, missing: bool) -> None:
        if missing:
            self._missing.set()
        else:
            self._missing.clear()
        self._health.set_problem(self.problem, missing)
        self._recorder.set_input_topic_missing(self.topic, missing)
