"""``streamfer run`` and ``streamfer validate``."""

from __future__ import annotations

import faulthandler
import gc
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import click

from streamfer import logs
from streamfer.pipeline.config import PipelineConfig, load_config
from streamfer.pipeline.config.sources import load_resolved
from streamfer.pipeline.config_cli import CONFIG_OPTION
from streamfer.streams.bootstrap import bootstrap_option

log = logging.getLogger(__name__)



def metrics_options(
    fn: Callable[..., Any] | None = None, *, workers: bool = True
) -> Any:
    """``--metrics-host`` and ``--metrics-port``, over the config's ``metrics`` section."""
    each = " With --workers N, worker i serves on port + i." if workers else ""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = click.option(
            "--metrics-port",
            type=click.IntRange(0, 65535),
            default=None,
            metavar="PORT",
            help="Port of /metrics, /healthz and /readyz, instead of the config's metrics.port "
            f"(0: any free port).{each}",
        )(fn)
        return click.option(
            "--metrics-host",
            default=None,
            metavar="ADDRESS",
            help="Address the /metrics, /healthz and /readyz server binds, instead of the "
            "config's metrics.host (default 0.0.0.0: every interface, so Prometheus can scrape "
            "from elsewhere; 127.0.0.1 keeps it local).",
        )(fn)

    return wrap if fn is None else wrap(fn)


@click.command()
@CONFIG_OPTION
@bootstrap_option
def validate(config_path: Path, bootstrap: str | None) -> None:
    """Check a pipeline config file, with the STREAMFER__<SECTION>__<KEY> environment
    overrides and --bootstrap applied: print every problem, or a short summary.

    Exits 0 when the file is valid, 2 when it is not.
    """
    # ConfigError -> listed problems, exit 2 (pipeline.cli)
    cfg = load_resolved(config_path, bootstrap=bootstrap).config
    click.echo(f"{config_path}: OK")
    click.echo(cfg.summary())


@click.command()
@CONFIG_OPTION
@bootstrap_option
@metrics_options
@click.option(
    "-w",
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes. They join one consumer group and share the partitions; "
    "worker i serves /metrics, /healthz and /readyz on metrics.port + i.",
)
@click.option(
    "--worker-index",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    envvar="STREAMFER_WORKER_INDEX",
    help="This process's index among the processes of its consumer group: it names the Kafka "
    "transactional id under exactly-once (two processes with one index fence each other) and "
    "is added to the metrics port. Give each process its own, e.g. a StatefulSet pod's "
    "ordinal (env STREAMFER_WORKER_INDEX); --workers N numbers its workers itself.",
)
def run(config_path: Path, bootstrap: str | None, metrics_host: str | None,
        metrics_port: int | None, workers: int, worker_index: int) -> None:  # fmt: skip
    """Run the configured streams until SIGTERM or Ctrl-C.

    The config file gets the STREAMFER__<SECTION>__<KEY> environment overrides and
    --bootstrap applied (see `streamfer config show`). The first signal drains:
    polling stops, records in flight are decided, published and committed, then the
    process exits. A second signal exits at once (records not yet committed are
    consumed again after a restart). SIGUSR1 prints every thread's stack to stderr
    and goes on. SIGHUP re-reads the config file's model section and swaps in the
    model versions it picks now, without a restart (the rest of the file is not
    re-read).
    """
    cfg = load_resolved(config_path, bootstrap=bootstrap).config
    cfg = with_metrics(cfg, metrics_host, metrics_port)
    if workers > 1:
        sys.exit(_run_workers(config_path, workers, bootstrap, metrics_host, metrics_port))
    sys.exit(_run_one(cfg, worker_index, config_path))


def with_metrics(
    cfg: PipelineConfig, host: str | None, port: int | None = None
) -> PipelineConfig:
    """``cfg`` with ``metrics.host`` and ``metrics.port`` replaced (None or empty: unchanged)."""
    update: dict[str, Any] = {}
    if host:
        update["host"] = host
    if port is not None:
        update["port"] = port
    if not update:
        return cfg
    return cfg.model_copy(update={"metrics": cfg.metrics.model_copy(update=update)})


def freeze_start_up_heap() -> int:
    """Collect once, then take every object start-up built (modules, models, clients) out of
    the cyclic collector's view; returns how many are frozen.

    They live as long as the process, and each full collection walks them all while every
    thread waits: 20-50 ms a time with the fraud stream, about 3 ms once they are frozen
    (bench/RESULTS.md). Objects made later are collected as usual."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def _run_one(cfg: PipelineConfig, worker_index: int, config_path: Path | None = None) -> int:
    from streamfer.pipeline.app import Pipeline

    # SIGHUP re-reads the file's model section only (streamfer.pipeline.reload)
    models = (lambda: load_config(config_path).models) if config_path else None
    pipe = Pipeline(cfg, worker_index=worker_index, models_source=models)
    signals = {"n": 0}
    stop_requested = threading.Event()
    reload_requested = threading.Event()
    signal.signal(signal.SIGHUP, lambda signum, frame: reload_requested.set())

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals["n"] += 1
        if signals["n"] > 1:
            log.warning("second signal: exiting without draining")
            os._exit(128 + signum)
        stop_requested.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    # a crash in native code (librdkafka, LMDB, ONNX Runtime) leaves its Python stack in
    # the log, and SIGUSR1 prints every thread's stack without stopping anything
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    pipe.start()
    log.debug("%d start-up objects frozen", freeze_start_up_heap())
    where = f" (metrics on {pipe.http_url})" if pipe.http_url else ""
    click.echo(
        f"streamfer worker {worker_index}: running {len(cfg.streams)} stream(s){where}", err=True
    )
    while not stop_requested.wait(0.2) and not pipe.wait(0):
        if reload_requested.is_set():
            reload_requested.clear()
            pipe.request_reload("SIGHUP")
    if stop_requested.is_set():
        click.echo("stopping: finishing records in flight (signal again to exit at once)", err=True)
    pipe.stop(drain=True)
    for name, snap in pipe.stats().items():
        click.echo(
            f"{name}: consumed {snap.consumed}, decided {snap.decided}, "
            f"dropped {_by_reason(snap.dropped)}, dead-lettered {_by_reason(snap.dead_lettered)}",
            err=True,
        )
    if pipe.failure is not None:
        click.echo(f"error: {pipe.failure}", err=True)
        return 1
    return 0


def _by_reason(counts: dict[str, int]) -> str:
    """``12 (stale 10, superseded 2)``, or ``0``."""
    total = sum(counts.values())
    if not total:
        return "0"
    return f"{total} ({', '.join(f'{r} {n}' for r, n in sorted(counts.items()))})"


def _run_workers(config_path: Path, workers: int, bootstrap: str | None,
                 metrics_host: str | None, metrics_port: int | None) -> int:  # fmt: skip
    """Start ``workers`` processes of ``streamfer run``, forward signals, wait for all."""
    args = ["run", "-c", str(config_path), *logs.cli_args()]
    if bootstrap:
        args += ["--bootstrap", bootstrap]
    if metrics_host:
        args += ["--metrics-host", metrics_host]
    if metrics_port is not None:
        args += ["--metrics-port", str(metrics_port)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "streamfer.pipeline.cli", *args, "--worker-index", str(i)],
            start_new_session=True,  # a terminal's Ctrl-C reaches them once, through us
        )
        for i in range(workers)
    ]

    def forward(signum: int, frame: FrameType | None) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while any(p.poll() is None for p in procs):
        time.sleep(0.2)  # waiting for children; signals arrive in between
    codes = [p.returncode for p in procs]
    return max(codes, key=abs) if any(codes) else 0
