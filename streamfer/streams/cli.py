"""``streamfer produce``: camera, sensor and transaction streams with a live rate display."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

import click
from rich.console import Console
from rich.live import Live
from rich.text import Text

from streamfer.streams.admin import create_topics
from streamfer.streams.bootstrap import bootstrap_option, resolve_bootstrap
from streamfer.streams.client import Compression
from streamfer.streams.local.feeds import (
    Message,
    camera_feed,
    sample_feed,
    sensor_feed,
    transaction_feed,
)
from streamfer.streams.local.producers import ProduceStats, producer_sink
from streamfer.streams.local.producers import produce as produce_messages

COMPRESSIONS: tuple[str, ...] = get_args(Compression)


def _common(default_topic: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Options every producer shares."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option("--topic", default=default_topic, show_default=True, help="Target topic."),
            click.option(
                "--partitions",
                type=click.IntRange(1),
                default=None,
                help="Create the topic with this many partitions if it does not exist.",
            ),
            click.option(
                "--count", type=click.IntRange(0), default=None, help="Stop after N messages."
            ),
            click.option(
                "--duration",
                type=click.FloatRange(0, min_open=True),
                default=None,
                help="Stop after this many seconds.",
            ),
            click.option(
                "--compression",
                type=click.Choice(COMPRESSIONS),
                default="lz4",
                show_default=True,
                help="Producer batch compression.",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(0, min_open=True),
                default=10.0,
                show_default=True,
                help="Seconds to wait for the broker before failing.",
            ),
            click.option("--seed", type=int, default=0, show_default=True, help="Generator seed."),
        ]
        for option in reversed(options):
            fn = option(fn)
        return bootstrap_option(config_file=False)(fn)

    return wrap


def _run(
    feed: Iterator[Message],
    *,
    bootstrap: str | None,
    topic: str,
    partitions: int | None,
    count: int | None,
    duration: float | None,
    compression: str,
    timeout: float,
    seed: int,
    rate: float = 0.0,
    pacing: str = "fixed",
    unit: str = "msg",
    large_messages: bool = False,
) -> ProduceStats:
    """Produce with a live line: sent, acked, failed, achieved vs target rate."""
    if logging.getLogger().getEffectiveLevel() >= logging.WARNING:
        # the client logs every refused connection; our own error says it once, clearly
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    servers = resolve_bootstrap(bootstrap).servers
    if partitions is not None:
        create_topics(servers, {topic: partitions}, timeout_s=timeout)
    sink = producer_sink(
        servers,
        compression=compression,  # type: ignore[arg-type]
        timeout_s=timeout,
        large_messages=large_messages,
    )
    target = f" (target {rate:,.0f}/s {pacing})" if rate > 0 else " (as fast as possible)"
    limit = f"{count:,}" if count is not None else "∞"
    console = Console(stderr=True)

    def line(stats: ProduceStats) -> Text:
        return Text(
            f"{topic}: sent {stats.sent:,}/{limit} {unit}, acked {stats.acked:,}, "
            f"failed {stats.failed:,} | {stats.rate:,.1f} {unit}/s{target} | "
            f"{stats.elapsed_s:.1f} s"
        )

    stop = threading.Event()
    live = Live(line(ProduceStats()), console=console, refresh_per_second=4, transient=True)
    with sink, live:
        try:
            stats = produce_messages(
                sink,
                topic,
                feed,
                rate=rate,
                pacing=pacing,  # type: ignore[arg-type]
                count=count,
                duration_s=duration,
                stop=stop,
                progress=lambda s: live.update(line(s)),
                seed=seed,
            )
        except KeyboardInterrupt:
            stop.set()
            raise
    console.print(line(stats))
    if stats.failed:
        raise click.ClickException(
            f"{stats.failed} of {stats.sent} messages failed; last error: {stats.last_error}"
        )
    return stats


@click.group(name="produce", context_settings={"help_option_names": ["-h", "--help"]})
def produce() -> None:
    """Produce camera, sensor or transaction streams to Kafka.

    Each command runs until --count messages or --duration seconds (whichever
    comes first; without either, until the feed ends or Ctrl-C) and shows the
    achieved rate live. It fails with an error within --timeout seconds if no
    broker answers.
    """


def _rate(default: float, text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--rate`` option of a feed (per second; 0: as fast as possible)."""
    return click.option("--rate", type=float, default=default, show_default=True, help=text)


