"""``streamfer tail``: a topic's records, one a line, against the real broker."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer

from streamfer.streams.tail_cli import format_headers, format_value, tail


def test_values_print_on_one_line_each() -> None:
    assert format_value(b'{\n  "a": [1, 2],\n  "b": "x"\n}') == '{"a":[1,2],"b":"x"}'
    assert format_value(b"two\nlines\\") == "two\\nlines\\\\"
    assert format_value(b"\xff\xfe\x00") == "<binary, 3 bytes>"
    assert format_value(None) == "<null>"
    assert format_value(b"") == ""
    assert format_headers([("error-reason", b"bad_json"), ("raw", b"\xff"), ("none", None)]) == (
        '{"error-reason":"bad_json","raw":"\\\\xff","none":null}'
    )


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, list[tuple[str, bytes]]]]
             ) -> None:  # fmt: skip
    producer = Producer({"bootstrap.servers": bootstrap})
    for value, headers in records:
        producer.produce(topic, value=value, headers=headers)
    assert producer.flush(30) == 0


pytestmark = pytest.mark.integration


def test_count_prints_that_many_in_order_with_headers(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic()
    _produce(kafka_bootstrap, topic, [
        (b'{"n": 1}', [("error-reason", b"bad_json")]),
        (b"plain text", []),
        (None, [("k", b"v")]),
        (b'{"n": 4}', []),
    ])  # fmt: skip
    result = CliRunner().invoke(tail, [topic, "--bootstrap", kafka_bootstrap, "--count", "3",
                                       "--timeout", "60", "--headers"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        '{"error-reason":"bad_json"}\t{"n":1}',
        "{}\tplain text",
        '{"k":"v"}\t<null>',
    ]


def test_fewer_than_count_by_the_timeout_fails_saying_how_many(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic()
    _produce(kafka_bootstrap, topic, [(b"a", []), (b"b", [])])
    result = CliRunner().invoke(tail, [topic, "--bootstrap", kafka_bootstrap, "--count", "5",
                                       "--timeout", "8"])  # fmt: skip
    assert result.exit_code == 1
    assert result.output.splitlines()[:2] == ["a", "b"]
    assert f"{topic} | 2 of 5 records arrived within 8 s" in result.output


def test_a_group_goes_on_where_it_stopped(
    kafka_bootstrap: str, unique_topic: Callable[..., str], unique_group: Callable[[], str]
) -> None:
    topic, group = unique_topic(), unique_group()
    _produce(kafka_bootstrap, topic, [(b"1", []), (b"2", []), (b"3", [])])
    args = [topic, "--bootstrap", kafka_bootstrap, "--timeout", "60", "--group", group]
    first = CliRunner().invoke(tail, [*args, "--count", "2"])
    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == ["1", "2"]
    second = CliRunner().invoke(tail, [*args, "--count", "1"])
    assert second.exit_code == 0, second.output
    assert second.output.splitlines() == ["3"]
    # without --group every call starts from the beginning again
    again = CliRunner().invoke(tail, [topic, "--bootstrap", kafka_bootstrap, "--count", "1",
                                      "--timeout", "60"])  # fmt: skip
    assert again.output.splitlines() == ["1"]


def test_latest_skips_what_was_there_before(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic()
    _produce(kafka_bootstrap, topic, [(b'"old"', [])])
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamfer.pipeline.cli", "tail", topic, "--bootstrap",
         kafka_bootstrap, "--latest", "--count", "1", "--timeout", "90"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        sent = 0
        while proc.poll() is None and time.monotonic() < deadline:
            # keep writing until tail has joined and prints one: what it prints must be new
            _produce(kafka_bootstrap, topic, [(json.dumps(f"new-{sent}").encode(), [])])
            sent += 1
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.5)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    (line,) = out.splitlines()
    assert line.startswith('"new-'), out
