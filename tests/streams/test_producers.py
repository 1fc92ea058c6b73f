"""Producers on the real broker, and the ``streamfer produce`` command line."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import pytest
from click.testing import CliRunner
from kafkakit import read_all, unused_port

from streamfer.errors import StreamError
from streamfer.streams.cli import produce as produce_cli
from streamfer.streams.local.feeds import transaction_feed
from streamfer.streams.local.producers import produce, producer_sink


@pytest.mark.integration
def test_transactions_with_malformed_records_arrive_keyed_and_marked(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(2)
    feed = transaction_feed(seed=5, malformed_ratio=0.2)
    with producer_sink(kafka_bootstrap) as sink:
        stats = produce(sink, topic, feed, rate=0, count=300)
    assert (stats.sent, stats.acked, stats.failed) == (300, 300, 0)
    sent = list(itertools.islice(transaction_feed(seed=5, malformed_ratio=0.2), 300))
    got = read_all(kafka_bootstrap, topic)
    assert sorted((m.key, m.value) for m in got) == sorted((k, v) for k, v, _ in sent)
    assert sum(1 for m in got if m.headers) == sum(1 for _, _, h in sent if h)


@pytest.mark.integration
def test_open_loop_pacing_never_runs_ahead_and_stop_ends_the_run(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(1)
    with producer_sink(kafka_bootstrap) as sink:
        stats = produce(sink, topic, transaction_feed(), rate=200, duration_s=0.5)
        assert stats.sent == 100  # exactly rate x duration: the schedule says what is sent
        stop = threading.Event()
        seen: list[int] = []

        def progress(s: object) -> None:
            seen.append(1)
            stop.set()

        stats = produce(
            sink,
            topic,
            transaction_feed(),
            rate=100,
            pacing="poisson",
            stop=stop,
            progress=progress,
            progress_interval_s=0.05,
        )
    assert stop.is_set() and stats.sent >= 1 and stats.acked == stats.sent
    assert seen


class CountingSink:
    """Takes sends as the real sink does, acknowledges each at once, and keeps what it got."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    def send(self, topic: str, value: bytes, key: bytes | None, headers: object,
             on_delivery: Callable[[object | None, object], None]) -> bool:  # fmt: skip
        assert isinstance(value, bytes) and topic == "t"
        self.sent.append((topic, value, key))
        on_delivery(None, None)
        return True

    def flush(self, timeout_s: float) -> None:
        assert timeout_s > 0


@pytest.mark.parametrize(("rate", "duration_s"), [(1000, 0.9), (997, 0.31), (3000, 0.5)])
def test_fixed_pacing_sends_exactly_rate_times_duration(rate: int, duration_s: float) -> None:
    sink = CountingSink()
    stats = produce(sink, "t", transaction_feed(), rate=rate, duration_s=duration_s)  # type: ignore[arg-type]
    assert stats.sent == len(sink.sent) == stats.acked == round(rate * duration_s)


def test_cli_fails_clearly_within_its_timeout_when_the_broker_is_down() -> None:
    address = f"127.0.0.1:{unused_port()}"
    started = time.monotonic()
    result = CliRunner().invoke(
        produce_cli, ["transactions", "--bootstrap", address, "--timeout", "1.5", "--count", "5"]
    )
    assert time.monotonic() - started < 10
    assert isinstance(result.exception, StreamError)
    assert address in str(result.exception) and "no broker answered" in str(result.exception)


@pytest.mark.integration
def test_cli_produces_the_requested_count(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(1)
    for args in (
        ["transactions", "--rate", "0", "--malformed-ratio", "0.5"],
        ["sensor", "--format", "json"],
        ["camera", "--cameras", "2", "--fps", "0", "--width", "96", "--height", "64"],
    ):
        result = CliRunner().invoke(
            produce_cli, [*args, "--bootstrap", kafka_bootstrap, "--topic", topic, "--count", "6"]
        )
        assert result.exit_code == 0, result.output
        assert "sent 6/6" in result.output
    assert len(read_all(kafka_bootstrap, topic)) == 18


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("transactions", ["--rate", "--pacing", "--fraud-rate", "--malformed-ratio", "--file"]),
        ("sensor", ["--rate", "--vehicles", "--format", "--file"]),
        ("camera", ["--source", "--cameras", "--fps", "--quality", "--encoding"]),
    ],
)
def test_help_lists_the_common_and_specific_options(command: str, options: list[str]) -> None:
    result = CliRunner().invoke(produce_cli, [command, "--help"])
    assert result.exit_code == 0
    for option in ["--bootstrap", "--topic", "--count", "--duration", "--timeout", *options]:
        assert option in result.output
