"""The local broker: real produce/consume round trip, lifecycle and clear errors."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from streamfer.errors import BrokerError
from streamfer.streams.admin import BOOTSTRAP_ENV, broker_answers
from streamfer.streams.local.broker import LocalBroker
from streamfer.streams.local.files import new_cluster_id

pytestmark = pytest.mark.integration


def test_records_round_trip_byte_for_byte(
    kafka_bootstrap: str, unique_topic: Callable[..., str], unique_group: Callable[[], str]
) -> None:
    topic = unique_topic(partitions=3)
    sent = [
        (
            f"key-{i}".encode(),
            bytes(range(256)) * (i + 1),
            [("h", f"v{i}".encode()), ("bin", b"\x00\xff")],
        )
        for i in range(30)
    ]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for key, value, headers in sent:
        producer.send(topic, key=key, value=value, headers=headers)
    producer.flush(timeout=30)
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=unique_group(),
        auto_offset_reset="earliest",
        consumer_timeout_ms=15000,
    )
    received = {}
    for msg in consumer:
        received[msg.key] = (msg.value, list(msg.headers))
        if len(received) == len(sent):
            break
    consumer.close()

    assert len(received) == len(sent)
    for key, value, headers in sent:
        assert received[key] == (value, headers)


def test_start_is_idempotent_and_status_reports_the_running_broker(kafka_bootstrap: str) -> None:
    if os.environ.get(BOOTSTRAP_ENV):
        pytest.skip(f"tests run against the broker of ${BOOTSTRAP_ENV}")
    broker = LocalBroker()
    assert broker.start() == kafka_bootstrap
    state = broker.status()
    assert state.running and state.pid is not None
    assert state.bootstrap == kafka_bootstrap


def test_port_taken_by_another_process_gives_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = LocalBroker(port=port, controller_port=port + 1, data_dir=tmp_path)
        with pytest.raises(BrokerError, match=rf"127.0.0.1:{port} \| port already in use"):
            broker.start(timeout_s=10)


def test_a_broker_started_elsewhere_is_used_and_left_running(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Another checkout's (or the installed package's) broker on the port: start uses it
    instead of failing on the busy port, and stop from here does not stop it."""
    port = int(kafka_bootstrap.rsplit(":", 1)[1])
    here = LocalBroker(port=port, cache_dir=tmp_path / "cache")
    assert here.start(timeout_s=10) == kafka_bootstrap
    assert not here.status().running and not (tmp_path / "cache" / "lib").exists()
    assert here.stop() is False
    assert broker_answers(kafka_bootstrap, timeout_s=5.0)


def test_stop_start_cycle_leaves_no_process(tmp_path: Path) -> None:
    broker = LocalBroker(port=_free_port_pair(), data_dir=tmp_path / "data")
    for _ in range(2):
        broker.start()
        assert broker.status().pid is not None
        assert _processes_using(broker.data_dir)
        assert broker.stop() is True
        # pids are reused quickly here (pid_max 32768): look for the process itself
        assert _processes_using(broker.data_dir) == []
        assert broker.status().running is False
    assert broker.stop() is False


def _processes_using(data_dir: Path) -> list[int]:
    """Live (non-zombie) processes whose command line names this broker's data dir."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if str(data_dir).encode() in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        if port < 65000 and _free(port + 1):
            return port
    raise RuntimeError("no free pair of loopback ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_cluster_ids_never_read_as_an_option() -> None:
    # one URL-safe base64 id in 64 starts with "-": the storage tool then prints its usage
    ids = {new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 22 for i in ids)
