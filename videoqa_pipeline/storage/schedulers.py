"""Which Dagster instance schedules the job ledger: one lease to take new jobs, and who owns what.

A job's run lives in the run storage of the Dagster instance whose job sensor requested it. A
second instance on the same ledger (a failover, or a second ``dagster dev`` started on a shared
``DATABASE_URL`` by mistake) cannot see that run: left to itself, its job sensor would request the
job again, and its sweeper would call the run vanished and fail the job. Two rules prevent both:

* **Ownership.** Claiming a job records the claiming instance in ``videoqa_jobs.scheduler_id``;
  an instance re-requests, sweeps and counts for backpressure only the jobs it owns
  (:func:`videoqa_pipeline.storage.ledger.claim_pending_jobs` and the queries beside it).
* **One lease.** Only one instance takes *new* jobs: the holder of the lease in
  ``videoqa_schedulers``, renewed by every tick of its job sensor (:func:`hold_lease`). Another
  instance stands by, saying so in its sensor's skip reason and in ``videoqa status``, and takes
  the lease over once the holder has been silent for the lease time (a failover). The jobs the
  old holder queued stay its own: if it comes back, it finishes them; if it is gone for good,
  an operator cancels and requeues them (``videoqa status`` lists them).

Every instance's heartbeat is kept (one row each), so ``videoqa status`` can show who shares the
ledger. No Dagster import here: the instance's identity comes from the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.schema import JOBS_TABLE, SCHEDULERS_TABLE

logger = logging.getLogger(__name__)

#: Any constant shared by all processes; serialises lease changes among advisory locks.
LEASE_LOCK_KEY = 0x76717363  # "vqsc"
#: A holder silent this long (seconds) loses the lease to the next instance that ticks.
DEFAULT_LEASE_SECONDS = 60.0
#: How many of a scheduler's active job IDs :func:`list_schedulers` returns.
LISTED_JOBS = 20


@dataclass(frozen=True)
class Scheduler:
    """One Dagster instance that has ticked on this ledger.

    Attributes:
        instance_id: Its identity (kept in its own run storage, see the job sensor).
        description: Host, process and ``DAGSTER_HOME``, for people.
        holds_lease: Whether it is the one taking new jobs.
        silent_seconds: Seconds since its last tick.
        first_seen_at: When it first ticked here.
        active_jobs: Queued or running jobs it owns.
        active_job_ids: The first of them (at most :data:`LISTED_JOBS`), oldest first.
    """

    instance_id: str
    description: str
    holds_lease: bool
    silent_seconds: float
    first_seen_at: datetime
    active_jobs: int = 0
    active_job_ids: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        """``instance <first 8 characters of the ID> (<description>)``."""
        return f"instance {self.instance_id[:8]} ({self.description or 'no description'})"


@dataclass(frozen=True)
class Lease:
    """What one attempt to hold the lease found.

    Attributes:
        held: This instance holds the lease: it may take new jobs.
        holder: The instance holding it (None only when ``held``).
        previous: The silent holder this call took the lease over from, if any.
        adopted: Queued or running jobs without an owner (queued before owners were recorded)
            that the holder took on.
    """

    held: bool
    holder: Scheduler | None = None
    previous: Scheduler | None = None
    adopted: int = 0

    def standby_reason(self, instance_id: str, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> str:
        """Why an instance that does not hold the lease takes no new jobs, and what to do."""
        holder = self.holder
        who = holder.label if holder is not None else "another Dagster instance"
        seen = f", last tick {holder.silent_seconds:.0f} s ago" if holder is not None else ""
        return (
            f"standing by: {who} schedules this ledger's jobs{seen}. This Dagster instance "
            f"({instance_id[:8]}) takes no new jobs and never touches that instance's, whose runs it "
            f"cannot see; it takes over once that one has been silent for {lease_seconds:.0f} s. "
            "Two schedulers on one DATABASE_URL by mistake? Stop one, or give it its own database."
        )


def _scheduler(row: Mapping[str, Any]) -> Scheduler:
    return Scheduler(
        instance_id=str(row["instance_id"]),
        description=str(row["description"]),
        holds_lease=bool(row["holds_lease"]),
        silent_seconds=float(row["silent_seconds"] or 0.0),
        first_seen_at=row["first_seen_at"],
        active_jobs=int(row.get("active_jobs") or 0),
        active_job_ids=tuple(int(job_id) for job_id in row.get("active_job_ids") or ()),
    )


_SELECT = f"""SELECT instance_id, description, holds_lease, first_seen_at,
                     extract(epoch FROM now() - last_seen_at)::float8 AS silent_seconds
              FROM {SCHEDULERS_TABLE}"""


def hold_lease(
    db: Database, instance_id: str, description: str, lease_seconds: float = DEFAULT_LEASE_SECONDS
) -> Lease:
    """Record this instance's tick, and keep or take the lease when no live instance holds it.

    One transaction under an advisory lock, so two instances ticking at once never both hold it.

    Args:
        db: The ledger's database.
        instance_id: This Dagster instance's identity.
        description: Host, process and ``DAGSTER_HOME``, shown to the other instances' operators.
        lease_seconds: How long a silent holder keeps the lease.

    Returns:
        Whether this instance holds the lease, and who does.
    """
    with db.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        # A heartbeat lost in a crash costs nothing (the next tick writes another): no WAL flush wait.
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (LEASE_LOCK_KEY,))
        cursor.execute(
            f"""INSERT INTO {SCHEDULERS_TABLE} (instance_id, description) VALUES (%s, %s)
                ON CONFLICT (instance_id) DO UPDATE SET description = EXCLUDED.description, last_seen_at = now()""",
            (instance_id, description[:500]),
        )
        row = cursor.execute(f"{_SELECT} WHERE holds_lease").fetchone()
        holder = _scheduler(row) if row is not None else None
        if holder is not None and holder.instance_id != instance_id and holder.silent_seconds < lease_seconds:
            return Lease(held=False, holder=holder)
        previous = holder if holder is not None and holder.instance_id != instance_id else None
        if holder is None or previous is not None:
            cursor.execute(
                f"UPDATE {SCHEDULERS_TABLE} SET holds_lease = false, lease_since = NULL WHERE holds_lease"
            )
            cursor.execute(
                f"""UPDATE {SCHEDULERS_TABLE} SET holds_lease = true, lease_since = now()
                    WHERE instance_id = %s""",
                (instance_id,),
            )
        adopted = cursor.execute(
            f"""UPDATE {JOBS_TABLE} SET scheduler_id = %s
                WHERE scheduler_id IS NULL AND status IN ('queued', 'running')""",
            (instance_id,),
        ).rowcount
        mine = _scheduler(
            cursor.execute(f"{_SELECT} WHERE instance_id = %s", (instance_id,)).fetchone() or {}
        )
    if previous is not None:
        logger.warning(
            "took over the job ledger's scheduler lease from %s, silent for %.0f s; the jobs it queued "
            "stay its own",
            previous.label,
            previous.silent_seconds,
        )
    return Lease(held=True, holder=mine, previous=previous, adopted=max(adopted, 0))


def lease_holder(db: Database) -> Scheduler | None:
    """The instance holding the lease (live or silent), or None when no job sensor ever ticked."""
    with db.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(f"{_SELECT} WHERE holds_lease").fetchone()
    return None if row is None else _scheduler(row)


def list_schedulers(db: Database) -> list[Scheduler]:
    """Every instance that has ticked on this ledger, the lease holder first, with the queued or
    running jobs each one owns."""
    with db.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            f"""SELECT s.instance_id, s.description, s.holds_lease, s.first_seen_at,
                       extract(epoch FROM now() - s.last_seen_at)::float8 AS silent_seconds,
                       (SELECT count(*) FROM {JOBS_TABLE} j
                        WHERE j.scheduler_id = s.instance_id AND j.status IN ('queued', 'running'))
                           AS active_jobs,
                       ARRAY(SELECT j.id FROM {JOBS_TABLE} j
                             WHERE j.scheduler_id = s.instance_id AND j.status IN ('queued', 'running')
                             ORDER BY j.id LIMIT %s) AS active_job_ids
                FROM {SCHEDULERS_TABLE} s ORDER BY s.holds_lease DESC, s.last_seen_at DESC""",
            (LISTED_JOBS,),
        ).fetchall()
    return [_scheduler(row) for row in rows]


def scheduler_warnings(
    schedulers: Sequence[Scheduler], lease_seconds: float = DEFAULT_LEASE_SECONDS
) -> list[str]:
    """What an operator must know about who schedules the ledger (empty when one instance does).

    * several instances ticking within the lease time: only one takes new jobs;
    * an instance that does not hold the lease still owns queued or running jobs: only it can
      finish them (when it is gone for good, they must be cancelled and requeued by hand).
    """
    warnings: list[str] = []
    live = [scheduler for scheduler in schedulers if scheduler.silent_seconds < lease_seconds]
    if len(live) > 1:
        holder = next((scheduler for scheduler in live if scheduler.holds_lease), None)
        standby = [scheduler.label for scheduler in live if scheduler is not holder]
        warnings.append(
            f"{len(live)} Dagster instances tick on this ledger: "
            + (f"{holder.label} takes new jobs; " if holder else "")
            + f"standing by: {', '.join(standby)}. Each finishes only the jobs it queued. Two "
            "schedulers on one DATABASE_URL by mistake? Stop one, or give it its own database."
        )
    for scheduler in schedulers:
        if scheduler.active_jobs and not scheduler.holds_lease:
            more = "" if scheduler.active_jobs <= len(scheduler.active_job_ids) else ", ..."
            warnings.append(
                f"{scheduler.active_jobs} queued or running job(s) belong to {scheduler.label}, last tick "
                f"{scheduler.silent_seconds:.0f} s ago: only that instance can see their runs. If it is "
                "gone for good, `videoqa cancel ID` then `videoqa requeue ID` each of them (jobs "
                f"{', '.join(str(job_id) for job_id in scheduler.active_job_ids)}{more})."
            )
    return warnings
