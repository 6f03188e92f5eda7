"""`videoqa submit/status/requeue/cancel/reprocess` against the embedded PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from videoqa_pipeline.cli import main
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.database import DatabaseSettings, get_database


def test_submit_status_cancel_requeue_reprocess(jobs_home: Path, tiny_video: Path) -> None:
    runner = CliRunner()
    env = {"VIDEOQA_HOME": str(jobs_home), "DATABASE_URL": "", "DAGSTER_HOME": ""}

    def videoqa(*args: str) -> str:
        result = runner.invoke(main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    submitted = json.loads(
        videoqa("submit", str(tiny_video), "--video-id", "cli-tiny", "--max-frames", "2", "--json")
    )
    job_id = submitted["job_id"]
    database = get_database(DatabaseSettings(url=None, home=jobs_home, pool_size=2))
    job = ledger.get_job(database, job_id)
    assert (job.status, job.video_id, job.options, job.source_kind) == (
        "pending",
        "cli-tiny",
        {"max_frames_per_video": 2},
        "cli",
    )
    table = videoqa("status")
    assert f"{job_id:>6}  pending" in table and "cli-tiny" in table
    assert "cancelled" in videoqa("cancel", str(job_id))
    detail = videoqa("status", str(job_id))
    assert "cancelled by an operator" in detail and "status                 cancelled" in detail
    assert "pending again" in videoqa("requeue", str(job_id))
    assert ledger.get_job(database, job_id).status == "pending"
    out = videoqa("reprocess", "cli-tiny", "--from", "keyframes")
    again = ledger.list_jobs(database, limit=1)[0]
    assert (
        f"job {again.id} pending" in out and again.from_stage == "keyframes" and again.video_id == "cli-tiny"
    )

    for args, message in [
        (["submit", "/no/such/file.mp4"], "not found"),
        (["submit", str(tiny_video), "--max-frames", "0"], "greater than or equal to 1"),
        (["submit", str(tiny_video), "--video-id", "a,b"], "not allowed"),
        (["status", "999999"], "no job 999999"),
        (["requeue", str(again.id)], "only failed or cancelled"),
        (["reprocess", "never-seen"], "no source is known"),
        (["reprocess", "cli-tiny", "--from", "nowhere"], "Invalid value"),
    ]:
        result = runner.invoke(main, args, env=env)
        assert result.exit_code != 0 and message in result.output, (args, result.output)
