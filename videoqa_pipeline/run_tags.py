"""Names of the run tags that tie a Dagster run to a video's source and to its job in the ledger.

Plain constants (no Dagster) so the CLI and the ledger can name them without loading Dagster.
"""

#: The source URI of the video a run processes (a run launched for a new video may name it).
SOURCE_URI_TAG = "videoqa/source_uri"
JOB_ID_TAG = "videoqa/job_id"
JOB_ATTEMPT_TAG = "videoqa/job_attempt"
JOB_SOURCE_KIND_TAG = "videoqa/job_source"
#: The run a re-execution started from, as Dagster tags it.
PARENT_RUN_ID_TAG = "dagster/parent_run_id"
#: The partition (video ID) of a run, as Dagster tags it.
PARTITION_TAG = "dagster/partition"
#: The first run of a chain of re-executions, as Dagster tags it: names a launch's batch.
ROOT_RUN_ID_TAG = "dagster/root_run_id"
