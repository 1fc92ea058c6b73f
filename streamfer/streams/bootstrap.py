"""Where the Kafka cluster is: one precedence for every command.

``--bootstrap`` flag > ``$STREAMFER__KAFKA__BOOTSTRAP_SERVERS`` > the config file's
``kafka.bootstrap_servers`` > ``$STREAMFER_BOOTSTRAP`` > ``127.0.0.1:9092``.

Commands without a config file (``produce``, ``bench``) skip the file step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import click

from streamfer.streams.admin import BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP

BOOTSTRAP_OVERRIDE_ENV = "STREAMFER__KAFKA__BOOTSTRAP_SERVERS"
FLAG_SOURCE = "flag (--bootstrap)"


@dataclass(frozen=True)
class Bootstrap:
    """The servers and where they came from: ``flag (--bootstrap)``, ``env (NAME)``,
    ``file`` or ``default``."""

    servers: str
    source: str


def resolve_bootstrap(
    flag: str | None = None,
    file_value: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Bootstrap:
    """The bootstrap servers by the one precedence (module docstring); empty values skip."""
    env = os.environ if environ is None else environ
    if flag:
        return Bootstrap(flag, FLAG_SOURCE)
    if env.get(BOOTSTRAP_OVERRIDE_ENV):
        return Bootstrap(env[BOOTSTRAP_OVERRIDE_ENV], f"env ({BOOTSTRAP_OVERRIDE_ENV})")
    if file_value:
        return Bootstrap(file_value, "file")
    if env.get(BOOTSTRAP_ENV):
        return Bootstrap(env[BOOTSTRAP_ENV], f"env ({BOOTSTRAP_ENV})")
    return Bootstrap(DEFAULT_BOOTSTRAP, "default")


def bootstrap_option(
    fn: Callable[..., Any] | None = None, *, config_file: bool = True, note: str = ""
) -> Any:
    """``--bootstrap HOST:PORT``; the command passes the value to :func:`resolve_bootstrap`.

    ``config_file``: the command reads a config file, so its help names that step too.
    """
    file_step = " > the config file's kafka.bootstrap_servers" if config_file else ""
    option = click.option(
        "--bootstrap",
        default=None,
        metavar="HOST:PORT",
        help=f"Kafka bootstrap servers (host:port[,host:port]). Precedence: this flag > "
        f"${BOOTSTRAP_OVERRIDE_ENV}{file_step} > ${BOOTSTRAP_ENV} > {DEFAULT_BOOTSTRAP}."
        + (f" {note}" if note else ""),
    )
    return option if fn is None else option(fn)
