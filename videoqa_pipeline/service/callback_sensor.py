"""The Dagster side of completion callbacks: a sensor that delivers what is due.

Callbacks belong to every job source (SQS messages and ledger rows may carry a ``callback_url``
too), so they must not depend on ``videoqa serve`` being deployed. This sensor calls
:func:`~videoqa_pipeline.service.callbacks.deliver_pending_callbacks` each tick, bounded (at most
:data:`PER_TICK` events, 4 at a time, 5 s each: well under Dagster's sensor timeout), and the
service's background loop may run at the same time: row locks and a lease keep them from sending
the same attempt twice. Runs never wait for it.
"""

from __future__ import annotations

import dagster as dg

from videoqa_pipeline.resources import DatabaseResource
from videoqa_pipeline.service.callbacks import deliver_pending_callbacks
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.sources.job_sensor import TRANSIENT_DATABASE_ERRORS, sensor_interval_seconds

#: Events per tick: 20 dead receivers cost at most 5 rounds of 5 s.
PER_TICK = 20


def build_callback_sensor(settings: Settings) -> dg.SensorDefinition:
    """The ``job_callback_sensor``: signed completion callbacks with retries and backoff."""

    @dg.sensor(
        name="job_callback_sensor",
        minimum_interval_seconds=max(5, sensor_interval_seconds(settings.worker_poll_ms)),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="POSTs a signed event to a finished job's callback_url (or WEBHOOK_URL), with retries.",
    )
    def job_callback_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource) -> dg.SkipReason:
        try:
            report = deliver_pending_callbacks(
                database.get(),
                secret=settings.webhook_secret,
                default_url=settings.webhook_url,
                limit=PER_TICK,
            )
        except TRANSIENT_DATABASE_ERRORS as error:
            context.log.warning(f"job ledger not reachable, skipping this tick: {error}")
            return dg.SkipReason(f"job ledger not reachable: {error}")
        if not report.attempted:
            return dg.SkipReason("no callbacks due")
        for job_id, problem in report.errors.items():
            context.log.info(f"callback of job {job_id} failed: {problem}")
        return dg.SkipReason(
            f"callbacks: {len(report.delivered)} delivered, {len(report.retrying)} to retry, "
            f"{len(report.gave_up)} given up"
        )

    return job_callback_sensor
