"""Which source URI a video ID (partition key) stands for.

A partition key alone does not say where the video is. The answer is the newest job's source
for that video ID in the job ledger, or, for videos processed without a job (``videoqa
process``), the source registered here; a run started from the UI for a known video then finds
its source again. The implementation lives in :mod:`videoqa_pipeline.storage.ledger`.
"""

from __future__ import annotations

from videoqa_pipeline.storage.ledger import lookup_source, register_source

SAMPLE_VIDEO_ID = "sample"

__all__ = ["SAMPLE_VIDEO_ID", "lookup_source", "register_source"]
