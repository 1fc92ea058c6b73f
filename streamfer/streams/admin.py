"""Topic administration and broker probes, through the configured Kafka client.

``topic_partitions``, ``create_topics``, ``max_message_bytes`` and ``delete_topics``
take the cluster either as a bootstrap address (a plaintext cluster such as the
local broker) or as the :class:`~streamfer.streams.settings.KafkaSettings` every
consumer and producer of a pipeline uses, SASL and SSL included, and the client
library by name (``kafka.client``; confluent-kafka by default): with confluent-kafka,
kafka-python is never imported. Each call opens one admin client
(``ClientFactory.admin``) and closes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

from streamfer.errors import StreamError
from streamfer.streams.client import DEFAULT_CLIENT, ClientName, TopicAdmin
from streamfer.streams.factory import client_factory
from streamfer.streams.security import LOGIN_CHECK_TIMEOUT_S, check_login
from streamfer.streams.settings import (
    BOOTSTRAP_ENV,
    DEFAULT_BOOTSTRAP,
    KafkaSettings,
    default_bootstrap,
)

__all__ = [
    "BOOTSTRAP_ENV",
    "DEFAULT_BOOTSTRAP",
    "broker_answers",
    "create_topics",
    "default_bootstrap",
    "delete_topics",
    "max_message_bytes",
    "topic_partitions",
    "wait_for_broker",
]

Cluster = str | KafkaSettings


@contextmanager
def _admin(cluster: Cluster, timeout_s: float, client: ClientName) -> Iterator[TopicAdmin]:
    """An admin client on ``cluster``, closed on exit. A refused TLS or SASL login fails
    at once, explained (``streamfer.streams.security``)."""
    if isinstance(cluster, str):
        settings = KafkaSettings(bootstrap_servers=cluster)
    else:
        settings = cluster
        check_login(settings, timeout_s=min(timeout_s, LOGIN_CHECK_TIMEOUT_S))
    admin = client_factory(client).admin(settings, timeout_s)
    try:
        yield admin
    finally:
        admin.close()


def _per_topic(
    cluster: Cluster,
    topics: Iterable[str],
    timeout_s: float,
    client: ClientName,
    ask: Callable[[TopicAdmin, list[str]], dict[str, int]],
) -> dict[str, int]:
    """``ask`` one admin client about the topics (each once, sorted); none: no client."""
    names = sorted(set(topics))
    if not names:
        return {}
    with _admin(cluster, timeout_s, client) as admin:
        return ask(admin, names)


def broker_answers(
    bootstrap: str, timeout_s: float = 2.0, *, client: ClientName = DEFAULT_CLIENT
) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request in time."""
    try:
        with _admin(bootstrap, timeout_s, client) as admin:
            admin.ping()
    except (StreamError, ValueError):
        return False
    return True


def wait_for_broker(
    bootstrap: str, timeout_s: float, *, client: ClientName = DEFAULT_CLIENT
) -> None:
    """Return once the broker answers; StreamError naming the address if it never does."""
    deadline = time.monotonic() + timeout_s
    while not broker_answers(bootstrap, timeout_s=min(2.0, timeout_s), client=client):
        if time.monotonic() >= deadline:
            raise StreamError(
                f"{bootstrap} | no Kafka broker answered within {timeout_s:.0f} s. "
                f"Note: start one with `streamfer broker start` or set {BOOTSTRAP_ENV}"
            )
        time.sleep(0.2)  # poll interval


def topic_partitions(
    cluster: Cluster,
    topics: Iterable[str],
    *,
    timeout_s: float = 30.0,
    client: ClientName = DEFAULT_CLIENT,
) -> dict[str, int]:
    """Partition count of each of ``topics`` that exists, from one metadata request.

    Topics the cluster does not know, or does not let this client describe, are
    left out. The request never auto-creates a topic, whatever the broker allows.
    """
    return _per_topic(cluster, topics, timeout_s, client, lambda a, names: a.partitions(names))


def topic_exists(
    cluster: Cluster, topic: str, *, timeout_s: float = 5.0, client: ClientName = DEFAULT_CLIENT
) -> bool | None:
    """Whether the cluster has ``topic`` (and lets this client describe it); None when it
    could not be asked."""
    try:
        return topic in topic_partitions(cluster, [topic], timeout_s=timeout_s, client=client)
    except StreamError:
        return None


def create_topics(
    cluster: Cluster,
    topics: Mapping[str, int],
    *,
    config: Mapping[str, str] | None = None,
    replication_factor: int | None = None,
    timeout_s: float = 30.0,
    client: ClientName = DEFAULT_CLIENT,
) -> None:
    """Create each topic with the given partition count; existing topics are left alone.

    ``replication_factor`` None leaves it to the broker's ``default.replication.factor``
    (sent as -1, which brokers since Kafka 2.4 resolve, KIP-464).

    A topic created meanwhile by someone else (another worker starting) counts
    as created. Returns once every topic is visible with a leader per partition.
    """
    if not topics:
        return
    replicas = -1 if replication_factor is None else replication_factor
    with _admin(cluster, timeout_s, client) as admin:
        admin.create(topics, config or {}, replicas)


def max_message_bytes(
    cluster: Cluster,
    topics: Iterable[str],
    *,
    timeout_s: float = 30.0,
    client: ClientName = DEFAULT_CLIENT,
) -> dict[str, int]:
    """Each topic's ``max.message.bytes`` (the largest record batch it accepts), from one
    DescribeConfigs request; topics the cluster does not describe are left out."""
    return _per_topic(
        cluster, topics, timeout_s, client, lambda a, names: a.max_message_bytes(names)
    )


def delete_topics(
    cluster: Cluster,
    topics: Iterable[str],
    *,
    timeout_s: float = 30.0,
    client: ClientName = DEFAULT_CLIENT,
) -> None:
    """Delete the topics; ones already gone count as deleted."""
    names = sorted(set(topics))
    if names:
        with _admin(cluster, timeout_s, client) as admin:
            admin.delete(names)
