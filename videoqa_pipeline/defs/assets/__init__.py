"""The per-video assets, one partition per video, by group: ``ingest``, ``analysis``, ``index``.

The assets are module-level definitions (Dagster's defs-folder loader finds them in
:mod:`.ingest`, :mod:`.analysis` and :mod:`.index`); each calls one stage of
:mod:`videoqa_pipeline.steps`. :func:`asset_definitions` hands the same objects to
:func:`videoqa_pipeline.definitions.build_definitions`.
"""

from __future__ import annotations

import logging

import dagster as dg

from videoqa_pipeline.settings import Settings

logger = logging.getLogger(__name__)


def video_assets() -> list[dg.AssetsDefinition]:
    """The seven per-video assets, in pipeline order."""
    # Imported here, not at the top: defining the assets reads the environment (the retry policy),
    # which a process importing this package for anything else should not pay for.
    from videoqa_pipeline.defs.assets import analysis, index, ingest

    return [
        ingest.source_video,
        ingest.normalized_video,
        analysis.transcript,
        analysis.scenes,
        analysis.keyframes,
        analysis.frame_analyses,
        index.embeddings,
    ]


def asset_definitions(settings: Settings) -> dg.Definitions:
    """The per-video assets, as the defs folder loads them.

    Their retry policy comes from the environment's WORKER_MAX_ATTEMPTS, read once when the assets
    are defined; a different value in ``settings`` is reported, not applied.
    """
    assets = video_assets()
    policy = assets[0].op.retry_policy
    attempts = 1 + (policy.max_retries if policy else 0)
    if settings.worker_max_attempts != attempts:
        logger.warning(
            "WORKER_MAX_ATTEMPTS=%d is ignored here: the assets were defined with %d attempts per step "
            "from this process's environment",
            settings.worker_max_attempts,
            attempts,
        )
    return dg.Definitions(assets=assets)
