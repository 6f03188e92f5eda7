"""Why a sensor has nothing to do in this deployment: the source is not enabled, or a setting is wrong.

Every sensor exists in every deployment, so the code location loads the same way everywhere (no
secrets or services needed to load it). Sources that are not enabled are stopped by default, and
a tick that runs anyway, or that runs with settings that cannot work, skips with a reason naming
the setting to change: where a user looks (the sensor's tick history), not a failed code location.
"""

from __future__ import annotations

import dagster as dg

from videoqa_pipeline.settings import Settings


def default_status(enabled: bool) -> dg.DefaultSensorStatus:
    """Running by default when the deployment's settings enable the source, stopped otherwise."""
    return dg.DefaultSensorStatus.RUNNING if enabled else dg.DefaultSensorStatus.STOPPED


def skip_reason(settings: Settings, *, enabled: bool, how_to_enable: str) -> dg.SkipReason | None:
    """A skip reason when this tick cannot do its work, else None.

    Args:
        settings: The deployment's settings.
        enabled: Whether the settings enable this sensor's source.
        how_to_enable: The setting that enables it, for the reason's text.
    """
    if not enabled:
        return dg.SkipReason(f"not enabled in this deployment: {how_to_enable}")
    problems = settings.problems()
    if problems:
        return dg.SkipReason("settings problem (run `videoqa check-config`): " + "; ".join(problems))
    return None
