"""The ``streamfer`` command line.

Sub-commands live next to the code they drive and are imported only when
used, so ``streamfer --help`` stays fast and one broken extra (say, a GPU
library) never takes the other commands down with it.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from streamfer.errors import StreamferError

# name -> "module:attribute" of a click command or group
_COMMANDS: dict[str, tuple[str, str]] = {
    "broker": (
        "streamfer.streams.broker_cli:broker", "Start, stop or inspect the local Kafka broker.",
    ),
    "engines": ("streamfer.engines.cli:engines", "Build and inspect inference engines."),
    "models": (
        "streamfer.pipeline.models_cli:models", "Model versions on disk and which one serves.",
    ),
    "produce": ("streamfer.streams.cli:produce", "Produce camera, sensor or transaction streams."),
    "run": ("streamfer.pipeline.run_cli:run", "Run a configured pipeline until stopped."),
    "validate": ("streamfer.pipeline.run_cli:validate", "Check a pipeline config file."),
    "check-processor": (
        "streamfer.pipeline.check_cli:check_processor",
        "Run a processor on sample records, without Kafka.",
    ),
    "demo": ("streamfer.pipeline.demo:demo", "Run the whole pipeline on the local broker."),
    "bench": ("streamfer.bench.cli:bench", "Run the benchmarks and record results."),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target[0].split(":")
        module = importlib.import_module(module_name)
        command = getattr(module, attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in sorted(_COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="streamfer")
def cli(verbose: int) -> None:
    """streamfer: Kafka in, batched inference, decisions out, latency in Prometheus."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # kafka-python logs every request, and its bytes, at DEBUG: a SASL PLAIN login's
    # password with them. -vv is for streamfer's debugging, not a wire dump.
    logging.getLogger("kafka.protocol").setLevel(max(level, logging.INFO))


def main() -> None:
    """Console entry point: StreamferError becomes a one-line message and exit code 2."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except StreamferError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
