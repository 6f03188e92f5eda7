"""Readiness checks: can this process reach the ledger, the blob store and the Dagster instance?

Liveness (``/healthz``) only says the process answers. Readiness (``/readyz``) runs the three
checks below, each bounded by a timeout, and names the part that fails. The Dagster instance is
checked only when ``DAGSTER_HOME`` is set; otherwise it is reported as "not configured" without
failing readiness, because the service can take webhooks into the ledger while Dagster runs
elsewhere (or not yet).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from videoqa_pipeline.storage.blobs import BlobStore
from videoqa_pipeline.storage.database import Database

logger = logging.getLogger(__name__)

#: Seconds one check may take before it counts as failed.
DEFAULT_CHECK_TIMEOUT_SECONDS = 5.0

#: Blob keys under this prefix are written and deleted by the readiness probe.
PROBE_PREFIX = "_readyz"


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one readiness check.

    Attributes:
        ok: Whether the part is usable.
        detail: What was checked, or what failed and what to do.
        seconds: How long the check took.
    """

    ok: bool
    detail: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 4)}


def check_database(db: Database) -> str:
    """``SELECT 1`` on the ledger database.

    Returns:
        The redacted URL that answered.

    Raises:
        Exception: whatever the driver raised when the database is unreachable.
    """
    with db.connection() as conn:
        conn.execute("SELECT 1").fetchone()
    return f"SELECT 1 on {db.redacted_url}"


def check_blob_store(store: BlobStore) -> str:
    """Write and delete a tiny probe object: proves the store is reachable *and* writable.

    Returns:
        Where the probe was written.
    """
    key = f"{PROBE_PREFIX}/{uuid.uuid4().hex}/probe"
    store.put_bytes(key, b"ok")
    try:
        where = store.uri(key)
    finally:
        store.delete_prefix(f"{PROBE_PREFIX}/{key.split('/')[1]}/")
    return f"wrote and deleted {where}"


def check_dagster(home: Path | None) -> str:
    """Open the Dagster instance of ``DAGSTER_HOME`` and read its run storage.

    Returns:
        What was checked, or "not configured" when ``DAGSTER_HOME`` is unset.
    """
    if not home:
        return "not configured (DAGSTER_HOME unset): not checked"
    import dagster as dg  # only when configured: the import costs about a second

    with dg.DagsterInstance.from_config(str(home)) as instance:
        count = instance.get_runs_count()
    return f"instance at {home} answered ({count} runs)"


async def run_check(check: Callable[[], str], timeout_seconds: float) -> CheckResult:
    """Run a blocking check in a worker thread, bounded by ``timeout_seconds``.

    Never raises: a failure or a timeout becomes ``ok=False`` with the reason.
    """
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(asyncio.to_thread(check), timeout_seconds)
    except asyncio.TimeoutError:
        return CheckResult(False, f"no answer within {timeout_seconds:g} s", time.perf_counter() - started)
    except Exception as error:  # a readiness probe reports every failure, whatever its type
        logger.warning("readiness check failed: %s", error)
        message = f"{type(error).__name__}: {error}"
        return CheckResult(False, message[:500], time.perf_counter() - started)
    return CheckResult(True, detail, time.perf_counter() - started)


async def readiness(
    checks: Mapping[str, Callable[[], str]], timeout_seconds: float = DEFAULT_CHECK_TIMEOUT_SECONDS
) -> tuple[bool, dict[str, CheckResult]]:
    """Run named checks concurrently.

    Args:
        checks: ``name -> blocking check`` (returns a detail string, raises on failure).
        timeout_seconds: Per check.

    Returns:
        Whether all passed, and each result by name.
    """
    names = list(checks)
    results = await asyncio.gather(*(run_check(checks[name], timeout_seconds) for name in names))
    by_name = dict(zip(names, results, strict=True))
    return all(result.ok for result in results), by_name
