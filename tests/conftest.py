"""Shared fixtures: the real local Kafka broker and unique names per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from streams.admin import BOOTSTRAP_ENV, create_topics, wait_for_broker
from streams.client import CLIENTS, ClientFactory, ClientName, client_factory


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A broker that answers: $STREAMFER_BOOTSTRAP if set, else the local one.

    The local broker is started if needed and stopped at the end only if this
    session started it.
    """
    external = os.environ.get(BOOTSTRAP_ENV)
    if external:
        wait_for_broker(external, timeout_s=30)
        yield external
        return
    from streams.broker import LocalBroker

    broker = LocalBroker()
    was_running = broker.status().running
    bootstrap = broker.start()
    try:
        yield bootstrap
    finally:
        if not was_running:
            broker.stop()


@pytest.fixture
def unique_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Callable[..., str]:
    """``unique_topic(partitions=1)`` creates a fresh topic and returns its name."""
    stem = request.node.name.split("[")[0][:40].replace("_", "-")

    def make(partitions: int = 1) -> str:
        name = f"t-{stem}-{uuid.uuid4().hex[:10]}"
        create_topics(kafka_bootstrap, {name: partitions})
        return name

    return make


@pytest.fixture
def unique_group() -> Callable[[], str]:
    """``unique_group()`` returns a consumer group name no other test uses."""
    return lambda: f"g-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=CLIENTS)
def client_name(request: pytest.FixtureRequest) -> ClientName:
    """Each Kafka client library streamfer supports, in turn (the contract tests)."""
    name: ClientName = request.param
    return name


@pytest.fixture
def factory(client_name: ClientName) -> ClientFactory:
    """The ``ClientFactory`` of ``client_name``."""
    return client_factory(client_name)
