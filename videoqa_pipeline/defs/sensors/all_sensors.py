"""Every sensor, in every deployment: the same definitions load with any settings.

Sources the settings do not enable are stopped by default and skip with the setting to change
(see :mod:`.gates`); nothing here needs a secret or a reachable service to load.
"""

from __future__ import annotations

import dagster as dg

from videoqa_pipeline.defs.jobs import VIDEO_PIPELINE_JOB, build_video_pipeline_job
from videoqa_pipeline.defs.sensors.inbox_sensor import build_inbox_sensor
from videoqa_pipeline.defs.sensors.job_sensor import build_job_sensor
from videoqa_pipeline.defs.sensors.run_status import build_run_status_sensors
from videoqa_pipeline.defs.sensors.sqs_sensor import build_sqs_sensor
from videoqa_pipeline.defs.sensors.working_set_sensor import build_working_set_sensor
from videoqa_pipeline.settings import Settings, load_settings


def build_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    """The job sensor (every source lands in the ledger), the inbox and SQS sources, the run
    status write-back, and the partition working set."""
    return [
        build_job_sensor(settings, VIDEO_PIPELINE_JOB),
        build_inbox_sensor(settings),
        build_sqs_sensor(settings),
        *build_run_status_sensors(settings, [build_video_pipeline_job(settings)]),
        build_working_set_sensor(settings),
    ]


def sensor_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(sensors=build_sensors(settings))


@dg.definitions
def sensors() -> dg.Definitions:
    """The sensors for this process's settings."""
    return sensor_definitions(load_settings())
