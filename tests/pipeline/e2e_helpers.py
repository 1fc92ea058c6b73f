"""Shared helpers of the end-to-end pipeline tests: configs, producing, reading back."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from streamfer.models.generators.transactions import TransactionGenerator
from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import parse_config
from streamfer.streams.codecs import encode_transaction

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "streamfer" / "models"


def config_doc(
    bootstrap: str,
    group: str,
    streams: Sequence[dict[str, Any]],
    models: Mapping[str, Path],
    **extra: Any,
) -> dict[str, Any]:
    """A pipeline config for tests: fast commits, no metrics port; ``extra`` merges sections."""
    doc: dict[str, Any] = {
        "kafka": {"bootstrap_servers": bootstrap, "client_id": f"c-{group}"},
        "consumer": {"group_id": group, "fetch_max_wait_ms": 10},
        "producer": {"linger_ms": 1},
        "models": {m: {"path": str(path), "max_batch": 32} for m, path in models.items()},
        "streams": list(streams),
        "metrics": {"enabled": False, "port": 0},
        "runtime": {"commit_interval_ms": 100, "drain_timeout_s": 20},
    }
    for key, value in extra.items():
        doc[key] = {**doc.get(key, {}), **value}
    return doc


def pipelines_by_stream(
    bootstrap: str,
    streams: Sequence[dict[str, Any]],
    models: Mapping[str, Path],
    client_name: str,
    new_group: Callable[[], str],
    base_dir: Path,
) -> dict[str, tuple[Pipeline, str]]:
    """Stream name -> (its Pipeline, its group): one pipeline and group for all streams;
    with kafka-python one each, since its 3.0.x group client can leave a member of a
    group whose members subscribe to different topics mid-rebalance for good (docs/delivery.md,
    "The two Kafka clients") and the tests using this are not about that."""
    parts = [list(streams)] if client_name == "confluent-kafka" else [[s] for s in streams]
    out: dict[str, tuple[Pipeline, str]] = {}
    for part in parts:
        group = new_group()
        doc = config_doc(bootstrap, group, part, models, kafka={"client": client_name})
        pipe = Pipeline(parse_config(doc, "t", base_dir))
        out.update({s["name"]: (pipe, group) for s in part})
    return out


def write_config(
    path: Path,
    bootstrap: str,
    group: str,
    streams: Sequence[dict[str, Any]],
    models: Iterable[str],
    **extra: Any,
) -> Path:
    """``config_doc`` with the reference models under models/, written as YAML."""
    paths = {m: MODELS / f"{m}.onnx" for m in models}
    path.write_text(yaml.safe_dump(config_doc(bootstrap, group, streams, paths, **extra)))
    return path


def produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes, list[tuple[str, bytes]]]],
) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    n = 0
    for key, value, headers in messages:
        producer.send(topic, value=value, key=key, headers=headers)
        n += 1
    producer.flush(30)
    producer.close()
    return n


def transactions(
    n: int, seed: int, **generator: Any
) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    """``n`` generated transactions as messages keyed by card (``generator``: e.g.
    ``n_cards``, passed to the TransactionGenerator)."""
    gen = TransactionGenerator(seed=seed, **generator)
    out: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []
    for _ in range(n):
        tx, _ = gen.next()
        out.append((tx["card_id"].encode(), encode_transaction(tx), []))
    return out


@contextmanager
def trickle(
    bootstrap: str,
    topic: str,
    messages: Sequence[tuple[bytes | None, bytes, list[tuple[str, bytes]]]],
    per_s: float,
) -> Iterator[threading.Thread]:
    """Produce ``messages`` (their keys and values) at about ``per_s`` a second from a
    background thread while the body runs; on leaving, wait (bounded) for the rest."""

    def run() -> None:
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
        for i, (key, value, _) in enumerate(messages):
            producer.send(topic, value=value, key=key)
            if i % 20 == 19:
                producer.flush()
                time.sleep(20 / per_s)  # pacing the load, not waiting for a condition
        producer.flush()
        producer.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        thread.join(120)


class Feeder:
    """Produces ``messages`` in order from a background thread, about ``per_s`` a second,
    but never past the count ``allow`` let through so far: the test, not the clock,
    decides how far the input goes before each step (a kill, a worker joining)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        messages: Sequence[tuple[bytes | None, bytes, list[tuple[str, bytes]]]],
        per_s: float,
    ) -> None:
        self.topic = topic
        self.messages = list(messages)
        self.per_s = per_s
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
        self._allowed = 0
        self._sent = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._thread.start()

    @property
    def sent(self) -> int:
        """Messages produced and flushed so far."""
        with self._changed:
            return self._sent

    def allow(self, n: int) -> None:
        """Let the feeder go on up to the first ``n`` messages."""
        with self._changed:
            self._allowed = max(self._allowed, min(n, len(self.messages)))
            self._changed.notify_all()

    def wait_sent(self, n: int, timeout_s: float = 60.0) -> None:
        """Until the first ``n`` messages are produced (``allow`` them first)."""
        wait_for(lambda: self._error is not None or self.sent >= n, timeout_s, f"{n} produced")
        if self._error is not None:
            raise AssertionError(f"the feeder failed: {self._error!r}")

    def close(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        self._thread.join(60)
        self._producer.close()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._changed:
                    while self._allowed <= self._sent and not self._stop.is_set():
                        self._changed.wait()
                    start, end = self._sent, min(self._allowed, self._sent + 20)
                if self._stop.is_set():
                    return
                for key, value, _ in self.messages[start:end]:
                    self._producer.send(self.topic, value=value, key=key)
                self._producer.flush(30)
                with self._changed:
                    self._sent = end
                    self._changed.notify_all()
                self._stop.wait((end - start) / self.per_s)  # pacing the load, not a wait
        except BaseException as exc:  # reported by wait_sent
            self._error = exc


@contextmanager
def feeding(
    bootstrap: str,
    topic: str,
    messages: Sequence[tuple[bytes | None, bytes, list[tuple[str, bytes]]]],
    per_s: float,
) -> Iterator[Feeder]:
    """A :class:`Feeder` for the body (nothing allowed yet), stopped on leaving."""
    feeder = Feeder(bootstrap, topic, messages, per_s)
    try:
        yield feeder
    finally:
        feeder.close()


def distinct_decided(bootstrap: str, topic: str, at_least: int, timeout_s: float = 5) -> int:
    """Input records with a decision on ``topic``, read until ``at_least`` of them or the
    time is up: replays after a restart repeat decisions, so records are counted, not
    messages."""

    def records(msgs: list[Any]) -> int:
        return len({(d["source"]["partition"], d["source"]["offset"]) for d in decisions(msgs)})

    return records(read_all(bootstrap, topic, lambda m: records(m) >= at_least, timeout_s))


def restored_partitions(text: str, topic: str, source: str = "") -> set[int]:
    """Partitions of ``topic`` that ``text`` (a run's log) says were restored (from
    ``source``, if given: "changelog", "local", "local+changelog")."""
    needle = f"| state restored from {source}" if source else "| state restored from "
    out: set[int] = set()
    for line in text.splitlines():
        at = line.find(f"{topic}[")
        if at < 0 or needle not in line:
            continue
        if source and not line[line.index(needle) + len(needle) :].startswith(":"):
            continue  # "local" must not match "local+changelog"
        out.add(int(line[at + len(topic) + 1 : line.index("]", at)]))
    return out


def read_all(
    bootstrap: str,
    topic: str,
    until: Callable[[list[Any]], bool],
    timeout_s: float = 60.0,
    isolation_level: str = "read_uncommitted",
) -> list[Any]:
    """Consume ``topic`` from the start until ``until(messages)`` holds or time runs out."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation_level,
        consumer_timeout_ms=200,
    )
    partitions = consumer.partitions_for_topic(topic) or {0}
    consumer.assign([TopicPartition(topic, p) for p in partitions])
    consumer.seek_to_beginning()
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not until(out):
        for batch in consumer.poll(timeout_ms=200).values():
            out.extend(batch)
    consumer.close()
    return out


def decisions(messages: Iterable[Any]) -> list[dict[str, Any]]:
    return [json.loads(m.value) for m in messages]


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of ``topic`` (absent: none yet).

    Asked through the admin API: a consumer carrying the group id could disturb the group.
    """
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic}


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)  # poll interval


def wait_resolved(pipe: Any, stream: str, n: int, timeout_s: float = 120) -> None:
    """Until ``n`` records of ``stream`` are resolved; the pipeline must not have failed."""
    wait_for(
        lambda: pipe.failure is not None or pipe.stats()[stream].resolved >= n,
        timeout_s,
        f"{n} records of {stream} resolved",
    )
    assert pipe.failure is None, pipe.failure


def assert_demo_summary_resolves_every_record(stderr: str) -> dict[str, list[int]]:
    """The rows of ``streamfer demo``'s summary table by kind: consumed, decided, dropped,
    dead-lettered, lag. Asserts every kind decided something and resolved every record."""
    summary = stderr[stderr.index(": summary") :]
    rows = {}
    for line in summary.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 9 and cells[2].isdigit():
            rows[cells[1]] = [int(c) for c in (cells[2], cells[3], cells[6], cells[7], cells[8])]
    assert set(rows) == {"transaction", "sensor", "camera"}, summary
    for kind, (consumed, decided, dropped, dead, lag) in rows.items():
        assert decided > 0, f"{kind}: no decisions\n{summary}"
        assert consumed == decided + dropped + dead, f"{kind}: unresolved records\n{summary}"
        assert lag == 0
    return rows
