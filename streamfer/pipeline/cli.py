"""The ``streamfer`` command line.

Sub-commands live next to the code they drive and are imported only when
used, so ``streamfer --help`` stays fast and one broken extra (say, a GPU
library) never takes the other commands down with it.

The log options (``-v``, ``-q``, ``--log-level``, ``--log-format``) are global: they
are accepted before the sub-command and after it (``streamfer -v run ...`` and
``streamfer run ... -vv``); each command gets them added when it is loaded.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

import click

from streamfer import logs
from streamfer.errors import StreamferError

# name -> ("module:attribute" of a click command or group, one line of help)
_COMMANDS: dict[str, tuple[str, str]] = {
    "broker": (
        "streamfer.streams.local.broker_cli:broker",
        "Start, stop or inspect the local Kafka broker.",
    ),
    "config": (
        "streamfer.pipeline.config_cli:config",
        "Show (with each value's source) or document pipeline configs.",
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
    "tail": ("streamfer.streams.tail_cli:tail", "Print a topic's records, one a line."),
}

_META = "streamfer.log"


def _log_setting(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    """A log option's callback: merge its value into the run's settings and apply them."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        settings = ctx.find_root().meta.setdefault(
            _META, {"verbose": 0, "quiet": False, "log_level": None, "log_format": "text"}
        )
        if name == "verbose":
            settings["verbose"] += value
        elif name == "quiet":
            settings["quiet"] = settings["quiet"] or value
        elif value is not None:
            settings[name] = value
        level = logs.level_of(settings["verbose"], settings["quiet"], settings["log_level"])
        logs.configure(level, settings["log_format"])

    return callback


def log_options() -> list[click.Parameter]:
    """Fresh copies of the global log options (a click parameter belongs to one command)."""
    return [
        click.Option(["-v", "--verbose"], count=True, expose_value=False,
                     callback=_log_setting("verbose"),
                     help="More log output: -v info, -vv debug."),
        click.Option(["-q", "--quiet"], is_flag=True, expose_value=False,
                     callback=_log_setting("quiet"), help="Log errors only."),
        click.Option(["--log-level"], type=click.Choice(logs.LEVELS), default=None,
                     expose_value=False, callback=_log_setting("log_level"),
                     help="Log this level and above (overrides -v and -q)."),
        click.Option(["--log-format"], type=click.Choice(logs.FORMATS), default=None,
                     expose_value=False, callback=_log_setting("log_format"),
                     help="text (default), or json: one object a line with ts, level, logger, "
                     "message and stream, topic, partition, offset, reason when known."),
    ]  # fmt: skip


def _with_log_options(command: click.Command) -> click.Command:
    """``command`` and every sub-command of it accepting the log options (once)."""
    if not getattr(command, "_streamfer_log_options", False):
        command.params.extend(log_options())
        command._streamfer_log_options = True  # type: ignore[attr-defined]
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _with_log_options(sub)
    return command


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
        return _with_log_options(command)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in sorted(_COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, params=log_options(),
             context_settings={"help_option_names": ["-h", "--help"]})  # fmt: skip
@click.version_option(package_name="streamfer")
def cli() -> None:
    """streamfer: Kafka in, batched inference, decisions out, latency in Prometheus.

    The log options (-v, -q, --log-level, --log-format) go before or after the command.
    """


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
