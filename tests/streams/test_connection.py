"""Connection monitoring: reachability from the clients' own reports, and their noise summarised."""

from __future__ import annotations

import json
import logging

import pytest

from streamfer.streams.connection import ConnectionMonitor, LibraryNoise


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_unreachable_only_once_an_error_follows_the_last_sign_of_life() -> None:
    clock = Clock()
    monitor = ConnectionMonitor("c", clock=clock)
    clock.now += 50
    assert monitor.unreachable_s() == 0.0  # quiet is not unreachable
    monitor.error("Connect to 127.0.0.1:1 failed")
    assert monitor.unreachable_s() == 50.0  # since the last sign of life, not the error
    clock.now += 5
    assert monitor.unreachable_s() == 55.0
    monitor.ok()
    assert monitor.unreachable_s() == 0.0
    monitor.error("throttled", connection=False)  # not about reaching the cluster
    clock.now += 30
    assert monitor.unreachable_s() == 0.0


def test_librdkafka_statistics_with_a_broker_up_are_a_sign_of_life() -> None:
    clock = Clock()
    monitor = ConnectionMonitor("c", clock=clock)
    monitor.error("down")
    clock.now += 10
    bootstrap_only = {"brokers": {"b": {"state": "UP", "nodeid": -1}}}
    monitor.on_stats(json.dumps(bootstrap_only))
    assert monitor.unreachable_s() == 10.0  # a bootstrap connection proves little
    monitor.on_stats(json.dumps({"brokers": {"b": {"state": "UP", "nodeid": 1}}}))
    assert monitor.unreachable_s() == 0.0


def test_repeated_client_errors_are_summarised(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    monitor = ConnectionMonitor("c", quiet_s=30, clock=clock)
    with caplog.at_level(logging.WARNING, logger="streamfer.streams.connection"):
        for _ in range(20):
            monitor.error("Connection refused", kind="_TRANSPORT")
            clock.now += 1
        clock.now += 15
        monitor.error("Connection refused", kind="_TRANSPORT")
    assert [r.getMessage() for r in caplog.records] == [
        "c | Connection refused",
        "c | _TRANSPORT (20 times in 35 s)",
        "c | Connection refused",
    ]


def test_library_lines_that_differ_only_in_their_arguments_count_as_one() -> None:
    clock = Clock()
    noise = LibraryNoise(quiet_s=30, clock=clock)
    logger = logging.getLogger("kafka.test.noise")

    def line(msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
        return logger.makeRecord(logger.name, level, "f", 1, msg, args, None)

    shown = [noise.filter(line("Connection failed: %s", f"port {p}")) for p in range(10)]
    assert shown == [True] + [False] * 9
    assert noise.filter(line("Marking the coordinator dead (node %s)", 1))  # another kind
    assert noise.filter(line("Connected to %s", 1, level=logging.INFO))  # below WARNING
    clock.now += 31
    again = line("Connection failed: %s", "port 1")
    assert noise.filter(again)
    assert again.getMessage() == (
        "Connection failed: port 1 (and 9 more like it in the last 31 s)"
    )
