"""`videoqa` sub-commands for the pipeline layer."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Attach this module's commands to the top-level group."""
