"""``streamfer tail TOPIC``: read a topic from the shell, one record a line.

A small reader in the spirit of kcat's consumer mode, for looking at decisions and
dead letters without writing code::

    streamfer tail payments.decisions --count 5 --timeout 30
    streamfer tail payments.tx.dlq --headers --count 1

Each value is printed on one line: JSON compacted (so a pretty-printed document
stays one line), other UTF-8 text with its line breaks escaped, anything else as
``<binary, N bytes>``; a record without a value prints ``<null>``. ``--headers``
prints the record's headers first, as one JSON object, then a tab.

Without ``--group`` it reads as a fresh consumer group of its own and commits
nothing, so every call starts where ``--from-beginning`` (the default) or
``--latest`` says. With ``--group`` it joins that group and commits what it
printed: the group's committed offsets then win over the start position, and the
next call goes on from there.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import click

from streamfer.errors import StreamError
from streamfer.streams.admin import DEFAULT_BOOTSTRAP, default_bootstrap

log = logging.getLogger(__name__)

_POLL_S = 0.2


def format_value(value: bytes | None) -> str:
    """A record value as one line: compact JSON, escaped text, or a byte count."""
    if value is None:
        return "<null>"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return f"<binary, {len(value)} bytes>"
    try:
        doc = json.loads(text)
    except ValueError:
        return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def format_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> str:
    """Headers as one JSON object (a repeated name keeps its last value)."""
    out: dict[str, str | None] = {}
    for name, raw in headers or ():
        out[name] = None if raw is None else raw.decode("utf-8", errors="backslashreplace")
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def _consumer(bootstrap: str, group: str | None, latest: bool) -> Any:
    from confluent_kafka import Consumer

    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group or f"streamfer-tail-{uuid.uuid4().hex[:12]}",
        "auto.offset.reset": "latest" if latest else "earliest",
        "enable.auto.commit": group is not None,
        "enable.partition.eof": False,
        "client.id": "streamfer-tail",
        "log_level": 3,  # errors only: an unreachable broker is reported by us, once
    })  # fmt: skip


@click.command(name="tail", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("topic")
@click.option(
    "--bootstrap",
    default=default_bootstrap,
    show_default=f"$STREAMFER_BOOTSTRAP or {DEFAULT_BOOTSTRAP}",
    help="Kafka bootstrap servers (host:port[,host:port]).",
)
@click.option(
    "--count", type=click.IntRange(1), default=None, help="Exit 0 after printing N records."
)
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Stop after this many seconds; with --count, exit 1 if fewer than N arrived.",
)
@click.option(
    "--from-beginning/--latest",
    "from_beginning",
    default=True,
    show_default=True,
    help="Start at the oldest record, or only read records written after the start.",
)
@click.option("--headers", is_flag=True, help="Print each record's headers (JSON) before it.")
@click.option(
    "--group",
    default=None,
    help="Read as this consumer group and commit (default: a fresh group, nothing committed).",
)
def tail(
    topic: str,
    bootstrap: str,
    count: int | None,
    timeout: float | None,
    from_beginning: bool,
    headers: bool,
    group: str | None,
) -> None:
    """Print the records of TOPIC, one value a line (JSON compacted)."""
    from confluent_kafka import KafkaError

    consumer = _consumer(bootstrap, group, latest=not from_beginning)
    deadline = None if timeout is None else time.monotonic() + timeout
    printed = 0
    try:
        consumer.subscribe([topic])
        while count is None or printed < count:
            if deadline is not None and time.monotonic() >= deadline:
                break
            msg = consumer.poll(_POLL_S)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TRANSPORT,
                                    KafkaError._ALL_BROKERS_DOWN):  # fmt: skip
                    log.debug("tail | %s: %s (waiting)", topic, error.str())
                    continue
                raise StreamError(
                    f"{topic} | cannot read from {bootstrap}: {error.str()}. "
                    "Note: expected a reachable broker and a readable topic"
                )
            line = format_value(msg.value())
            if headers:
                line = f"{format_headers(msg.headers())}\t{line}"
            click.echo(line)
            printed += 1
    finally:
        consumer.close()
    if count is not None and printed < count:
        raise click.ClickException(
            f"{topic} | {printed} of {count} records arrived within {timeout:g} s "
            f"from {bootstrap}. Note: expected --count records before --timeout"
        )
