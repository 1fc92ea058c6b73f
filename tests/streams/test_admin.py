"""Topic administration through each client library: create, describe, configs, delete,
the broker's default replication factor (KIP-464: -1), and clear errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from streamfer.errors import StreamError
from streamfer.streams import admin as admin_module
from streamfer.streams.admin import (
    create_topics,
    delete_topics,
    max_message_bytes,
    topic_partitions,
)
from streamfer.streams.client import ClientName


def _name(stem: str) -> str:
    return f"t-admin-{stem}-{uuid.uuid4().hex[:10]}"


def _broker_default_and_replicas(bootstrap: str, topic: str) -> tuple[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        (described,) = admin.describe_topics([topic])
        broker_id = described["partitions"][0]["leader_id"]
        resource = ConfigResource(ConfigResourceType.BROKER, str(broker_id),
                                  configs=["default.replication.factor"])  # fmt: skip
        configs = admin.describe_configs([resource], config_filter="all")["broker"][str(broker_id)]
        admin.delete_topics([topic])
    finally:
        admin.close()
    default = int(configs["default.replication.factor"]["value"])
    replicas = {len(p["replica_nodes"]) for p in described["partitions"]}
    assert len(replicas) == 1, described
    return default, replicas.pop()


@pytest.mark.integration
def test_no_replication_factor_means_the_brokers_default(
    kafka_bootstrap: str, client_name: ClientName
) -> None:
    topic = _name("rf-default")
    create_topics(kafka_bootstrap, {topic: 2}, client=client_name)  # replication_factor None
    default, replicas = _broker_default_and_replicas(kafka_bootstrap, topic)
    assert replicas == default


@pytest.mark.integration
def test_an_explicit_replication_factor_is_sent_as_given(
    kafka_bootstrap: str, client_name: ClientName
) -> None:
    topic = _name("rf-one")
    create_topics(kafka_bootstrap, {topic: 1}, replication_factor=1, client=client_name)
    _default, replicas = _broker_default_and_replicas(kafka_bootstrap, topic)
    assert replicas == 1


@pytest.mark.integration
def test_create_describe_configure_and_delete(
    kafka_bootstrap: str, client_name: ClientName
) -> None:
    plain, small, missing = _name("plain"), _name("small"), _name("missing")
    create_topics(kafka_bootstrap, {plain: 3}, client=client_name)
    create_topics(kafka_bootstrap, {small: 1}, config={"max.message.bytes": "20000"},
                  client=client_name)  # fmt: skip
    create_topics(kafka_bootstrap, {plain: 5}, client=client_name)  # exists: left alone
    assert topic_partitions(kafka_bootstrap, [plain, small, missing], client=client_name) == {
        plain: 3,
        small: 1,
    }
    limits = max_message_bytes(kafka_bootstrap, [plain, small, missing], client=client_name)
    assert limits[small] == 20000 and plain in limits and missing not in limits
    delete_topics(kafka_bootstrap, [plain, small, missing], client=client_name)
    assert topic_partitions(kafka_bootstrap, [plain, small], client=client_name) == {}


def test_an_unreachable_cluster_is_named(client_name: ClientName) -> None:
    with pytest.raises(StreamError) as failed:
        create_topics("127.0.0.1:1", {"t": 1}, timeout_s=1.0, client=client_name)
    assert str(failed.value).startswith("127.0.0.1:1 (PLAINTEXT) | ")


@pytest.mark.integration
def test_with_confluent_kafka_topic_admin_never_imports_kafka_python(
    kafka_bootstrap: str,
) -> None:
    topic = _name("no-kafka-python")
    script = textwrap.dedent(f"""
        import sys
        from streamfer.streams.admin import create_topics, delete_topics, topic_partitions
        create_topics({kafka_bootstrap!r}, {{{topic!r}: 2}}, client="confluent-kafka")
        assert topic_partitions({kafka_bootstrap!r}, [{topic!r}]) == {{{topic!r}: 2}}
        delete_topics({kafka_bootstrap!r}, [{topic!r}], client="confluent-kafka")
        print(sorted(m for m in sys.modules if m == "kafka" or m.startswith("kafka.")))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


class _RecordingAdmin:
    """Stands in for a client's admin: keeps the create requests it is given."""

    def __init__(self) -> None:
        self.requested: list[tuple[dict[str, int], int]] = []

    def create(self, topics: dict[str, int], config: object, replication_factor: int) -> None:
        self.requested.append((dict(topics), replication_factor))

    def close(self) -> None:
        pass


class _Factory:
    def __init__(self, admin: _RecordingAdmin) -> None:
        self._admin = admin

    def admin(self, settings: object, timeout_s: float) -> _RecordingAdmin:
        return self._admin


@pytest.mark.parametrize(("given", "sent"), [(None, -1), (3, 3)])
def test_the_request_asks_for_the_default_with_minus_one(
    monkeypatch: pytest.MonkeyPatch, given: int | None, sent: int
) -> None:
    """A single-node broker's default is 1, so only the request tells None from 1."""
    fake = _RecordingAdmin()
    monkeypatch.setattr(admin_module, "client_factory", lambda name: _Factory(fake))
    create_topics("unused:9092", {"t": 4}, replication_factor=given)
    assert fake.requested == [({"t": 4}, sent)]
