"""A ledger row no decoder can read fails alone: intake goes on, and ``videoqa status`` shows it.

A producer writes ``videoqa_jobs`` with plain SQL, and PostgreSQL's ``jsonb`` holds more than
Python's ``json`` will decode: integers of thousands of digits (Python refuses above 4300),
nesting thousands deep (``RecursionError``), numbers beyond a double (``1e400`` decodes to
infinity). Such a row must end ``failed`` at ``intake`` with the reason, the valid jobs inserted
after it must become runs on the same tick, and every reader of the ledger (the job sensor, the
sweeper's query, ``videoqa status`` in all its forms) must keep working.
"""

# ruff: noqa: F811 - fixtures imported from other test packages are redefined as parameters

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from videoqa_pipeline.cli import main as cli_main
from videoqa_pipeline.run_tags import JOB_ID_TAG
from videoqa_pipeline.storage import ledger
from videoqa_pipeline_tests.jobs.conftest import tiny_video, videos_dir  # noqa: F401 - fixtures
from videoqa_pipeline_tests.reliability.job_harness import JobHarness, process_env

DIGITS = 5000
DEPTH = 5000

#: Option objects PostgreSQL stores as jsonb and Python's json cannot (or must not) use.
POISON_OPTIONS = {
    "huge_integer": '{"max_frames_per_video": 1' + "0" * DIGITS + "}",
    "deep_nesting": '{"max_frames_per_video": ' + "[" * DEPTH + "]" * DEPTH + "}",
    # PostgreSQL keeps 1e400 exactly, and prints it as a 401-digit integer.
    "beyond_double": '{"max_frames_per_video": 1e400}',
}


def _insert(harness: JobHarness, source_uri: str, options: str = "{}", **columns: str) -> int:
    """One row as a producer writes it: plain SQL, the options as jsonb text."""
    names = ["source_uri", "options", *columns]
    with harness.connect() as conn:
        row = conn.execute(
            f"INSERT INTO videoqa_jobs ({', '.join(names)}) VALUES (%s, %s::jsonb"
            + ", %s" * len(columns)
            + ") RETURNING id",
            (source_uri, options, *columns.values()),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _cli(harness: JobHarness, *args: str) -> str:
    with process_env(harness.env):
        result = CliRunner().invoke(cli_main, list(args), catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output


def test_poison_options_fail_at_intake_and_the_queue_flows(harness: JobHarness, tiny_video: Path) -> None:
    poison = {name: _insert(harness, str(tiny_video), options) for name, options in POISON_OPTIONS.items()}
    valid = [_insert(harness, str(tiny_video)) for _ in range(3)]

    requests = harness.tick()  # raised on the first poison row before the fix

    assert sorted(int(request.tags[JOB_ID_TAG]) for request in requests) == valid
    for name, job_id in poison.items():
        job = ledger.get_job(harness.database, job_id)
        assert (job.status, job.failed_step, job.transient) == ("failed", "intake", False), name
        error = job.error or ""
        assert error.startswith("rejected at intake: options") and "Traceback" not in error, error
        assert len(error) < 600, f"{name}: the reason quotes the value, not all of it"
    assert "digits" in (ledger.get_job(harness.database, poison["huge_integer"]).error or "")
    assert "deeper" in (ledger.get_job(harness.database, poison["deep_nesting"]).error or "")
    assert "401 digits" in (ledger.get_job(harness.database, poison["beyond_double"]).error or "")
    # The producer's row is kept as written: PostgreSQL still holds the value.
    with harness.connect() as conn:
        row = conn.execute(
            "SELECT length(options::text) FROM videoqa_jobs WHERE id = %s", (poison["huge_integer"],)
        ).fetchone()
    assert row is not None and row[0] > DIGITS
    assert all(ledger.get_job(harness.database, job_id).status == "queued" for job_id in valid)


def test_status_lists_and_shows_unreadable_rows(harness: JobHarness, tiny_video: Path) -> None:
    job_id = _insert(harness, str(tiny_video), POISON_OPTIONS["huge_integer"])
    finished = _insert(harness, str(tiny_video), status="succeeded")
    with harness.connect() as conn:  # a producer (or a bad migration) wrote the step durations too
        conn.execute(
            "UPDATE videoqa_jobs SET step_seconds = %s::jsonb WHERE id = %s",
            ('{"scenes": ' + "[" * DEPTH + "]" * DEPTH + "}", finished),
        )

    table = _cli(harness, "status", "--limit", "50")  # crashed with a traceback before the fix
    assert f"{job_id:>6}  pending" in table and f"{finished:>6}  succeeded" in table
    detail = _cli(harness, "status", str(job_id))
    assert "options" in detail and "unreadable" in detail and "digits" in detail
    listed = json.loads(_cli(harness, "status", "--json", "--limit", "50"))
    by_id = {entry["id"]: entry for entry in listed}
    assert by_id[job_id]["options"] == {} and "digits" in by_id[job_id]["unreadable"]
    assert by_id[finished]["step_seconds"] is None
    assert ledger.get_job(harness.database, finished).status == "succeeded"

    harness.tick()
    job = ledger.get_job(harness.database, job_id)
    assert (job.status, job.failed_step) == ("failed", "intake")
    assert f"{job_id:>6}  failed" in _cli(harness, "status", "--limit", "50")


@pytest.mark.parametrize("column", ["options", "step_seconds"])
def test_every_ledger_reader_survives_a_poison_row(
    harness: JobHarness, tiny_video: Path, column: str
) -> None:
    job_id = _insert(harness, str(tiny_video))
    with harness.connect() as conn:
        conn.execute(
            f"UPDATE videoqa_jobs SET status = 'running', run_id = 'elsewhere', attempts = 1, {column} = %s::jsonb "
            "WHERE id = %s",
            ('{"n": 1' + "0" * DIGITS + "}", job_id),
        )
    assert any(job.id == job_id for job in ledger.active_jobs(harness.database, 1000))
    assert ledger.get_job(harness.database, job_id).status == "running"
    assert any(job.id == job_id for job in ledger.list_jobs(harness.database, limit=1000))
    ledger.cancel_job(harness.database, job_id)
