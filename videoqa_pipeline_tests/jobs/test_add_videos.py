"""`add_videos`, the UI's way in: each source becomes a ledger job, checked before any is recorded."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from videoqa_pipeline.defs.jobs import add_videos
from videoqa_pipeline.media import bundled_sample_video
from videoqa_pipeline.storage import ledger
from videoqa_pipeline_tests.jobs.conftest import LedgerDatabase


def _launch(db: LedgerDatabase, config: dict[str, object]) -> dg.ExecuteInProcessResult:
    return add_videos.execute_in_process(
        run_config={"ops": {"add_videos": {"config": config}}},
        resources={"database": db.resource()},
        raise_on_error=False,
    )


def _ui_jobs(db: LedgerDatabase) -> list[ledger.Job]:
    return [job for job in ledger.list_jobs(db.database, limit=100) if job.source_kind == "ui"]


def test_each_source_becomes_one_pending_job_that_remembers_its_source(
    embedded_db: LedgerDatabase, tiny_video: Path
) -> None:
    result = _launch(
        embedded_db, {"sources": [str(tiny_video)], "video_ids": ["from-ui"], "max_frames_per_video": 3}
    )
    assert result.success
    assert _launch(embedded_db, {"sources": ["sample"]}).success
    jobs = {job.video_id: job for job in _ui_jobs(embedded_db)}
    assert jobs["from-ui"].status == ledger.PENDING and jobs["from-ui"].options == {"max_frames_per_video": 3}
    assert jobs["from-ui"].external_id == f"{result.run_id}:0"
    assert jobs["sample"].source_uri == str(bundled_sample_video())
    assert ledger.lookup_source(embedded_db.database, "from-ui") == str(tiny_video.resolve())


def test_a_bad_source_fails_the_run_and_records_nothing(
    embedded_db: LedgerDatabase, tiny_video: Path
) -> None:
    before = len(_ui_jobs(embedded_db))
    result = _launch(embedded_db, {"sources": [str(tiny_video), "/no/such/video.mp4"]})
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure is not None and "/no/such/video.mp4" in str(failure.description)
    assert len(_ui_jobs(embedded_db)) == before


def test_video_ids_must_match_the_sources(embedded_db: LedgerDatabase, tiny_video: Path) -> None:
    result = _launch(embedded_db, {"sources": [str(tiny_video)], "video_ids": ["a", "b"]})
    assert not result.success
