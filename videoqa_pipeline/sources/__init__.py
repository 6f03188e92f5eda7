"""Where jobs come from and where their outcome goes: Dagster sensors over the job ledger.

* :mod:`.job_sensor`: pending ledger rows → one run per job attempt, with backpressure.
* :mod:`.inbox_sensor`: a video dropped in the inbox folder → a job, once.
* :mod:`.run_status`: run started / succeeded / failed / cancelled → the job's row, plus a
  sweeper for jobs whose run vanished or hangs.
* :mod:`.run_ledger`: the run's own write-back (hooks and a start call), so the ledger is right
  even when sensors lag.
"""

from videoqa_pipeline.sources.run_ledger import JOB_ATTEMPT_TAG, JOB_ID_TAG, JOB_SOURCE_KIND_TAG

__all__ = ["JOB_ATTEMPT_TAG", "JOB_ID_TAG", "JOB_SOURCE_KIND_TAG"]