def _file(text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--file`` option of a feed that can replay a file instead of its generator."""
    path = click.Path(exists=True, dir_okay=False, path_type=Path)
    return click.option("--file", "path", type=path, default=None, help=text)


@produce.command("transactions")
@_common("payments.tx")
@_rate(1000.0, "Target messages per second (open loop); 0 = as fast as possible.")
@click.option(
    "--pacing",
    type=click.Choice(["fixed", "poisson"]),
    default="fixed",
    show_default=True,
    help="Fixed spacing or Poisson arrivals at --rate.",
)
@click.option(
    "--fraud-rate",
    type=click.FloatRange(0, 0.5, max_open=True),
    default=0.01,
    show_default=True,
    help="Share of fraudulent transactions (generator only).",
)
@click.option(
    "--malformed-ratio",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of deliberately broken records (bad JSON, missing or bad fields), "
    "marked with a 'malformed' header, for exercising the dead-letter path.",
)
@_file("Replay a CSV (header row) or JSONL file instead of the generator.")
def transactions_cmd(
    rate: float,
    pacing: str,
    fraud_rate: float,
    malformed_ratio: float,
    path: Path | None,
    **common: Any,
) -> None:
    """Payment transactions (JSON, key = card id) from the generator or a file."""
    feed = transaction_feed(
        seed=common["seed"], fraud_rate=fraud_rate, malformed_ratio=malformed_ratio, path=path
    )
    _run(feed, rate=rate, pacing=pacing, unit="tx", **common)


@produce.command("sensor")
@_common("sensor.windows")
@_rate(100.0, "Target windows per second; 0 = as fast as possible.")
@click.option(
    "--vehicles",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="Simulated vehicles (keys) for the generator.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["raw", "json"]),
    default="raw",
    show_default=True,
    help="raw = little-endian float32 with shape header; json = {vehicle_id, window}.",
)
@_file("CSV of samples (ax,ay,az,gx,gy,gz[,vehicle_id]); 100-sample windows.")
@click.option(
    "--samples",
    is_flag=True,
    help="Single timestamped 6-channel samples (kind sensor-sample, 100 Hz per vehicle, "
    "default topic sensor.samples) instead of windows; --rate counts samples.",
)
def sensor_cmd(rate: float, vehicles: int, fmt: str, path: Path | None, samples: bool,
               **common: Any) -> None:  # fmt: skip
    """Sensor windows (100 x 6 IMU samples, key = vehicle id), or single samples."""
    if samples:
        if path is not None:
            raise click.BadParameter("--samples generates its samples", param_hint="--file")
        if common["topic"] == "sensor.windows":
            common["topic"] = "sensor.samples"
        _run(sample_feed(seed=common["seed"], vehicles=vehicles), rate=rate, unit="samples",
             **common)  # fmt: skip
        return
    feed = sensor_feed(seed=common["seed"], vehicles=vehicles, fmt=fmt, path=path)
    _run(feed, rate=rate, unit="windows", **common)


@produce.command("camera")
@_common("camera.frames")
@click.option(
    "--source",
    default=None,
    help="Video file or RTSP/HTTP URL read with OpenCV; default: synthetic road scenes.",
)
@click.option(
    "--cameras",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Number of cameras (keys cam-0..cam-N-1).",
)
@click.option(
    "--fps",
    type=float,
    default=15.0,
    show_default=True,
    help="Target frames per second per camera; 0 = as fast as possible.",
)
@click.option(
    "--quality", type=click.IntRange(1, 100), default=85, show_default=True, help="JPEG quality."
)
@click.option("--width", type=click.IntRange(16), default=640, show_default=True,
              help="Synthetic frame width.")  # fmt: skip
@click.option("--height", type=click.IntRange(16), default=360, show_default=True,
              help="Synthetic frame height.")  # fmt: skip
@click.option(
    "--encoding",
    type=click.Choice(["jpeg", "png", "raw"]),
    default="jpeg",
    show_default=True,
    help="Frame payload: JPEG, PNG or raw BGR pixels.",
)
@click.option("--no-loop", is_flag=True, help="Stop at the end of a video file.")
def camera_cmd(
    source: str | None,
    cameras: int,
    fps: float,
    quality: int,
    width: int,
    height: int,
    encoding: str,
    no_loop: bool,
    **common: Any,
) -> None:
    """Camera frames (headers capture-ts-ns, frame-seq; key = camera id)."""
    content_type = {"jpeg": "image/jpeg", "png": "image/png", "raw": "application/x-raw"}
    feed = camera_feed(
        source=source,
        cameras=cameras,
        width=width,
        height=height,
        quality=quality,
        content_type=content_type[encoding],
        seed=common["seed"],
        loop=not no_loop,
    )
    _run(feed, rate=fps * cameras, unit="frames", large_messages=True, **common)
