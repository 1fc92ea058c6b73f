"""``streamfer broker start|stop|status``: the local single-node Kafka broker."""

from __future__ import annotations

from pathlib import Path

import click

from streamfer.streams.local.broker import DEFAULT_CACHE_DIR, DEFAULT_PORT, LocalBroker

_port = click.option(
    "--port",
    type=click.IntRange(1024, 65534),
    default=DEFAULT_PORT,
    show_default=True,
    help="Client port on 127.0.0.1; the KRaft controller listens on PORT+1 (and SASL_SSL on "
    "PORT+2 with --sasl-ssl).",
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

    `start --sasl-ssl` adds a SASL_SSL listener (SCRAM-SHA-512, a certificate
    from the project's own CA) on PORT+2; its password, CA and key files live
    in DATA_DIR/sasl-ssl/ and are named, never printed.
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
@click.option(
    "--sasl-ssl",
    is_flag=True,
    help="Also listen for SASL_SSL (SCRAM-SHA-512 over TLS) on PORT+2. The user is created "
    "when the data dir is formatted, so use a new data dir (or port) for the first secure start.",
)
def start(port: int, data_dir: Path | None, timeout_s: float, sasl_ssl: bool) -> None:
    """Start the broker (idempotent); return once it answers metadata requests.

    Prints the PLAINTEXT bootstrap address on stdout; progress, and with
    --sasl-ssl where the secure listener and its files are, on stderr.
    """
    local = LocalBroker(port=port, data_dir=data_dir, sasl_ssl_port=port + 2 if sasl_ssl else None)
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
    """Print bootstrap address, data dir, pid and log file; exit 1 if not running.

    A broker started with --sasl-ssl also shows its secure listener, user, and
    the files holding the password and the CA (the password itself is never printed).
    """
    state = LocalBroker(port=port, data_dir=data_dir).status()
    click.echo(f"running:   {'yes' if state.running else 'no'}")
    click.echo(f"bootstrap: {state.bootstrap}")
    click.echo(f"data dir:  {state.data_dir}")
    click.echo(f"pid:       {state.pid if state.pid is not None else '-'}")
    click.echo(f"log:       {state.log_file}")
    secure = state.sasl_ssl
    if secure is not None:
        click.echo(f"sasl_ssl:  {secure.bootstrap} ({secure.mechanism}, user {secure.username})")
        click.echo(f"password:  in {secure.password_file} (mode 0600; not printed)")
        click.echo(f"ca file:   {secure.ca_file}")
    if not state.running:
        raise SystemExit(1)
