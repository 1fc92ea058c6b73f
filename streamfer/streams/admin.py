"""Small administrative helpers: where the broker is, is it up, which topics exist, make topics.

``topic_partitions`` and ``create_topics`` take the cluster either as a
bootstrap address (a plaintext cluster such as the local broker) or as the
:class:`~streams.settings.KafkaSettings` every consumer and producer of a
pipeline uses, SASL and SSL included.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import (
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from streamfer.errors import StreamError
from streamfer.streams.security import LOGIN_CHECK_TIMEOUT_S, PasswordFilter, check_login

if TYPE_CHECKING:
    from streamfer.streams.settings import KafkaSettings

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
BOOTSTRAP_ENV = "STREAMFER_BOOTSTRAP"

# KafkaAdminClient logs its whole configuration, SASL password included, at DEBUG (-vv).
logging.getLogger("kafka.admin.client").addFilter(PasswordFilter())


def default_bootstrap() -> str:
    """The bootstrap address every command uses unless told otherwise."""
    return os.environ.get(BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP)


@contextmanager
def _quiet_kafka_logs() -> Iterator[None]:
    """kafka-python logs every refused connection at ERROR; a probe expects refusals."""
    logger = logging.getLogger("kafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _admin(bootstrap: str | list[str], timeout_s: float, **kwargs: Any) -> KafkaAdminClient:
    timeout_ms = max(int(timeout_s * 1000), 500)
    options: dict[str, Any] = {"client_id": "streamfer-admin", **kwargs}
    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
        **options,
    )


def _name(cluster: str | KafkaSettings) -> str:
    """The cluster as messages name it (no secret)."""
    return cluster if isinstance(cluster, str) else cluster.describe()


def _connect(cluster: str | KafkaSettings, timeout_s: float, what: str) -> KafkaAdminClient:
    """An admin client on ``cluster``; StreamError naming it when no broker answers.

    A refused TLS or SASL login fails at once, explained (``streamfer.streams.security``).
    """
    if not isinstance(cluster, str):
        check_login(cluster, timeout_s=min(timeout_s, LOGIN_CHECK_TIMEOUT_S))
    try:
        if isinstance(cluster, str):
            return _admin(cluster, timeout_s)
        kwargs = cluster.admin_kwargs()
        return _admin(kwargs.pop("bootstrap_servers"), timeout_s, **kwargs)
    except (KafkaError, OSError) as exc:
        raise StreamError(f"{_name(cluster)} | cannot reach the broker to {what}: {exc}") from exc


def broker_answers(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request in time."""
    with _quiet_kafka_logs():
        try:
            admin = _admin(bootstrap, timeout_s)
        except (KafkaError, OSError, ValueError):
            return False
        try:
            admin.describe_cluster()
            return True
        except (KafkaError, OSError, ValueError):
            return False
        finally:
            admin.close()


def wait_for_broker(bootstrap: str, timeout_s: float) -> None:
    """Return once the broker answers; StreamError naming the address if it never does."""
    deadline = time.monotonic() + timeout_s
    while not broker_answers(bootstrap, timeout_s=min(2.0, timeout_s)):
        if time.monotonic() >= deadline:
            raise StreamError(
                f"{bootstrap} | no Kafka broker answered within {timeout_s:.0f} s. "
                f"Note: start one with `streamfer broker start` or set {BOOTSTRAP_ENV}"
            )
        time.sleep(0.2)  # poll interval


# a topic the cluster does not know, or will not describe to this client
_UNSEEN = frozenset((UnknownTopicOrPartitionError.errno, TopicAuthorizationFailedError.errno))


def topic_partitions(
    cluster: str | KafkaSettings, topics: Iterable[str], *, timeout_s: float = 30.0
) -> dict[str, int]:
    """Partition count of each of ``topics`` that exists, from one metadata request.

    Topics the cluster does not know, or does not let this client describe, are
    left out. The request never auto-creates a topic, whatever the broker allows.
    """
    names = sorted(set(topics))
    if not names:
        return {}
    admin = _connect(cluster, timeout_s, "describe topics")
    try:
        described = admin.describe_topics(names)
    except KafkaError as exc:
        raise StreamError(f"{_name(cluster)} | describing topics {names} failed: {exc!r}") from exc
    finally:
        admin.close()
    return {t["name"]: len(t["partitions"]) for t in described if t["error_code"] not in _UNSEEN}


def create_topics(
    cluster: str | KafkaSettings,
    topics: Mapping[str, int],
    *,
    config: Mapping[str, str] | None = None,
    replication_factor: int | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Create each topic with the given partition count; existing topics are left alone.

    ``replication_factor`` None leaves it to the broker's ``default.replication.factor``
    (sent as -1, which brokers since Kafka 2.4 resolve, KIP-464).

    A topic created meanwhile by someone else (another worker starting) counts
    as created. Returns once every topic is visible with a leader per partition.
    """
    if not topics:
        return
    new = [
        NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=-1 if replication_factor is None else replication_factor,
            topic_configs=dict(config or {}),
        )
        for name, partitions in topics.items()
    ]
    admin = _connect(cluster, timeout_s, "create topics")
    try:
        for topic in new:  # one by one so an existing topic never hides a failed one
            try:
                admin.create_topics([topic], timeout_ms=int(timeout_s * 1000))
            except TopicAlreadyExistsError:
                continue
        admin.wait_for_topics(list(topics), timeout_ms=int(timeout_s * 1000))
    except KafkaError as exc:
        raise StreamError(
            f"{_name(cluster)} | creating topics {sorted(topics)} failed: {exc!r}"
        ) from exc
    finally:
        admin.close()


def max_message_bytes(
    cluster: str | KafkaSettings, topics: Iterable[str], *, timeout_s: float = 30.0
) -> dict[str, int]:
    """Each topic's ``max.message.bytes`` (the largest record batch it accepts), from one
    DescribeConfigs request; topics the cluster does not describe are left out."""
    names = sorted(set(topics))
    if not names:
        return {}
    wanted = [ConfigResource(ConfigResourceType.TOPIC, n, configs=[_MAX_BYTES]) for n in names]
    admin = _connect(cluster, timeout_s, "describe topic configs")
    try:
        described = admin.describe_configs(wanted, config_filter="all")
    except KafkaError as exc:
        raise StreamError(
            f"{_name(cluster)} | describing the configs of topics {names} failed: {exc!r}"
        ) from exc
    finally:
        admin.close()
    out: dict[str, int] = {}
    for name, configs in described.get("topic", {}).items():
        value = configs.get(_MAX_BYTES, {}).get("value")
        if value is not None:
            out[name] = int(value)
    return out


_MAX_BYTES = "max.message.bytes"
