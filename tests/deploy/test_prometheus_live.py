"""A real Prometheus server (loopback, free port, temp storage, 1 s scrapes) reads streamfer.

1. It scrapes a HealthServer fed with a known workload: counts are exact, the p99 from
   ``histogram_quantile`` lands within one bucket of the true p99, and every recording and
   alert rule of deploy/prometheus evaluates without error against live data.
2. (integration) It scrapes a running pipeline: ``sum(streamfer_decisions_published_total)``
   equals the decisions read back from Kafka, and the e2e p99 agrees within one bucket with
   the pipeline's own run summary (the same observations: record timestamp -> decision
   acknowledged).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from bisect import bisect_left
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from streamfer.pipeline.health import HealthServer, HealthState
from streamfer.pipeline.metrics import LATENCY_BUCKETS_S, Metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "deploy" / "prometheus").glob("*.rules.yml"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bucket(seconds: float) -> int:
    """Index of the histogram bucket holding ``seconds`` (Prometheus ``le`` semantics)."""
    return bisect_left(LATENCY_BUCKETS_S, seconds)


class Prometheus:
    """One Prometheus server process scraping ``targets`` every second."""

    def __init__(self, binary: str, workdir: Path, targets: list[str]) -> None:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in RULES],
            "scrape_configs": [{"job_name": "streamfer", "static_configs": [{"targets": targets}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self._log = (workdir / "prometheus.log").open("wb")
        self._proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.log_path = workdir / "prometheus.log"

    def wait_ready(self, timeout_s: float = 30) -> None:
        self.poll(lambda: self._get("/-/ready") is not None, timeout_s, "Prometheus ready")

    def _get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as resp:
                body = resp.read()
        except OSError:
            assert self._proc.poll() is None, self.log_path.read_text()[-2000:]
            return None
        return json.loads(body) if path.startswith("/api/") else body

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert answer is not None and answer["status"] == "success", answer
        return answer["data"]["result"]  # type: ignore[no-any-return]

    def scalar(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def await_scrapes(self, n: int, timeout_s: float = 15) -> None:
        """Wait until the streamfer target has been scraped ``n`` more times."""
        expr = 'max(timestamp(up{job="streamfer"}))'
        start = self.scalar(expr) or 0.0
        self.poll(lambda: (self.scalar(expr) or 0.0) >= start + n - 0.5, timeout_s, "scrapes")

    def rules(self) -> list[dict[str, Any]]:
        groups = self._get("/api/v1/rules")["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def poll(self, check: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)  # poll interval

    def close(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[list[str]], Prometheus]]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus server not on PATH: run scripts/install-prometheus.sh (CI does)")
    started: list[Prometheus] = []

    def start(targets: list[str]) -> Prometheus:
        server = Prometheus(binary, tmp_path, targets)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.close()


def test_prometheus_reads_exact_counts_and_p99_from_the_health_server(
    prometheus: Callable[[list[str]], Prometheus],
) -> None:
    metrics = Metrics()
    state = HealthState()
    rng = np.random.default_rng(3)
    e2e = rng.gamma(4.0, 0.008, size=5000)  # mean 32 ms, p99 near 80 ms
    with HealthServer(metrics, state, port=0) as server:
        prom = prometheus([f"127.0.0.1:{server.port}"])
        payments = metrics.stream("payments", model="fraud", engine="onnxruntime")
        for chunk in np.array_split(e2e, 3):  # spread over scrapes so rates are non-zero
            payments.consumed(len(chunk))
            payments.published(len(chunk))
            payments.observe_e2e_many(chunk)
            payments.observe_batch(len(chunk))
            prom.await_scrapes(1)
        state.set_ready("engines")
        state.set_ready("partitions")

        prom.poll(lambda: prom.scalar("sum(streamfer_decisions_published_total)") == len(e2e),
                  15, "all decisions scraped")  # fmt: skip
        assert prom.scalar('sum(streamfer_records_consumed_total{stream="payments"})') == 5000
        estimate = prom.scalar(
            "histogram_quantile(0.99, sum by (le) (streamfer_e2e_latency_seconds_bucket))"
        )
        true_p99 = float(np.quantile(e2e, 0.99))
        assert estimate is not None and abs(bucket(estimate) - bucket(true_p99)) <= 1, (
            estimate, true_p99)  # fmt: skip
        prom.poll(lambda: prom.scalar("streamfer_ready") == 1, 15, "streamfer_ready 1")
        assert prom.scalar('up{job="streamfer"}') == 1

        # every rule evaluates against live data; the recorded p99 exists for the stream
        prom.poll(lambda: all(r.get("lastEvaluation", "").startswith("2") for r in prom.rules())
                  and prom.query("stream:streamfer_e2e_latency_seconds:p99_1m") != [],
                  20, "rule evaluation")  # fmt: skip
        bad = [(r["name"], r.get("lastError")) for r in prom.rules() if r["health"] != "ok"]
        assert not bad


def _transactions(n: int) -> list[tuple[bytes, bytes]]:
    from streamfer.models.generators.transactions import TransactionGenerator

    gen = TransactionGenerator(seed=11)
    out = []
    for _ in range(n):
        record, _is_fraud = gen.next()
        out.append((str(record["card_id"]).encode(), json.dumps(record).encode()))
    return out


@pytest.mark.integration
@pytest.mark.slow
def test_prometheus_agrees_with_the_decisions_of_a_running_pipeline(
    prometheus: Callable[[list[str]], Prometheus],
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    from streamfer.pipeline.app import Pipeline
    from streamfer.pipeline.config import parse_config

    n = 900
    source, sink = unique_topic(2), unique_topic(1)
    cfg = parse_config({
        "kafka": {"bootstrap_servers": kafka_bootstrap},
        "consumer": {"group_id": unique_group()},
        "models": {
            "fraud": {"path": str(ROOT / "streamfer" / "models" / "fraud.onnx"), "max_batch": 64},
        },
        "streams": [{"name": "payments", "kind": "transaction", "input_topic": source,
                     "output_topic": sink, "model": "fraud",
                     "batching": {"max_batch": 32, "max_wait_ms": 5}}],
        "metrics": {"host": "127.0.0.1", "port": 0},
    })  # fmt: skip
    with Pipeline(cfg) as pipe:
        pipe.wait_ready(timeout_s=60)
        assert pipe.http_url is not None
        prom = prometheus([pipe.http_url.removeprefix("http://")])

        # Paced at about 300 records/s, so that e2e latencies sit in the fine buckets around
        # the bounds rather than in a backlog's seconds.
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=1)
        start = time.monotonic()
        for i, (key, value) in enumerate(_transactions(n)):
            producer.send(source, value=value, key=key)
            if i % 10 == 9:
                time.sleep(max(0.0, start + (i + 1) / 300 - time.monotonic()))  # pacing
        producer.flush(30)
        producer.close()

        consumer = KafkaConsumer(sink, bootstrap_servers=kafka_bootstrap,
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 fetch_max_wait_ms=50)  # fmt: skip
        decisions: list[dict[str, Any]] = []
        deadline = time.monotonic() + 120
        while len(decisions) < n:
            assert time.monotonic() < deadline, f"{len(decisions)} of {n} decisions in 120 s"
            for msgs in consumer.poll(timeout_ms=200).values():
                decisions.extend(json.loads(m.value) for m in msgs)
        consumer.close()
        assert len(decisions) == n

        published = 'sum(streamfer_decisions_published_total{stream="payments"})'
        prom.poll(lambda: prom.scalar(published) == n, 30, f"{published} == {n}")
        prom.await_scrapes(2)  # and it stays exact: nothing counted twice
        assert prom.scalar(published) == n
        assert prom.scalar('sum(streamfer_records_consumed_total{stream="payments"})') == n

        def p99(selector: str) -> float | None:
            return prom.scalar(f"histogram_quantile(0.99, sum by (le) ({selector}))")

        estimate = p99('streamfer_e2e_latency_seconds_bucket{stream="payments"}')
        summary = pipe.stats()["payments"].run_percentile_ms(99)
        assert estimate is not None and summary is not None
        # One e2e everywhere: record timestamp -> decision acknowledged. The run summary
        # (1 % buckets) and the Prometheus histogram are the same observations, so their
        # p99 agree within one of the histogram's buckets; a decision cannot carry its
        # own acknowledgement time, so its document says null.
        assert abs(bucket(summary / 1000) - bucket(estimate)) <= 1, (estimate, summary)
        assert {d["latency_ms"]["e2e"] for d in decisions} == {None}
        assert all(d["latency_ms"]["infer"] is not None for d in decisions)
