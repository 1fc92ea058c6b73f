"""Small administrative helpers: where the broker is, is it up, make topics."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.errors import StreamError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
BOOTSTRAP_ENV = "STREAMFER_BOOTSTRAP"


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


def _admin(bootstrap: str, timeout_s: float, **kwargs: Any) -> KafkaAdminClient:
    timeout_ms = max(int(timeout_s * 1000), 500)
    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="streamfer-admin",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
        **kwargs,
    )


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


def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    config: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Create each topic with the given partition count; existing topics are left alone."""
    if not topics:
        return
    new = [
        NewTopic(
            name, num_partitions=partitions, replication_factor=1, topic_configs=dict(config or {})
        )
        for name, partitions in topics.items()
    ]
    try:
        admin = _admin(bootstrap, timeout_s)
    except (KafkaError, OSError) as exc:
        raise StreamError(f"{bootstrap} | cannot reach the broker to create topics: {exc}") from exc
    try:
        for topic in new:  # one by one so an existing topic never hides a failed one
            try:
                admin.create_topics([topic], timeout_ms=int(timeout_s * 1000))
            except TopicAlreadyExistsError:
                continue
        admin.wait_for_topics(list(topics), timeout_ms=int(timeout_s * 1000))
    except KafkaError as exc:
        raise StreamError(
            f"{bootstrap} | creating topics {sorted(topics)} failed: {exc!r}"
        ) from exc
    finally:
        admin.close()
