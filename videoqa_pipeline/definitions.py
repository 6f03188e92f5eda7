"""The code location: everything under ``videoqa_pipeline/defs/``, loaded when Dagster asks for it.

Importing this module builds nothing. ``dg dev``, ``dagster dev`` and ``dg check defs`` call
:func:`defs`, which loads the defs folder; :func:`build_definitions` assembles the same pieces
for explicit settings (``videoqa process`` and tests).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster.components.core.component_tree import ComponentTree

import videoqa_pipeline.defs as defs_package
from videoqa_pipeline.defs.assets import asset_definitions
from videoqa_pipeline.defs.checks import check_definitions
from videoqa_pipeline.defs.executor import defs as executor_definitions
from videoqa_pipeline.defs.jobs import VIDEO_PIPELINE_JOB, job_definitions
from videoqa_pipeline.defs.resources import resource_definitions
from videoqa_pipeline.defs.sensors.all_sensors import sensor_definitions
from videoqa_pipeline.settings import Settings, load_settings

__all__ = ["VIDEO_PIPELINE_JOB", "build_definitions", "defs"]


def build_definitions(settings: Settings, secrets_as_env_vars: bool = True) -> dg.Definitions:
    """The code location's definitions for ``settings`` (what the defs folder loads for the
    environment's settings).

    Args:
        settings: The deployment's settings.
        secrets_as_env_vars: Resources reference DATABASE_URL and OPENAI_API_KEY as ``EnvVar``
            (a code location, whose config the UI shows); False passes the values (a run in this
            process, whose settings may not come from its environment).
    """
    settings.configure_logging()
    return dg.Definitions.merge(
        asset_definitions(settings),
        check_definitions(settings),
        job_definitions(settings),
        sensor_definitions(settings),
        resource_definitions(settings, secrets_as_env_vars),
        executor_definitions,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Everything under ``defs/``, discovered by Dagster's project loader."""
    load_settings().configure_logging()  # LOG_LEVEL for the code location's own loggers
    package_dir = Path(defs_package.__file__).parent
    try:
        return dg.load_from_defs_folder(path_within_project=package_dir)
    except dg.DagsterError as error:
        if "Could not find config file" not in str(error):
            raise
        # Installed from a wheel (a container image): no pyproject.toml beside the package, so
        # load the same folder by module.
        return ComponentTree.from_module(
            defs_module=defs_package, project_root=package_dir.parent
        ).build_defs()
