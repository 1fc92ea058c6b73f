"""Topic administration through kafka-python's ``KafkaAdminClient``.

Used when ``kafka.client`` is kafka-python. The DescribeTopics request never
auto-creates a topic, whatever the broker allows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import (
    BrokerResponseError,
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from streamfer.errors import StreamError
from streamfer.streams.security import PasswordFilter
from streamfer.streams.settings import KafkaSettings

# KafkaAdminClient logs its whole configuration, SASL password included, at DEBUG (-vv).
logging.getLogger("kafka.admin.client").addFilter(PasswordFilter())

_MAX_BYTES = "max.message.bytes"
# a topic the cluster does not know, or will not describe to this client
_UNSEEN = frozenset((UnknownTopicOrPartitionError.errno, TopicAuthorizationFailedError.errno))


class KafkaPythonAdmin:
    """``TopicAdmin`` over ``kafka.admin.KafkaAdminClient``."""

    def __init__(self, admin: KafkaAdminClient, settings: KafkaSettings, timeout_s: float) -> None:
        self._a = admin
        self._settings = settings
        self._timeout_ms = max(int(timeout_s * 1000), 500)

    def _fail(self, what: str, exc: KafkaError) -> StreamError:
        """The broker's error code and its meaning, not the whole request kafka-python echoes."""
        why = (
            f"{exc.message}: {exc.description}"
            if isinstance(exc, BrokerResponseError)
            else repr(exc)
        )
        return StreamError(f"{self._settings.describe()} | {what} failed: {why}")

    def ping(self) -> None:
        try:
            self._a.describe_cluster()
        except (KafkaError, OSError, ValueError) as exc:
            raise StreamError(f"{self._settings.describe()} | no broker answered: {exc}") from exc

    def partitions(self, topics: Sequence[str]) -> dict[str, int]:
        try:
            described = self._a.describe_topics(list(topics))
        except KafkaError as exc:
            raise self._fail(f"describing topics {list(topics)}", exc) from exc
        return {
            t["name"]: len(t["partitions"]) for t in described if t["error_code"] not in _UNSEEN
        }

    def create(
        self, topics: Mapping[str, int], config: Mapping[str, str], replication_factor: int
    ) -> None:
        new = [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=replication_factor,
                topic_configs=dict(config),
            )
            for name, partitions in topics.items()
        ]
        try:
            for topic in new:  # one by one so an existing topic never hides a failed one
                try:
                    self._a.create_topics([topic], timeout_ms=self._timeout_ms)
                except TopicAlreadyExistsError:
                    continue  # created meanwhile by someone else: counts as created
            self._a.wait_for_topics(list(topics), timeout_ms=self._timeout_ms)
        except KafkaError as exc:
            raise self._fail(f"creating topics {sorted(topics)}", exc) from exc

    def max_message_bytes(self, topics: Sequence[str]) -> dict[str, int]:
        wanted = [ConfigResource(ConfigResourceType.TOPIC, n, configs=[_MAX_BYTES]) for n in topics]
        try:
            described = self._a.describe_configs(wanted, config_filter="all")
        except KafkaError as exc:
            raise self._fail(f"describing the configs of topics {list(topics)}", exc) from exc
        out: dict[str, int] = {}
        for name, configs in described.get("topic", {}).items():
            value = configs.get(_MAX_BYTES, {}).get("value")
            if value is not None:
                out[name] = int(value)
        return out

    def delete(self, topics: Sequence[str]) -> None:
        if not topics:
            return
        try:
            self._a.delete_topics(list(topics), timeout_ms=self._timeout_ms)
        except UnknownTopicOrPartitionError:
            return  # gone already: counts as deleted
        except KafkaError as exc:
            raise self._fail(f"deleting topics {sorted(topics)}", exc) from exc

    def close(self) -> None:
        self._a.close()


def open_admin(settings: KafkaSettings, timeout_s: float) -> KafkaPythonAdmin:
    """An admin client on ``settings``'s cluster (kafka-python connects here)."""
    timeout_ms = max(int(timeout_s * 1000), 500)
    kwargs: dict[str, Any] = settings.admin_kwargs()
    kwargs["client_id"] = f"{settings.client_id}-admin"
    try:
        admin = KafkaAdminClient(
            **kwargs, request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms
        )
    except (KafkaError, OSError, ValueError) as exc:
        raise StreamError(f"{settings.describe()} | cannot reach the broker: {exc}") from exc
    return KafkaPythonAdmin(admin, settings, timeout_s)
