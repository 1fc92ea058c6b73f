"""The worked plug-in example (examples/telemetry-anomaly): its training, its model, its
installation as a plug-in, its per-machine baseline (state codec, update, restore), and the
whole stream on the real broker, killed with SIGKILL and restarted."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import yaml
from e2e_helpers import committed, read_all, wait_for
from kafka import KafkaConsumer, TopicPartition

from streamfer.engines.base import TensorSpec
from streamfer.errors import ConfigError
from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import load_config, parse_config
from streamfer.pipeline.processors import ProcessorContext, RecordBatch, StateView, plugins
from streamfer.streams.codecs import CodecLimits, validate_decision
from streamfer.streams.state import LocalStore, changelog_topic
from telemetry_anomaly import BASELINE_CODEC, AnomalyConfig, Baseline, TelemetryAnomaly
from telemetry_anomaly.data import FAULTS, TelemetryGenerator, matrix
from telemetry_anomaly.produce import produce, readings
from telemetry_anomaly.train import MODEL_PATH, train

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "telemetry-anomaly"


def flagged(scores: np.ndarray, labels: list[str], threshold: float) -> dict[str, float]:
    """Per label, the share of readings at or above the threshold."""
    arr = np.asarray(labels)
    return {k: float((scores[arr == k] >= threshold).mean()) for k in ("normal", *FAULTS)}


def held_out() -> tuple[np.ndarray, list[str]]:
    """The model card's held-out set: seed 2, 20 % faulty."""
    samples, labels = TelemetryGenerator(seed=2, fault_ratio=0.2).take(10_000)
    return matrix(samples), labels


