"""The working-set sensor: keeps the ``videos`` partitions Dagster holds bounded.

Housekeeping, not intake: it never requests a run. Each tick retires the video partitions
beyond the newest ``VIDEOQA_PARTITION_WORKING_SET`` (see :mod:`videoqa_pipeline.defs.working_set`)
and says what it did in its skip reason, so the tick history in the UI is the log of it.
"""

from __future__ import annotations

import dagster as dg

from videoqa_pipeline.defs.resources import DatabaseResource
from videoqa_pipeline.defs.sensors.gates import skip_reason
from videoqa_pipeline.defs.sensors.job_sensor import TRANSIENT_DATABASE_ERRORS
from videoqa_pipeline.defs.working_set import retire_partitions
from videoqa_pipeline.settings import Settings

WORKING_SET_SENSOR_NAME = "partition_working_set_sensor"

#: Seconds between ticks: retirement only has to keep pace with intake, and a pass retires
#: hundreds of videos (README, "At a million videos").
WORKING_SET_INTERVAL_SECONDS = 60

#: A tick stops between pages after this long, well inside Dagster's 60 s sensor timeout.
TICK_TIME_BUDGET_SECONDS = 30.0


def build_working_set_sensor(settings: Settings) -> dg.SensorDefinition:
    """The sensor retiring partitions beyond ``settings.partition_working_set`` (0: never)."""

    @dg.sensor(
        name=WORKING_SET_SENSOR_NAME,
        minimum_interval_seconds=WORKING_SET_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Keeps the newest VIDEOQA_PARTITION_WORKING_SET video partitions (and videos with "
            "unfinished work) in Dagster; older videos' runs and partitions are retired, their "
            "records stay in the job ledger and metadata tables."
        ),
    )
    def partition_working_set_sensor(
        context: dg.SensorEvaluationContext, database: DatabaseResource
    ) -> dg.SkipReason:
        keep = settings.partition_working_set
        gate = skip_reason(
            settings,
            enabled=keep > 0,
            how_to_enable="VIDEOQA_PARTITION_WORKING_SET > 0 (0 keeps every video)",
        )
        if gate is not None:
            return gate
        try:
            result = retire_partitions(
                context.instance, database.get(), keep, time_budget=TICK_TIME_BUDGET_SECONDS
            )
        except TRANSIENT_DATABASE_ERRORS as error:
            return dg.SkipReason(f"job ledger not reachable: {error}")
        if result.retired:
            context.log.info(result.summary())
        return dg.SkipReason(result.summary())

    return partition_working_set_sensor
