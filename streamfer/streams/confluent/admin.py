"""Topic administration through confluent-kafka's ``AdminClient`` (librdkafka).

Used when ``kafka.client`` is confluent-kafka, so kafka-python is never loaded. Topics
are listed from the cluster's metadata (a request that never creates a topic); a
created topic counts once every partition has a leader.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from streamfer.errors import StreamError
from streamfer.streams.confluent.common import error_of
from streamfer.streams.settings import KafkaSettings

_MAX_BYTES = "max.message.bytes"
_VISIBLE_POLL_S = 0.1  # how often a created topic is looked for in the metadata
_EXISTS = KafkaError.TOPIC_ALREADY_EXISTS
_UNKNOWN = KafkaError.UNKNOWN_TOPIC_OR_PART


def _result(future: Future[Any], timeout_s: float) -> Any:
    return future.result(timeout=timeout_s)


class ConfluentAdmin:
    """``TopicAdmin`` over ``confluent_kafka.admin.AdminClient``."""

    def __init__(self, admin: AdminClient, settings: KafkaSettings, timeout_s: float) -> None:
        self._a = admin
        self._settings = settings
        self._timeout_s = timeout_s

    def _fail(self, what: str, exc: BaseException) -> StreamError:
        err = error_of(exc)
        why = f"{err.name()}: {err.str()}" if isinstance(err, KafkaError) else repr(err)
        return StreamError(f"{self._settings.describe()} | {what} failed: {why}")

    def _metadata(self, what: str) -> Any:
        try:
            return self._a.list_topics(timeout=self._timeout_s)
        except KafkaException as exc:
            raise StreamError(
                f"{self._settings.describe()} | cannot reach the broker to {what}: {error_of(exc)}"
            ) from exc

    def ping(self) -> None:
        self._metadata("answer a metadata request")

    def partitions(self, topics: Sequence[str]) -> dict[str, int]:
        known = self._metadata("describe topics").topics
        return {
            name: len(known[name].partitions)
            for name in topics
            if name in known and known[name].error is None
        }

    def create(
        self, topics: Mapping[str, int], config: Mapping[str, str], replication_factor: int
    ) -> None:
        what = f"creating topics {sorted(topics)}"
        new = [
            NewTopic(name, partitions, replication_factor, config=dict(config))
            for name, partitions in topics.items()
        ]
        self._metadata("create topics")  # an unreachable cluster is said as such
        timeout = self._timeout_s
        futures = self._a.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
        for future in futures.values():
            try:
                _result(future, timeout)
            except KafkaException as exc:
                if error_of(exc).code() != _EXISTS:  # created meanwhile: counts as created
                    raise self._fail(what, exc) from exc
        self._wait_for_leaders(topics, what)

    def _wait_for_leaders(self, topics: Mapping[str, int], what: str) -> None:
        deadline = time.monotonic() + self._timeout_s
        while True:
            known = self._metadata("create topics").topics
            ready = [
                name
                for name in topics
                if name in known
                and known[name].error is None
                and known[name].partitions
                and all(p.leader >= 0 for p in known[name].partitions.values())
            ]
            if len(ready) == len(topics):
                return
            if time.monotonic() >= deadline:
                missing = sorted(set(topics) - set(ready))
                raise StreamError(
                    f"{self._settings.describe()} | {what} failed: {missing} had no leader "
                    f"after {self._timeout_s:g} s. Note: is every broker up?"
                )
            time.sleep(_VISIBLE_POLL_S)  # the metadata catches up with the controller

    def max_message_bytes(self, topics: Sequence[str]) -> dict[str, int]:
        wanted = [ConfigResource(ResourceType.TOPIC, name) for name in topics]
        futures = self._a.describe_configs(wanted, request_timeout=self._timeout_s)
        out: dict[str, int] = {}
        for resource, future in futures.items():
            try:
                entries = _result(future, self._timeout_s)
            except KafkaException as exc:
                if error_of(exc).code() == _UNKNOWN:
                    continue  # the cluster does not know it: left out
                raise self._fail(f"describing the configs of topics {sorted(topics)}", exc) from exc
            entry = entries.get(_MAX_BYTES)
            if entry is not None and entry.value is not None:
                out[resource.name] = int(entry.value)
        return out

    def delete(self, topics: Sequence[str]) -> None:
        if not topics:
            return
        timeout = self._timeout_s
        futures = self._a.delete_topics(list(topics), operation_timeout=timeout)
        for future in futures.values():
            try:
                _result(future, timeout)
            except KafkaException as exc:
                if error_of(exc).code() != _UNKNOWN:  # gone already: counts as deleted
                    raise self._fail(f"deleting topics {sorted(topics)}", exc) from exc

    def close(self) -> None:
        """Nothing to release: librdkafka's admin client stops when collected."""


def open_admin(settings: KafkaSettings, timeout_s: float) -> ConfluentAdmin:
    """An admin client on ``settings``'s cluster (no I/O until the first request)."""
    conf: dict[str, Any] = {
        **settings.librdkafka_config(),
        "client.id": f"{settings.client_id}-admin",
        "socket.timeout.ms": max(int(timeout_s * 1000), 500),
        "log_level": 0,  # refused connections are reported by the calls that fail
    }
    return ConfluentAdmin(AdminClient(conf), settings, max(timeout_s, 0.5))
