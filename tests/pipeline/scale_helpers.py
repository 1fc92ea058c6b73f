"""Helpers of the scale-out tests: ``streamfer run`` processes of one group, their
``/readyz`` and ``/metrics``, and an output reader that counts decisions as they come."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e_helpers import REPO
from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

Coords = tuple[int, int]


@dataclass
class Worker:
    """One ``streamfer run --worker-index i`` process and where it serves /metrics."""

    index: int
    port: int
    log: Path
    proc: subprocess.Popen[bytes]

    @classmethod
    def start(cls, cfg: Path, index: int, base_port: int, logs: Path) -> Worker:
        log = logs / f"w{index}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamfer.pipeline.cli", "-v", "run", "-c", str(cfg),
             "--worker-index", str(index)],
            cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        return cls(index, base_port + index, log, proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ready(self) -> bool:
        """``/readyz`` answers 200 (False while the server is not up yet)."""
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as r:
                return int(r.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def readyz(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as r:
                return int(r.status), json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def metric(self, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Samples of ``name`` whose labels include ``labels`` (empty while not serving)."""
        try:
            with urllib.request.urlopen(f"{self.url}/metrics", timeout=2) as r:
                text = r.read().decode()
        except (urllib.error.URLError, OSError):
            return {}
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    out[tuple(sorted(s.labels.items()))] = float(s.value)
        return out

    def assigned(self) -> int | None:
        """``streamfer_partitions_assigned`` (None while it is not exported yet)."""
        got = self.metric("streamfer_partitions_assigned")
        return int(sum(got.values())) if got else None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self, timeout_s: float = 60) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@dataclass
class OutputReader:
    """Reads an output topic from the start, on and on: decisions by input coordinates."""

    bootstrap: str
    topic: str
    isolation_level: str = "read_uncommitted"
    scores: dict[Coords, list[float]] = field(default_factory=dict)
    _consumer: KafkaConsumer | None = None

    def __enter__(self) -> OutputReader:
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap, auto_offset_reset="earliest",
            enable_auto_commit=False, isolation_level=self.isolation_level,
        )  # fmt: skip
        parts = consumer.partitions_for_topic(self.topic) or {0}
        consumer.assign([TopicPartition(self.topic, p) for p in parts])
        consumer.seek_to_beginning()
        self._consumer = consumer
        return self

    def __exit__(self, *exc: object) -> None:
        if self._consumer is not None:
            self._consumer.close()

    def decided(self) -> int:
        """Input records with at least one decision so far (reads what has come)."""
        assert self._consumer is not None
        for batch in self._consumer.poll(timeout_ms=100).values():
            for m in batch:
                d = json.loads(m.value)
                src = d["source"]
                coords = (src["partition"], src["offset"])
                self.scores.setdefault(coords, []).append(d["result"]["fraud_score"])
        return len(self.scores)
