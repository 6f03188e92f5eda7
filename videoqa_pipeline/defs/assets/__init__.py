"""The per-video assets, one partition per video, by group: ``ingest``, ``analysis``, ``index``.

The assets are module-level definitions (Dagster's defs-folder loader finds them in
:mod:`.ingest`, :mod:`.analysis` and :mod:`.index`); each calls one stage of
:mod:`videoqa_pipeline.steps`. :func:`asset_definitions` hands the same objects to
:func:`videoqa_pipeline.definitions.build_definitions`.
"""

from __future__ import annotations

import dagster as dg

from videoqa_pipeline.settings import Settings


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


def with_attempts(asset: dg.AssetsDefinition, max_attempts: int) -> dg.AssetsDefinition:
    """The same asset (same function, key, group, kinds, pool, description, partitions) with
    ``max_attempts`` attempts per step.

    The module-level assets take WORKER_MAX_ATTEMPTS from the environment they are loaded in,
    which is right for a code location; a process that runs the pipeline with other settings
    (``videoqa process`` with explicit settings, tests) gets copies that follow those settings.
    """
    spec = asset.specs_by_key[asset.key]
    policy = asset.op.retry_policy
    assert policy is not None, f"{asset.key.to_user_string()} has no retry policy to adjust"
    return dg.asset(
        name=asset.key.path[-1],
        group_name=spec.group_name,
        kinds=set(spec.kinds),
        pool=asset.op.pool,
        description=spec.description,
        partitions_def=asset.partitions_def,
        retry_policy=policy._replace(max_retries=max(0, max_attempts - 1)),
    )(asset.op.compute_fn.decorated_fn)  # type: ignore[union-attr]


def asset_definitions(settings: Settings) -> dg.Definitions:
    """The per-video assets with ``settings``' attempts per step (the module-level objects when the
    settings are the environment's, as in the defs folder)."""
    assets = video_assets()
    policy = assets[0].op.retry_policy
    attempts = 1 + (policy.max_retries if policy else 0)
    if settings.worker_max_attempts != attempts:
        assets = [with_attempts(asset, settings.worker_max_attempts) for asset in assets]
    return dg.Definitions(assets=assets)