def onnx_scores(path: Path, x: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    return session.run(["score"], {"telemetry": x})[0][:, 0], meta


def test_training_separates_faults_and_reproduces_the_committed_model(tmp_path: Path) -> None:
    _, threshold = train(tmp_path / "ae.onnx")
    x, labels = held_out()
    scores, meta = onnx_scores(tmp_path / "ae.onnx", x)
    assert float(meta["telemetry.threshold"]) == pytest.approx(threshold, rel=1e-5)
    rates = flagged(scores, labels, threshold)
    assert rates["normal"] <= 0.01
    assert min(rates[f] for f in FAULTS) >= 0.85, rates
    committed_scores, committed_meta = onnx_scores(MODEL_PATH, x)
    assert np.allclose(scores, committed_scores, rtol=1e-3, atol=1e-5)
    assert committed_meta["telemetry.threshold"] == meta["telemetry.threshold"]


def test_the_committed_model_meets_its_card() -> None:
    x, labels = held_out()
    scores, meta = onnx_scores(MODEL_PATH, x)
    rates = flagged(scores, labels, float(meta["telemetry.threshold"]))
    card = (EXAMPLE / "MODEL_CARD.md").read_text()
    for label, rate in rates.items():
        assert f"| {label} | {rate:.3f} |" in card, (label, rate)
    assert MODEL_PATH.stat().st_size < 4096


def test_the_example_installs_as_a_plugin_and_its_config_is_checked(tmp_path: Path) -> None:
    assert plugins.load("telemetry-anomaly") is TelemetryAnomaly
    cfg = load_config(EXAMPLE / "pipeline.yaml")
    assert cfg.streams[0].processor == "telemetry-anomaly"
    doc = yaml.safe_load((EXAMPLE / "pipeline.yaml").read_text())
    doc["models"]["telemetry_ae"]["path"] = str(MODEL_PATH)
    doc["streams"][0]["processor_config"] = {"alert_header": "bad header!", "threshold": 0}
    with pytest.raises(ConfigError) as info:
        parse_config(doc, "t.yaml", EXAMPLE)
    assert str(info.value).splitlines()[1:] == [
        "  t.yaml: streams[0].processor_config.threshold | Input should be greater than 0 "
        "(got 0). Note: allowed: > 0.0",
    ]
    doc["streams"][0]["processor_config"] = {"alert_header": "bad header!"}
    with pytest.raises(ConfigError) as info:
        parse_config(doc, "t.yaml", EXAMPLE)
    assert str(info.value).splitlines()[1:] == [
        "  t.yaml: streams[0].processor_config.alert_header | not a usable header name "
        "(got 'bad header!'). Note: allowed: 1-64 of A-Z a-z 0-9 _ . -",
    ]


def test_the_baseline_codec_round_trips_exactly() -> None:
    rng = np.random.default_rng(5)
    base = Baseline.first(rng.normal(size=5) * 1e3, 1_767_225_600_000)
    for i in range(50):
        base = base.updated(rng.normal(size=5) * 1e3 + 1 / 3, 1_767_225_600_000 + i, 0.05)
    raw = BASELINE_CODEC.encode(base)
    back = BASELINE_CODEC.decode(raw)
    assert len(raw) == 96 and BASELINE_CODEC.encode(back) == raw
    assert (back.readings, back.seen_ms) == (51, 1_767_225_600_049) == (
        base.readings, BASELINE_CODEC.seen_ms(base))  # fmt: skip
    assert back.mean.tobytes() == base.mean.tobytes()  # bit for bit, not approximately
    assert back.var.tobytes() == base.var.tobytes()


def test_the_baseline_learns_a_machine_and_scores_a_departure() -> None:
    rng = np.random.default_rng(6)
    mu, sigma = np.array([1500.0, 60.0, 3.0, 14.0, 5.0]), np.array([40.0, 2.0, 0.2, 0.5, 0.1])
    base = Baseline.first(mu + sigma * rng.normal(size=5), 0)
    for t in range(1, 3000):
        before = base
        base = base.updated(mu + sigma * rng.normal(size=5), t, 0.02)
        assert before.readings == t and before.mean is not base.mean  # a new value every time
    assert base.readings == 3000 and base.seen_ms == 2999
    assert np.allclose(base.mean, mu, atol=0.5 * sigma)  # about 2 / 0.02 readings count
    assert np.allclose(np.sqrt(base.var), sigma, rtol=0.35)
    z = base.z_scores(mu + np.array([0, 0, 10 * 0.2, 0, 0]))  # vibration 10 sigma up
    assert int(z.argmax()) == 2 and 6 < z[2] < 15 and z.max() == z[2]
    # one step, by the definition: the mean moves alpha of the way, the variance as Finch's
    one = Baseline(2, 0, np.full(5, 10.0), np.full(5, 4.0)).updated(np.full(5, 20.0), 1, 0.1)
    assert np.allclose(one.mean, 11.0) and np.allclose(one.var, 0.9 * (4.0 + 10.0 * 1.0))


def telemetry_processor(**config: Any) -> TelemetryAnomaly:
    session = ort.InferenceSession(str(MODEL_PATH), providers=["CPUExecutionProvider"])
    f32 = np.dtype(np.float32)
    return TelemetryAnomaly(ProcessorContext(
        stream="telemetry", kind="custom", model="telemetry_ae", config=AnomalyConfig(**config),
        inputs=(TensorSpec("telemetry", f32, (None, 5)),),
        outputs=(TensorSpec("score", f32, (None, 1)), TensorSpec("errors", f32, (None, 5))),
        metadata=session.get_modelmeta().custom_metadata_map, max_batch=256,
        limits=CodecLimits()))  # fmt: skip


def reading_batches(n: int, size: int) -> list[RecordBatch]:
    sent = list(readings(n, seed=4, fault_ratio=0.05, malformed_ratio=0.02))
    return [
        RecordBatch("in", 0, list(range(i, i + len(part))), [k for k, _, _ in part],
                    [v for _, v, _ in part], [None] * len(part),
                    [1_767_225_600_000 + 100 * j for j in range(i, i + len(part))], 0)
        for i in range(0, n, size)
        for part in [sent[i : i + size]]
    ]  # fmt: skip


def baselines(prepared: Any) -> list[tuple[int, bytes] | None]:
    return [None if r.baseline is None else (r.baseline.readings, BASELINE_CODEC.encode(r.baseline))
            for r in prepared.metas]  # fmt: skip


def test_baselines_restored_from_the_store_equal_those_never_stored(tmp_path: Path) -> None:
    """The processor through a state view, closed and reopened (a restart) every few
    batches and with a cache smaller than the machines, sees the baselines it would in
    memory, bit for bit, however the readings are batched."""
    memory = telemetry_processor()
    want = [b for batch in reading_batches(600, 64) for b in baselines(memory.prepare(batch))]
    stored = telemetry_processor()
    got: list[tuple[int, bytes] | None] = []
    for i, batch in enumerate(reading_batches(600, 25)):
        if i % 5 == 0:  # closed without a checkpoint: what the next open reads is the store
            view = StateView("in[0]", LocalStore(tmp_path / "p0").open(), BASELINE_CODEC,
                             ttl_ms=None, cache_keys=4, next_offset=batch.offsets[0])  # fmt: skip
        got += baselines(stored.prepare_with_state(batch, view))
        view.flush(batch.offsets[-1] + 1)
        if i % 5 == 4:
            view.close(None)
    view.close(None)
    assert len(want) == len(got) > 550 and got == want
    assert sum(b is not None and b[0] >= 20 for b in got) > 300  # baselines that score


@pytest.mark.integration
def test_the_example_stream_end_to_end(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    src, out, group = unique_topic(2), unique_topic(2), unique_group()
    doc: dict[str, Any] = yaml.safe_load((EXAMPLE / "pipeline.yaml").read_text())
    doc["kafka"] = {"bootstrap_servers": kafka_bootstrap, "client_id": f"c-{group}"}
    doc["consumer"]["group_id"] = group
    doc["metrics"] = {"enabled": False}
    doc["runtime"] = {"commit_interval_ms": 100}
    doc["streams"][0].update(input_topic=src, output_topic=out)
    doc["streams"][0]["state"]["dir"] = str(tmp_path / "state")
    pipe = Pipeline(parse_config(doc, "pipeline.yaml", EXAMPLE))
    sent = list(readings(400, seed=9, fault_ratio=0.1, malformed_ratio=0.03))
    label_of = {value: label for _, value, label in sent}  # healthy and faulty ones are unique
    malformed = sum(label == "malformed" for _, _, label in sent)
    with pipe:
        pipe.wait_ready(30)
        n = produce(kafka_bootstrap, src, iter(sent))
        wait_for(lambda: pipe.stats()["telemetry"].resolved >= n, 60, "every reading resolved")
        wait_for(lambda: sum(committed(kafka_bootstrap, group, src).values()) == n, 30,
                 "offsets committed")  # fmt: skip
        snap = pipe.stats()["telemetry"]
        assert pipe.failure is None

    produced = read_all(kafka_bootstrap, src, lambda m: len(m) >= n)
    inputs = {(m.partition, m.offset): m.value for m in produced}
    verdicts = read_all(kafka_bootstrap, out, lambda m: len(m) >= n - malformed)
    assert len(verdicts) == n - malformed == snap.decided
    by_label: dict[str, list[bool]] = {}
    for m in verdicts:
        doc = json.loads(m.value)
        validate_decision(doc)
        result = doc["result"]
        value = inputs[(doc["source"]["partition"], doc["source"]["offset"])]
        assert result["machine_id"] == json.loads(value)["machine_id"] == m.key.decode()
        z = result["z_score"]
        assert (z is None) == (result["baseline"] is None) == (result["z_signal"] is None)
        assert result["anomaly"] == (result["anomaly_score"] >= result["threshold"]
                                     or (z is not None and z >= 4.0))  # fmt: skip
        headers = dict(m.headers or [])
        assert headers == ({"anomaly": result["suspect"].encode()} if result["anomaly"] else {})
        by_label.setdefault(label_of[value], []).append(result["anomaly"])
    healthy = by_label["normal"]
    assert len(healthy) > 300 and sum(healthy) <= 0.015 * len(healthy)  # false alarms
    faults = [a for label in FAULTS for a in by_label.get(label, [])]
    assert len(faults) >= 20 and sum(faults) >= 0.85 * len(faults)
    letters = read_all(kafka_bootstrap, f"{src}.dlq", lambda m: len(m) >= malformed)
    assert len(letters) == malformed
    reasons = {dict(m.headers)["error-reason"].decode() for m in letters}
    assert reasons <= {"bad_json", "missing_field", "bad_field"} and len(reasons) == 3
    assert sum(snap.dead_lettered.values()) == malformed


# -- kill -9 and restart: the baselines come back --------------------------------------------
CHUNKS = (300, 300, 300)  # readings produced per run: the third run gets the last chunk
# the killed runs commit that far apart: the readings decided right after a commit are
# still uncommitted when the run is killed (seconds later, on a loaded machine too)
COMMIT_INTERVAL_MS = 15_000
Coords = tuple[int, int]


def run_config(tmp_path: Path, bootstrap: str, group: str, src: str, out: str,
               delivery: str, state: bool) -> dict[str, Any]:  # fmt: skip
    """The example's pipeline.yaml on this test's topics, group and state directory."""
    doc: dict[str, Any] = yaml.safe_load((EXAMPLE / "pipeline.yaml").read_text())
    doc["kafka"] = {"bootstrap_servers": bootstrap, "client_id": f"c-{group}"}
    doc["consumer"].update(group_id=group, session_timeout_ms=6000, max_poll_records=50)
    doc["models"]["telemetry_ae"]["path"] = str(MODEL_PATH)
    doc["metrics"] = {"enabled": False}
    doc["runtime"] = {"commit_interval_ms": COMMIT_INTERVAL_MS}
    stream = doc["streams"][0]
    stream.update(input_topic=src, output_topic=out, delivery=delivery)
    stream["state"].update(enabled=state, dir=str(tmp_path / "state"))
    return doc


class Verdicts:
    """The results per input record on ``topic``, read by one consumer from the start as
    they come (replays after a crash decide some twice with at-least-once delivery)."""

    def __init__(self, bootstrap: str, topic: str, delivery: str) -> None:
        isolation = "read_committed" if delivery == "exactly_once" else "read_uncommitted"
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      auto_offset_reset="earliest", isolation_level=isolation)
        self.consumer.assign([TopicPartition(topic, 0)])
        self.by_record: dict[Coords, list[dict[str, Any]]] = {}

    def read(self, timeout_ms: int = 100) -> int:
        """Read what is there; the number of records with a verdict."""
        self._poll(timeout_ms)
        return len(self.by_record)

    def drain(self) -> dict[Coords, list[dict[str, Any]]]:
        """Everything on the topic (what its writers had written when they stopped)."""
        while self._poll(500):
            pass
        return self.by_record

    def _poll(self, timeout_ms: int) -> int:
        n = 0
        for batch in self.consumer.poll(timeout_ms=timeout_ms).values():
            for m in batch:
                d = json.loads(m.value)
                coords = (d["source"]["partition"], d["source"]["offset"])
                self.by_record.setdefault(coords, []).append(d["result"])
                n += 1
        return n

    def close(self) -> None:
        self.consumer.close()


class Run:
    """``streamfer run -c <config>`` as a child process, its log in one file for all runs."""

    def __init__(self, cfg: Path, log: Path) -> None:
        self.cfg, self.log = cfg, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_from = 0  # where this run's lines start in the log

    def start(self) -> None:
        self.log_from = self.log.stat().st_size if self.log.exists() else 0
        exe = Path(sys.executable).with_name("streamfer")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([str(exe), "-v", "run", "-c", str(self.cfg)],
                                         cwd=self.cfg.parent, stdout=log,
                                         stderr=subprocess.STDOUT)  # fmt: skip

    def lines(self) -> str:
        with self.log.open("rb") as f:
            f.seek(self.log_from)
            return f.read().decode(errors="replace")

    def wait_for(self, cond: Callable[[], bool], timeout_s: float, what: str) -> None:
        """``wait_for`` that fails at once, with the log, if the run died."""
        assert self.proc is not None
        proc = self.proc
        try:
            wait_for(lambda: proc.poll() is not None or cond(), timeout_s, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; log: {self.lines()[-6000:]}") from None
        assert proc.poll() is None, f"the run exited ({proc.returncode}): {self.lines()[-6000:]}"

    def kill_9(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no drain, no last commit, no checkpoint
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


def changelog_end(bootstrap: str, topic: str) -> int:
    """Entries written to the changelog ``topic`` so far (its end offsets, summed)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(tps).values()) if tps else 0
    finally:
        consumer.close()


def restored(text: str) -> list[tuple[int, int]]:
    """Per "state restored" line in ``text``: the keys restored and the changelog entries
    ignored (written for records past the committed offset)."""
    found = re.findall(r"state restored from \S+: ([\d,]+) keys .*?([\d,]+) at or past", text)
    return [(int(k.replace(",", "")), int(x.replace(",", ""))) for k, x in found]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_the_baselines_survive_kill_9_and_the_verdicts_equal_an_uninterrupted_run(
    delivery: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    """``streamfer run -c pipeline.yaml`` (the example's, on this test's topics) is killed
    with SIGKILL twice, each time after its partitions' state was restored and it decided
    part of what it was given, and restarted. Every reading's verdict (the machine's
    baseline, z-score, anomaly) equals the one of an uninterrupted run with the baselines
    in memory; after a restart without the restored baselines, the machines' baselines
    would start again (null, then fewer readings)."""
    src, out, group = unique_topic(2), unique_topic(1), unique_group()
    sent = list(readings(sum(CHUNKS), seed=12, fault_ratio=0.05, malformed_ratio=0.0))
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text(yaml.safe_dump(run_config(tmp_path, kafka_bootstrap, group, src, out,
                                             delivery, state=True)))  # fmt: skip
    run = Run(cfg, tmp_path / "run.log")
    changelog = changelog_topic(group, "telemetry")
    produced, entries = 0, 0
    uncommitted: list[bool] = []  # per kill: the second half's changelog entries uncommitted
    restarts: list[tuple[int, int]] = []  # per restart: keys restored, entries ignored

    reader = Verdicts(kafka_bootstrap, out, delivery)

    def decided(n: int) -> bool:
        return reader.read() >= n

    def committed_all(n: int) -> bool:
        return sum(committed(kafka_bootstrap, group, src).values()) >= n

    try:
        for i, chunk in enumerate(CHUNKS):
            run.start()
            # never before this run restored both partitions: a kill during a restore tests
            # something else (and a slow start would make the kill land at random)
            run.wait_for(lambda: len(restored(run.lines())) >= 2, 90,
                         f"run {i + 1}: both partitions restored")  # fmt: skip
            if i:
                done = restored(run.lines())
                restarts.append((sum(k for k, _ in done), sum(x for _, x in done)))
            last = i == len(CHUNKS) - 1
            for j, half in enumerate((chunk // 2, chunk - chunk // 2)):
                produce(kafka_bootstrap, src, iter(sent[produced : produced + half]))
                produced += half
                if not last and j == 0:
                    # the first half committed: the restart has baselines to restore
                    run.wait_for(lambda n=produced: committed_all(n), 90,
                                 f"run {i + 1}: {produced} readings committed")  # fmt: skip
                    entries = changelog_end(kafka_bootstrap, changelog)
            run.wait_for(lambda n=produced: decided(n), 90,
                         f"run {i + 1}: {produced} readings decided")  # fmt: skip
            if not last and delivery == "at_least_once":
                # a key's entry is written once per commit interval, at the flush that comes
                # a commit before the records' own commit: wait for the second half's entries
                # (the kill then lands in the 15 s before they are committed, so the restart
                # must ignore them)
                run.wait_for(lambda n=entries: changelog_end(kafka_bootstrap, changelog) > n,
                             60, f"run {i + 1}: the second half's changelog entries")  # fmt: skip
            if not last:
                # the second half decided but (with at-least-once) not committed yet: after
                # the restart it is decided again, on baselines restored without its
                # changelog entries (else they would count those readings twice). The
                # flush's acknowledgements may rarely beat the commit of the same tick: then
                # nothing is left to ignore, and only the verdicts below are checked.
                uncommitted.append(not committed_all(produced))
                run.kill_9()
    finally:
        run.stop()
    got = reader.drain()  # the runs stopped: what they decided is all there
    reader.close()
    assert all(keys > 0 for keys, _ in restarts), restarts  # the baselines came back each time
    if delivery == "at_least_once":  # changelog entries past the committed offset were ignored
        ignored = [x for (_, x), open_ in zip(restarts, uncommitted, strict=True) if open_]
        assert all(x > 0 for x in ignored), (restarts, uncommitted)

    ref_group = unique_group()
    ref_doc = run_config(tmp_path, kafka_bootstrap, ref_group, src, unique_topic(1),
                         "at_least_once", state=False)  # fmt: skip
    with Pipeline(parse_config(ref_doc, "pipeline.yaml", EXAMPLE), serve_http=False) as pipe:
        pipe.wait_ready(30)
        wait_for(lambda: pipe.stats()["telemetry"].resolved >= produced, 90, "the reference run")
    ref_reader = Verdicts(kafka_bootstrap, ref_doc["streams"][0]["output_topic"], "at_least_once")
    wait_for(lambda: ref_reader.read() >= produced, 60, "the reference verdicts")
    ref = ref_reader.drain()
    ref_reader.close()
    assert len(ref) == produced and all(len(v) == 1 for v in ref.values())
    assert set(got) == set(ref), f"{len(set(ref) - set(got))} readings without a verdict"
    exact = ("machine_id", "baseline", "z_score", "z_signal", "suspect")
    wrong = {}
    for coords, results in got.items():
        want = ref[coords][0]
        for r in results:  # a replayed reading's second verdict too
            same = {k: r[k] for k in exact} == {k: want[k] for k in exact}
            same &= abs(r["anomaly_score"] - want["anomaly_score"]) <= 1e-5
            if abs(want["anomaly_score"] - want["threshold"]) > 1e-5:  # not on the edge
                same &= r["anomaly"] == want["anomaly"]
            if not same:
                wrong[coords] = (r, want)
    assert not wrong, f"{len(wrong)} verdicts differ from the uninterrupted run: " \
                      f"{list(wrong.items())[:3]}"  # fmt: skip
    if delivery == "exactly_once":
        assert all(len(v) == 1 for v in got.values()), "committed duplicates"
    scored = sum(r["baseline"] is not None for v in ref.values() for r in v)
    assert scored > produced // 2  # most verdicts are against a baseline


def test_check_processor_runs_the_stateful_example_without_kafka(tmp_path: Path) -> None:
    """``streamfer check-processor`` on readings of two machines: the later readings of
    each are scored against its baseline (kept in memory, without a state store)."""
    gen = TelemetryGenerator(seed=3, machines=2)
    sample = tmp_path / "readings.jsonl"
    sample.write_text("".join(json.dumps(next(gen)[0]) + "\n" for _ in range(60)))
    exe = Path(sys.executable).with_name("streamfer")
    done = subprocess.run([str(exe), "check-processor", "telemetry-anomaly", "--model",
                           str(MODEL_PATH), "--sample", str(sample)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    decode = json.JSONDecoder().raw_decode  # a line: "  #3 {...}  headers=[...]"
    results = [decode(line[line.index("{"):])[0]["result"]
               for line in done.stdout.splitlines() if line.startswith("  #")]  # fmt: skip
    assert len(results) == 60
    scored = [r for r in results if r["baseline"] is not None]
    assert len(scored) == 60 - 2 * 20  # each machine's first 20 readings are its warm-up
    assert {r["machine_id"] for r in scored} == {"machine-000", "machine-001"}
    assert all(r["baseline"]["readings"] >= 20 and r["z_score"] >= 0 for r in scored)
