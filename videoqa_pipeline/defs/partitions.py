"""The one partitions definition every per-video asset shares: one partition per video ID.

Keys follow :mod:`videoqa_pipeline.video_ids`; the job ledger is the system of record for which
source each key stands for.
"""

import dagster as dg

VIDEOS_PARTITIONS_NAME = "videos"

videos_partitions = dg.DynamicPartitionsDefinition(name=VIDEOS_PARTITIONS_NAME)
