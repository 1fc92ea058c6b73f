"""``streamfer broker start|stop|status``: the local single-node Kafka broker."""

from __future__ import annotations

from pathlib import Path

import click

from streams.broker import DEFAULT_CACHE_DIR, DEFAULT_PORT, LocalBroker

_port = click.option(
    "--port",
    type=click.IntRange(1024, 65534),
    default=DEFAULT_PORT,
    show_default=True,
    help="Client port on 127.0.0.1; the KRaft controller listens on PORT+1.",
)
_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Broker state and logs [default: {DEFAULT_CACHE_DIR}/data-PORT].",
)


@click.group()
def broker() -> None:
    """Run a real Apache Kafka 4.x broker (KRaft, single node) on loopback.

    The first start resolves the broker from Maven Central with the machine's
    Maven into .cache/kafka/lib and formats the log directory; later starts
    reuse both. Needs Java 17+ and Maven.
    """


@broker.command()
@_port
@_data_dir
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=90.0,
    show_default=True,
    help="Seconds to wait for the broker to answer metadata requests.",
)
def start(port: int, data_dir: Path | None, timeout_s: float) -> None:
    """Start the broker (idempotent); return once it answers metadata requests."""
    local = LocalBroker(port=port, data_dir=data_dir)
    bootstrap = local.start(timeout_s=timeout_s, progress=lambda msg: click.echo(msg, err=True))
    click.echo(bootstrap)


@broker.command()
@_port
@_data_dir
def stop(port: int, data_dir: Path | None) -> None:
    """Stop the broker started from this data dir; no process is left behind."""
    local = LocalBroker(port=port, data_dir=data_dir)
    click.echo("broker stopped" if local.stop() else "broker was not running")


@broker.command()
@_port
@_data_dir
def status(port: int, data_dir: Path | None) -> None:
    """Print bootstrap address, data dir, pid and log file; exit 1 if not running."""
    state = LocalBroker(port=port, data_dir=data_dir).status()
    click.echo(f"running:   {'yes' if state.running else 'no'}")
    click.echo(f"bootstrap: {state.bootstrap}")
    click.echo(f"data dir:  {state.data_dir}")
    click.echo(f"pid:       {state.pid if state.pid is not None else '-'}")
    click.echo(f"log:       {state.log_file}")
    if not state.running:
        raise SystemExit(1)
