"""Helpers every `videoqa` command family shares."""

from __future__ import annotations

import click

from videoqa_pipeline.settings import Settings, SettingsError


def load_settings() -> Settings:
    """Settings from the environment, or one readable error listing every problem (exit 1)."""
    try:
        return Settings.from_env().validate()
    except SettingsError as error:
        raise click.ClickException(
            f"{error}\nRun `videoqa check-config` for the effective settings."
        ) from error
