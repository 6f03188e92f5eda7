"""The per-video `embeddings_searchable` asset check, on real databases and through Dagster."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from videoqa_pipeline.ai.types import Embedder
from videoqa_pipeline.definitions import build_definitions
from videoqa_pipeline.defs.checks import SEARCHABLE_CHECK, SEARCHABLE_CHECK_JOB, assess_video
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.schema import EMBEDDINGS, TRANSCRIPT
from videoqa_pipeline.storage.tables import replace_partition
from videoqa_pipeline_tests.search.corpus import Corpus
from videoqa_pipeline_tests.search.test_cli import database_url


def _transcript(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "segment_index": i,
                "start_seconds": float(i),
                "end_seconds": i + 1.0,
                "text": text,
                "words": None,
                "language": "en",
                "model": "test",
            }
            for i, text in enumerate(texts)
        ]
    )


def _embedding_row(index: int, vector: np.ndarray, model: str) -> dict[str, object]:
    return {
        "item_index": index,
        "kind": "transcript",
        "start_seconds": float(index),
        "end_seconds": index + 1.0,
        "text": f"item {index}",
        "model": model,
        "dimension": int(vector.size),
        "embedding": vector,
    }


def test_processed_video_is_searchable(database: Database, corpus: Corpus, embedder: Embedder) -> None:
    report = assess_video(
        database, corpus.video_ids["harbor"], enabled=True, expected_model=embedder.model_name
    )
    assert report.searchable, report.problems
    assert (report.items, report.transcript_items, report.frame_items) == (4, 3, 1)
    assert report.dimensions == [384] and report.models == [embedder.model_name]


def test_missing_mixed_and_foreign_embeddings_are_reported(
    database: Database, video_id: str, embedder: Embedder
) -> None:
    replace_partition(database, TRANSCRIPT, video_id, _transcript(["hello there", "general remarks"]))
    missing = assess_video(database, video_id, enabled=True, expected_model=embedder.model_name)
    assert not missing.searchable and missing.severity == "WARN"
    assert "no embeddings although 2 transcript segment(s)" in missing.problems[0]
    assert assess_video(database, video_id, enabled=False, expected_model=None).searchable

    vectors = embedder.embed(["hello there"]).vectors
    mixed = pd.DataFrame(
        [
            _embedding_row(0, vectors[0], embedder.model_name),
            _embedding_row(1, np.ones(8, np.float32), "other"),
        ]
    )
    replace_partition(database, EMBEDDINGS, video_id, mixed)
    report = assess_video(database, video_id, enabled=True, expected_model=embedder.model_name)
    assert not report.searchable and report.severity == "ERROR"
    assert report.dimensions == [8, 384] and "mixed embeddings" in report.problems[0]

    foreign = pd.DataFrame([_embedding_row(0, np.ones(8, np.float32), "other")])
    replace_partition(database, EMBEDDINGS, video_id, foreign)
    report = assess_video(database, video_id, enabled=True, expected_model=embedder.model_name)
    assert not report.searchable and report.severity == "WARN"
    assert "search refuses to mix models" in report.problems[0]
    # Another model's vectors make every unscoped search refuse: leave none behind for later tests.
    replace_partition(database, EMBEDDINGS, video_id, foreign.iloc[0:0])


@pytest.mark.parametrize("backend", ["embedded"])
def test_check_reports_each_video_in_dagster(
    database: Database, corpus: Corpus, video_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDEOQA_AI_PROVIDER", "local")
    monkeypatch.delenv("VIDEOQA_EMBED_MODEL", raising=False)
    replace_partition(database, TRANSCRIPT, video_id, _transcript(["words nobody embedded"]))
    monkeypatch.setenv("DATABASE_URL", database_url(database))  # resources read it as dg.EnvVar
    settings = Settings.from_env(
        {"DATABASE_URL": database_url(database), "VIDEOQA_HOME": str(tmp_path), "LOG_LEVEL": "WARNING"}
    )
    definitions = build_definitions(settings)
    job = definitions.resolve_job_def(SEARCHABLE_CHECK_JOB)
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance)
    assert result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == SEARCHABLE_CHECK and not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert video_id in evaluation.metadata["not_searchable_ids"].value
    assert corpus.video_ids["space"] not in evaluation.metadata["not_searchable_ids"].value
    table = evaluation.metadata["per_video"].value
    assert f"| {video_id} | NO | 0 | - | - | no embeddings although 1 transcript segment(s)" in table
    assert f"| {corpus.video_ids['space']} | yes | 4 | 384 |" in table
    assert f"{video_id}: no embeddings" in (evaluation.description or "")
    # The pipeline job itself does not run the check (its hooks end the job at `embeddings`).
    assert (
        "embeddings_embeddings_searchable"
        not in definitions.resolve_job_def("video_pipeline").graph.node_dict
    )
