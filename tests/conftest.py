"""Shared fixtures: the real local Kafka broker and unique names per test."""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING

import pytest

from streamfer.streams.admin import BOOTSTRAP_ENV, create_topics, delete_topics, wait_for_broker
from streamfer.streams.client import CLIENTS, ClientFactory, ClientName
from streamfer.streams.factory import client_factory

if TYPE_CHECKING:
    from streamfer.streams.local.broker import LocalBroker


# Names ``unique_topic`` and ``unique_group`` handed out this session: every topic named
# after one of them (the topic itself, its .dlq, a group's changelog) is this session's.
_MADE: set[str] = set()
_GROUP = re.compile(r"g-[0-9a-f]{12}")
_TOPIC_END = re.compile(r"-[0-9a-f]{10}")  # where a unique_topic name may end


def _made_here(name: str) -> bool:
    """``name`` is a made topic, one with more after it (.dlq), or holds a made group."""
    if any(g in _MADE for g in _GROUP.findall(name)):
        return True
    return any(name[: m.end()] in _MADE for m in _TOPIC_END.finditer(name))


def _delete_made(bootstrap: str) -> None:
    """Delete the topics this session made, and only those (other sessions may share the
    broker). Left behind, they pile up run after run on a developer's broker: one that
    held 10,114 partitions paused for GC every second and slowed every test on it."""
    if not _MADE:
        return
    from streamfer.bench.kafka_io import broker_topics

    try:
        names = broker_topics(bootstrap)
        delete_topics(bootstrap, [n for n in names if _made_here(n)], timeout_s=60)
    except Exception as exc:  # cleanup only: never fail the session for it
        print(f"conftest: topics of this session not deleted: {exc}")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A broker that answers: $STREAMFER_BOOTSTRAP if set, else the local one.

    The local broker is started if needed and stopped at the end only if this
    session started it. The topics this session made are deleted at its end.
    """
    external = os.environ.get(BOOTSTRAP_ENV)
    if external:
        wait_for_broker(external, timeout_s=30)
        try:
            yield external
        finally:
            _delete_made(external)
        return
    from streamfer.streams.local.broker import LocalBroker

    broker = LocalBroker()
    was_running = broker.status().running
    bootstrap = broker.start()
    try:
        yield bootstrap
    finally:
        _delete_made(bootstrap)  # its data stays even when stopped
        if not was_running:
            broker.stop()


@pytest.fixture
def unique_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Callable[..., str]:
    """``unique_topic(partitions=1)`` creates a fresh topic and returns its name."""
    stem = request.node.name.split("[")[0][:40].replace("_", "-")

    def make(partitions: int = 1) -> str:
        name = f"t-{stem}-{uuid.uuid4().hex[:10]}"
        _MADE.add(name)
        create_topics(kafka_bootstrap, {name: partitions})
        return name

    return make


@pytest.fixture
def unique_group() -> Callable[[], str]:
    """``unique_group()`` returns a consumer group name no other test uses."""

    def make() -> str:
        name = f"g-{uuid.uuid4().hex[:12]}"
        _MADE.add(name)  # its changelog topics are named after it
        return name

    return make


@pytest.fixture(params=CLIENTS)
def client_name(request: pytest.FixtureRequest) -> ClientName:
    """Each Kafka client library streamfer supports, in turn (the contract tests)."""
    name: ClientName = request.param
    return name


@pytest.fixture
def factory(client_name: ClientName) -> ClientFactory:
    """The ``ClientFactory`` of ``client_name``."""
    return client_factory(client_name)


@pytest.fixture(scope="session")
def sasl_ssl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A second local broker with a SASL_SSL listener (SCRAM-SHA-512), started for this session.

    Free ports and its own data dir, so it never touches the shared broker; stopped at
    the end. ``broker.sasl_ssl`` has the listener and its files, ``broker.bootstrap``
    its PLAINTEXT listener (for checks that must not depend on the secure path).
    """
    from streamfer.streams.local.broker import LocalBroker

    port = _free_port_run(3)  # as `streamfer broker start --port P --sasl-ssl` lays them out
    broker = LocalBroker(
        port=port,
        data_dir=tmp_path_factory.mktemp("sasl-ssl-broker"),
        sasl_ssl_port=port + 2,
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A local broker of this session's own (free ports, own data dir), for tests that stop
    and start it; the shared broker is never touched. Stopped at the end."""
    from streamfer.streams.local.broker import LocalBroker

    broker = LocalBroker(port=_free_port_run(2), data_dir=tmp_path_factory.mktemp("own-broker"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _free_port_run(n: int) -> int:
    """A loopback port p with p .. p + n - 1 all free right now."""
    for _ in range(50):
        with ExitStack() as stack:
            first = stack.enter_context(socket.socket())
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                for offset in range(1, n):
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port + offset))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no {n} consecutive free loopback ports")


@pytest.fixture
def free_ports() -> Callable[[int], int]:
    """``free_ports(n)``: a loopback port p with p .. p + n - 1 all free right now."""
    return _free_port_run
