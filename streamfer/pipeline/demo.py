"""``streamfer demo``: the whole pipeline on the local broker and the CPU engine.

Starts the local Kafka broker (unless ``--bootstrap``, ``$STREAMFER__KAFKA__BOOTSTRAP_SERVERS``,
the config file or ``$STREAMFER_BOOTSTRAP`` names one), creates this
run's topics, runs the pipeline of ``deploy/configs/demo.yaml`` with the three
reference models, feeds synthetic camera, sensor and transaction streams (a
small share of them deliberately malformed) for ``--duration`` seconds while a
live table shows each stream, then drains, prints a summary, writes a few
annotated camera frames and shuts everything down.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from kafka import KafkaConsumer, TopicPartition
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from streamfer.errors import StreamferError
from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import PipelineConfig
from streamfer.pipeline.config.sources import load_resolved
from streamfer.pipeline.demo_view import FrameKeeper, stats_table, write_annotated
from streamfer.pipeline.run_cli import metrics_options, with_metrics
from streamfer.streams.admin import create_topics, wait_for_broker
from streamfer.streams.bootstrap import bootstrap_option
from streamfer.streams.local.feeds import Message, camera_feed, sensor_feed, transaction_feed
from streamfer.streams.local.producers import produce, producer_sink

OUTLET_LOGGER = "streamfer.pipeline.outlet"  # its per-record dead-letter warnings
DRAIN_TIMEOUT_S = 60.0
ANNOTATE_TIMEOUT_S = 30.0


def _for_run(config: PipelineConfig, run_id: str, bootstrap: str) -> PipelineConfig:
    """This run's own topics and group, so runs never see each other's records."""
    streams = [
        s.model_copy(
            update={
                "input_topic": f"{s.input_topic}.{run_id}",
                "output_topic": f"{s.output_topic}.{run_id}",
                "dlq_topic": None,
            }
        )
        for s in config.streams
    ]
    return config.model_copy(
        update={
            "kafka": config.kafka.model_copy(update={"bootstrap_servers": bootstrap}),
            "consumer": config.consumer.model_copy(update={"group_id": f"streamfer-demo-{run_id}"}),
            "streams": streams,
        }
    )


def _corrupted(feed: Iterator[Message], every: int, seed: int) -> Iterator[Message]:
    """Every ``every``-th record (on average) truncated: a bad record the DLQ must take."""
    rng = random.Random(seed)
    for key, value, headers in feed:
        if every and rng.randrange(every) == 0:
            yield key, value[: max(1, len(value) // 3)], headers
        else:
            yield key, value, headers


def _kept(feed: Iterator[Message], keeper: FrameKeeper) -> Iterator[Message]:
    for key, value, headers in feed:
        seq = dict(headers).get("frame-seq")
        if key is not None and seq is not None:
            keeper.keep(key.decode(), int(seq), value)
        yield key, value, headers


class _Annotator(threading.Thread):
    """Reads camera decisions and draws some of them onto the frames they decided.

    While traffic flows, one frame with detections every ``spacing_s``; once the
    pipeline has drained (``finish``), it reads on to the end of the decision
    topic without spacing until it has ``frames`` frames or reaches the end.
    """

    def __init__(
        self, bootstrap: str, topic: str, partitions: int, keeper: FrameKeeper, out_dir: Path,
        frames: int, spacing_s: float,
    ) -> None:
        super().__init__(name="annotator", daemon=True)
        self._servers = bootstrap
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self._keeper = keeper
        self._out_dir = out_dir
        self._frames = frames
        self._spacing_s = spacing_s
        self._finish = threading.Event()
        self._abort = threading.Event()
        self.written: list[Path] = []
        self.error: BaseException | None = None

    def finish(self, timeout_s: float) -> None:
        """Read to the end of the decision topic (bounded by ``timeout_s``), then stop."""
        self._finish.set()
        self.join(timeout_s)
        self._abort.set()

    def run(self) -> None:
        try:
            self._read()
        except Exception as exc:  # reported by the demo; the pipeline is not affected
            self.error = exc

    def _read(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self._servers, group_id=None, enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        consumer.assign(self._partitions)
        consumer.seek_to_beginning(*self._partitions)
        end: dict[TopicPartition, int] | None = None
        next_at = 0.0
        try:
            while len(self.written) < self._frames and not self._abort.is_set():
                if end is None and self._finish.is_set():
                    end = consumer.end_offsets(self._partitions)
                if end is not None and all(consumer.position(tp) >= end[tp] for tp in end):
                    return
                for records in consumer.poll(timeout_ms=200).values():
                    for record in records:
                        now = time.monotonic()
                        if end is None and now < next_at:
                            continue
                        if self._draw(json.loads(record.value)):
                            next_at = now + self._spacing_s
                        if len(self.written) >= self._frames:
                            return
        finally:
            consumer.close()

    def _draw(self, decision: dict[str, Any]) -> bool:
        seq = decision.get("frame", {}).get("seq")
        encoded = self._keeper.take(decision["source"]["key"], seq)
        if encoded is None or not decision["result"]["detections"]:
            return False
        path = write_annotated(self._out_dir, len(self.written), encoded, decision)
        if path is None:
            return False
        self.written.append(path)
        return True


@click.command()
@click.option("--duration", "duration_s", type=click.FloatRange(1), default=60.0,
              show_default=True, help="Seconds of synthetic traffic.")
@click.option("--tx-rate", type=click.FloatRange(0), default=200.0, show_default=True,
              help="Transactions per second (Poisson arrivals).")
@click.option("--sensor-rate", type=click.FloatRange(0), default=20.0, show_default=True,
              help="Sensor windows per second.")
@click.option("--cameras", type=click.IntRange(1, 16), default=2, show_default=True,
              help="Synthetic cameras.")
@click.option("--fps", type=click.FloatRange(0.1), default=5.0, show_default=True,
              help="Frames per second per camera.")
@click.option("--bad-every", type=click.IntRange(0), default=100, show_default=True,
              help="About one record in N of each stream is malformed (0: none).")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default="demo", show_default=True,
              help="Pipeline YAML file, or the name of a shipped one; the demo gives its topics "
              "and group a per-run suffix.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("out/demo"), show_default=True, help="Where annotated frames go.")
@click.option("--frames", type=click.IntRange(0, 50), default=6, show_default=True,
              help="Annotated camera frames to write.")
@metrics_options(workers=False)
@bootstrap_option(note="When none names one, the local broker is started.")
@click.option("--keep-broker", is_flag=True,
              help="Leave the local broker running afterwards (when the demo started it).")
@click.option("--no-live", is_flag=True, help="Print a line every 5 s instead of a live table.")
def demo(
    duration_s: float, tx_rate: float, sensor_rate: float, cameras: int, fps: float,
    bad_every: int, config_path: Path, out_dir: Path, frames: int, metrics_host: str | None,
    metrics_port: int | None, bootstrap: str | None, keep_broker: bool, no_live: bool,
) -> None:
    """Run the whole pipeline on synthetic traffic and print what it decided.

    The malformed records' dead letters are counted in the table; -v also logs each.

    The broker is the one --bootstrap, $STREAMFER__KAFKA__BOOTSTRAP_SERVERS, the config
    file or $STREAMFER_BOOTSTRAP names (in that order); when none does, the local broker
    is started (and stopped afterwards unless it was running already or --keep-broker).
    """
    console = Console(stderr=True)
    if not console.is_terminal:  # a log file or pipe: room for the whole table
        console.width = max(console.width, 110)
    resolved = load_resolved(config_path, bootstrap=bootstrap)
    config = with_metrics(resolved.config, metrics_host, metrics_port)
    address = config.kafka.resolved_bootstrap()
    broker = None
    if resolved.source("kafka", "bootstrap_servers") == "default":
        from streamfer.streams.local.broker import LocalBroker

        broker = LocalBroker()
        started_here = not broker.status().running
        address = broker.start(progress=lambda m: console.print(f"[dim]{m}[/dim]"))
    else:
        started_here = False
        wait_for_broker(address, timeout_s=30)
    outlet_log = logging.getLogger(OUTLET_LOGGER)
    outlet_level = outlet_log.level
    if logging.getLogger().getEffectiveLevel() == logging.WARNING:
        # the malformed records are sent on purpose and the table counts their dead letters;
        # a warning line each would scroll it away (-v shows them)
        outlet_log.setLevel(logging.ERROR)
    try:
        _run(console, address, config, resolved.path, duration_s, tx_rate, sensor_rate, cameras,
             fps, bad_every, out_dir, frames, no_live)
    finally:
        outlet_log.setLevel(outlet_level)
        if broker is not None and started_here and not keep_broker:
            console.print("[dim]stopping the local broker[/dim]")
            broker.stop()


def _run(
    console: Console, bootstrap: str, base: PipelineConfig, config_path: Path, duration_s: float,
    tx_rate: float, sensor_rate: float, cameras: int, fps: float, bad_every: int, out_dir: Path,
    frames: int, no_live: bool,
) -> None:
    run_id = uuid.uuid4().hex[:8]
    config = _for_run(base, run_id, bootstrap)
    by_kind = {s.kind: s for s in config.streams}
    missing = {"camera", "sensor", "transaction"} - set(by_kind)
    if missing:
        raise StreamferError(
            f"{config_path} | no stream of kind {sorted(missing)}. "
            "Note: the demo feeds one camera, one sensor and one transaction stream"
        )
    topics = {s.input_topic: 2 for s in config.streams}
    topics |= {s.output_topic: 2 for s in config.streams}
    topics |= {s.resolved_dlq_topic: 1 for s in config.streams}
    create_topics(bootstrap, topics)
    console.print(f"run [bold]{run_id}[/bold]: topics {', '.join(sorted(topics))}")

    keeper = FrameKeeper()
    feeds: dict[str, tuple[Iterator[Message], float]] = {
        by_kind["transaction"].input_topic: (
            transaction_feed(seed=1, malformed_ratio=1 / bad_every if bad_every else 0.0),
            tx_rate,
        ),
        by_kind["sensor"].input_topic: (
            _corrupted(sensor_feed(seed=2), bad_every, seed=3), sensor_rate,
        ),
        by_kind["camera"].input_topic: (
            _kept(_corrupted(camera_feed(cameras=cameras, seed=4), bad_every, seed=5), keeper),
            fps * cameras,
        ),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    stop_feeding = threading.Event()
    camera_out = by_kind["camera"].output_topic
    annotator = _Annotator(
        bootstrap, camera_out, topics[camera_out], keeper, out_dir, frames,
        spacing_s=duration_s / max(frames, 1),
    )

    console.print("loading models and joining the consumer group...")
    with Pipeline(config) as pipe:
        pipe.wait_ready(timeout_s=120)
        console.print(f"pipeline ready; Prometheus metrics at [bold]{pipe.http_url}/metrics[/bold]")
        feeders = [
            threading.Thread(
                target=_feed, args=(bootstrap, topic, feed, rate, duration_s, stop_feeding),
                name=f"feed-{topic}", daemon=True,
            )
            for topic, (feed, rate) in feeds.items()
        ]
        for thread in [*feeders, annotator]:
            thread.start()
        try:
            _watch(console, pipe, duration_s, feeders, no_live)
        finally:
            stop_feeding.set()
            for thread in feeders:
                thread.join(timeout=30)
        _drain(console, pipe)
        annotator.finish(timeout_s=ANNOTATE_TIMEOUT_S)
        final = pipe.stats()
    console.print(stats_table(f"streamfer demo {run_id}: summary", final, whole_run=True))
    if pipe.failure is not None:
        raise StreamferError(f"pipeline | stopped on an error: {pipe.failure}")
    for path in annotator.written:
        console.print(f"annotated frame: {path}")
    if annotator.error is not None:
        console.print(f"[yellow]annotated frames: reading {camera_out} failed: "
                      f"{annotator.error!r}[/yellow]")
    elif frames and not annotator.written:
        console.print(f"no annotated frame written (no decision with detections in {camera_out})")


def _feed(
    bootstrap: str, topic: str, feed: Iterator[Message], rate: float, duration_s: float,
    stop: threading.Event,
) -> None:
    if rate <= 0:
        return
    with producer_sink(bootstrap, large_messages=True) as sink:
        produce(sink, topic, feed, rate=rate, pacing="poisson", duration_s=duration_s, stop=stop)


def _watch(
    console: Console, pipe: Pipeline, duration_s: float, feeders: list[threading.Thread],
    no_live: bool,
) -> None:
    start = time.monotonic()
    last = {name: (start, s.decided) for name, s in pipe.stats().items()}
    rates: dict[str, float] = {}

    def view() -> Group:
        now = time.monotonic()
        stats = pipe.stats()
        for name, snap in stats.items():
            t0, n0 = last[name]
            if now - t0 >= 1.0:
                rates[name] = (snap.decided - n0) / (now - t0)
                last[name] = (now, snap.decided)
        left = max(0.0, duration_s - (now - start))
        header = Text(f"feeding for another {left:.0f} s  (Ctrl-C stops early and drains)")
        return Group(header, stats_table("streamfer demo", stats, rates))

    def feeding() -> bool:
        return any(t.is_alive() for t in feeders) and pipe.failure is None

    if no_live:
        while feeding() and not pipe.wait(5.0):
            console.print(view())
        return
    with Live(view(), console=console, refresh_per_second=2) as live:
        while feeding() and not pipe.wait(0.5):
            live.update(view())


def _drain(console: Console, pipe: Pipeline) -> None:
    """Wait until every consumed record is resolved and no lag is left (bounded)."""
    console.print("feeding stopped; waiting for the pipeline to decide what is in flight...")
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline and pipe.failure is None:
        stats = pipe.stats().values()
        if all(s.resolved >= s.consumed and s.lag == 0 and s.in_flight == 0 for s in stats):
            return
        time.sleep(0.2)  # poll interval
    console.print("[yellow]drain deadline reached; stopping with work in flight[/yellow]")

