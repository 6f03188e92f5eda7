"""The bounded working set of video partitions that Dagster holds.

Every video is a partition of the ``videos`` dynamic partitions definition, which is what gives
per-video launch, backfill and lineage in the UI. Dagster's cost for it grows with the library:
its cached partition status is keyed on a hash of every partition key, so each new video makes
the next page load rebuild the status of all seven assets from the whole event history (31 s at
100,000 videos, measured by ``benchmarks/bench_scale.py``). The job ledger and the metadata tables
are the system of record for every video, so Dagster only needs the videos a person is likely to
look at in the UI: those in flight and the most recently added.

Retiring a video removes its Dagster runs (and with them their events) and then its partition
key, for every key older than the newest ``VIDEOQA_PARTITION_WORKING_SET``, in pages walking back
from the working set's edge (a pass cut short by its time budget leaves the oldest for the next). A video with a job
pending, queued or running in the ledger, or with a Dagster run that has not finished, is never
retired. Re-processing a retired video (``videoqa reprocess``, the ``reprocess_videos`` job, a
new job for it) adds its partition again: the job sensor adds the key of every run it requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dagster as dg

from videoqa_pipeline.defs.partitions import VIDEOS_PARTITIONS_NAME
from videoqa_pipeline.run_tags import PARTITION_TAG
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.database import Database

logger = logging.getLogger(__name__)

#: Partition keys examined per pass: one ledger query and one run-storage query each.
RETIRE_BATCH = 200

#: Threads deleting a page's runs and keys.
RETIRE_THREADS = 4


@dataclass(frozen=True)
class Retirement:
    """What one retirement pass did.

    Attributes:
        kept: The size of the working set asked for.
        retired: Partition keys removed, with their runs.
        busy: Keys beyond the working set kept because a job or run of theirs is not finished.
        runs_deleted: Dagster runs deleted (each with its event log).
        more: The pass stopped at its time budget; older partitions may be left for the next one.
    """

    kept: int
    retired: tuple[str, ...] = ()
    busy: tuple[str, ...] = ()
    runs_deleted: int = 0
    more: bool = False

    def summary(self) -> str:
        """One line for a sensor's skip reason and the CLI."""
        if not self.retired and not self.busy and not self.more:
            return f"at most {self.kept} video partitions: nothing to retire"
        text = (
            f"retired {len(self.retired)} video partition(s) beyond the newest {self.kept} "
            f"({self.runs_deleted} run(s) deleted)"
        )
        if self.busy:
            text += f"; kept {len(self.busy)} with unfinished work"
        if self.more:
            text += "; stopped at its time budget, the next pass goes on"
        return text


def _older_pages(instance: dg.DagsterInstance, keep: int) -> Iterator[Sequence[str]]:
    """Pages of the keys older than the newest ``keep``, newest first, read as they are needed.

    The cursor is a storage ID, so deleting the keys of a page does not move the next one.
    """
    page = instance.get_paginated_dynamic_partitions(VIDEOS_PARTITIONS_NAME, limit=keep, ascending=False)
    while page.has_more:
        page = instance.get_paginated_dynamic_partitions(
            VIDEOS_PARTITIONS_NAME, limit=RETIRE_BATCH, ascending=False, cursor=page.cursor
        )
        if page.results:
            yield page.results


def _runs_by_partition(
    instance: dg.DagsterInstance, keys: Sequence[str]
) -> tuple[dict[str, list[str]], set[str]]:
    """Finished run IDs per key, and the keys with a run that has not finished (one query)."""
    finished: dict[str, list[str]] = {}
    unfinished: set[str] = set()
    records = instance.get_run_records(filters=dg.RunsFilter(tags={PARTITION_TAG: list(keys)}))
    for record in records:
        run = record.dagster_run
        key = run.tags.get(PARTITION_TAG)
        if key is None:
            continue
        if run.is_finished:
            finished.setdefault(key, []).append(run.run_id)
        else:
            unfinished.add(key)
    return finished, unfinished


def retire_page(
    instance: dg.DagsterInstance, database: Database, keys: Sequence[str]
) -> tuple[list[str], list[str], int]:
    """Retire the keys of one page that have no unfinished work: (retired, busy, runs deleted)."""
    busy = ledger.videos_with_active_jobs(database, keys)
    runs, unfinished = _runs_by_partition(instance, keys)
    busy |= unfinished
    retired = [key for key in keys if key not in busy]

    def retire(key: str) -> int:
        # Runs first: a partition key left without history is harmless if this stops half-way,
        # events whose key is gone would still be read by every status rebuild.
        for run_id in runs.get(key, ()):
            instance.delete_run(run_id)
        instance.delete_dynamic_partition(VIDEOS_PARTITIONS_NAME, key)
        return len(runs.get(key, ()))

    # Each deletion is a few statements, each on a new connection (dagster-postgres keeps no
    # pool): mostly waiting, so a few threads retire a page several times faster.
    with ThreadPoolExecutor(max_workers=RETIRE_THREADS) as pool:
        deleted = sum(pool.map(retire, retired))
    # A job the job sensor claimed for one of these videos while they were being retired: the
    # sensor's add request may have come before the delete, so the partition goes back.
    claimed = ledger.videos_with_active_jobs(database, retired)
    if claimed:
        instance.add_dynamic_partitions(VIDEOS_PARTITIONS_NAME, sorted(claimed))
        retired = [key for key in retired if key not in claimed]
        busy |= claimed
    return retired, sorted(busy & set(keys)), deleted


def retire_partitions(
    instance: dg.DagsterInstance, database: Database, keep: int, *, time_budget: float = 40.0
) -> Retirement:
    """Retire the video partitions beyond the newest ``keep``, a page at a time, within ``time_budget``.

    Args:
        instance: The Dagster instance whose partitions, runs and events are trimmed.
        database: The job ledger, asked which videos still have work in flight.
        keep: How many of the newest partition keys stay (at least 1).
        time_budget: Seconds after which the pass stops at the end of a page (a sensor tick has 60 s).

    Returns:
        What was retired and kept.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    started = time.monotonic()
    retired: list[str] = []
    busy: list[str] = []
    deleted = 0
    more = False
    for page in _older_pages(instance, keep):
        page_retired, page_busy, page_deleted = retire_page(instance, database, page)
        retired.extend(page_retired)
        busy.extend(page_busy)
        deleted += page_deleted
        if time.monotonic() - started > time_budget:
            more = True
            break
    if retired:
        logger.info("retired %d video partitions (%d runs)", len(retired), deleted)
    return Retirement(keep, tuple(retired), tuple(busy), deleted, more)
