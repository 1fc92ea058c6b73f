"""Topics created without a replication factor get the broker's default (KIP-464: -1)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from streamfer.streams import admin as admin_module
from streamfer.streams.admin import create_topics


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
def test_no_replication_factor_means_the_brokers_default(kafka_bootstrap: str) -> None:
    topic = f"t-rf-default-{uuid.uuid4().hex[:10]}"
    create_topics(kafka_bootstrap, {topic: 2})  # replication_factor None
    default, replicas = _broker_default_and_replicas(kafka_bootstrap, topic)
    assert replicas == default


@pytest.mark.integration
def test_an_explicit_replication_factor_is_sent_as_given(kafka_bootstrap: str) -> None:
    topic = f"t-rf-one-{uuid.uuid4().hex[:10]}"
    create_topics(kafka_bootstrap, {topic: 1}, replication_factor=1)
    _default, replicas = _broker_default_and_replicas(kafka_bootstrap, topic)
    assert replicas == 1


class _RecordingAdmin:
    """Stands in for the admin client: keeps the CreateTopics requests it is given."""

    def __init__(self) -> None:
        self.requested: list[tuple[str, int, int]] = []

    def create_topics(self, topics: list[Any], timeout_ms: int) -> None:
        self.requested += [(t.name, t.num_partitions, t.replication_factor) for t in topics]

    def wait_for_topics(self, topics: list[str], timeout_ms: int) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("given", "sent"), [(None, -1), (3, 3)])
def test_the_request_asks_for_the_default_with_minus_one(
    monkeypatch: pytest.MonkeyPatch, given: int | None, sent: int
) -> None:
    """A single-node broker's default is 1, so only the request tells None from 1."""
    fake = _RecordingAdmin()
    monkeypatch.setattr(admin_module, "_connect", lambda *args: fake)
    create_topics("unused:9092", {"t": 4}, replication_factor=given)
    assert fake.requested == [("t", 4, sent)]
