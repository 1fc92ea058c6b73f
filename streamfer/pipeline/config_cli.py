"""``streamfer config``: sub-commands about pipeline config files.

Each sub-command lives in its own module and is added here.
"""

from __future__ import annotations

import click

from streamfer.pipeline.config_docs import docs


@click.group(name="config", context_settings={"help_option_names": ["-h", "--help"]})
def config() -> None:
    """Inspect and document pipeline config files."""


config.add_command(docs)
