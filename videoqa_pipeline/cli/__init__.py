"""The `videoqa` command.

Each family of sub-commands lives in its own module and registers itself here, so the
media, AI and pipeline layers stay independent of each other.
"""

from __future__ import annotations

import logging

import click

from videoqa_pipeline import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="videoqa")
def main() -> None:
    """videoqa: process videos into searchable, question-answerable knowledge."""
    # The connection pool logs every failed attempt; the command reports the outcome in one line.
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)


def _register_all() -> None:
    from videoqa_pipeline.cli import (
        ai_commands,
        job_commands,
        media_commands,
        pipeline_commands,
        search_commands,
        service_commands,
    )

    for module in (
        media_commands,
        ai_commands,
        pipeline_commands,
        job_commands,
        service_commands,
        search_commands,
    ):
        module.register(main)


_register_all()
