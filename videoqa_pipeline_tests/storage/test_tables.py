"""Partition writes and reads of every metadata table, on every available PostgreSQL backend."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.errors import SchemaMismatchError
from videoqa_pipeline.storage.migrations import CURRENT_SCHEMA_VERSION, MIGRATIONS_TABLE
from videoqa_pipeline.storage.schema import TABLES, VECTOR_TYPE
from videoqa_pipeline.storage.tables import (
    count_partition_rows,
    delete_video,
    read_partition,
    replace_partition,
)


def _vector(seed: int, dimension: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(dimension).astype(np.float32)


def sample_frame(asset: str) -> pd.DataFrame:
    """A realistic frame per table asset, with NULLs where the table allows them."""
    if asset == "source_video":
        return pd.DataFrame(
            [
                {
                    "source_uri": "file:///videos/talk.mp4",
                    "blob_key": "v/source/original.mp4",
                    "size_bytes": 5_000_000_000,  # needs bigint
                    "sha256": "ab" * 32,
                    "duration_seconds": 61.25,
                    "container": "mov,mp4,m4a,3gp,3g2,mj2",
                    "video_codec": "h264",
                    "width": 1920,
                    "height": 1080,
                    "fps": 29.97,
                    "frame_count": 1836,
                    "vfr": False,
                    "rotation": 90,
                    "has_audio": True,
                    "audio_codec": "aac",
                    "audio_sample_rate": 48000,
                    "audio_channels": 2,
                }
            ]
        )
    if asset == "normalized_video":
        return pd.DataFrame(
            [
                {
                    "video_blob_key": "v/normalized/video.mp4",
                    "audio_blob_key": None,  # a silent video
                    "width": 1280,
                    "height": 720,
                    "fps": 25.0,
                    "duration_seconds": 10.0,
                    "video_size_bytes": 123456,
                    "audio_size_bytes": None,
                }
            ]
        )
    if asset == "transcript":
        return pd.DataFrame(
            {
                "segment_index": [0, 1],
                "start_seconds": [0.0, 2.5],
                "end_seconds": [2.5, 4.0],
                "text": ["Hello 'world', \"quoted\" \\ tab\there", "ünïcödé\nnew line"],
                "words": [
                    [{"start": 0.0, "end": 0.5, "text": "Hello", "probability": 0.98}],
                    None,
                ],
                "language": ["en", None],
                "model": ["whisper-tiny", "whisper-tiny"],
            }
        )
    if asset == "scenes":
        return pd.DataFrame(
            {
                "scene_index": [0, 1, 2],
                "start_seconds": [0.0, 3.2, 7.9],
                "end_seconds": [3.2, 7.9, 10.0],
                "start_frame": [0, 80, 197],
                "end_frame": [80, 197, 250],
            }
        )
    if asset == "keyframes":
        return pd.DataFrame(
            {
                "scene_index": [0, 2],
                "timestamp_seconds": [1.6, 8.95],
                "blob_key": ["v/keyframes/scene_0000.jpg", "v/keyframes/scene_0002.jpg"],
                "width": [1280, 1280],
                "height": [720, 720],
                "size_bytes": [48213, 51234],
                "sharpness": [112.5, np.nan],
            }
        )
    if asset == "frame_analyses":
        return pd.DataFrame(
            {
                "scene_index": [0, 2],
                "timestamp_seconds": [1.6, 8.95],
                "caption": [None, "a slide with a chart"],
                "labels": [["dark", "face:1"], []],
                "ocr_text": ["INVOICE 2024 TOTAL 42", ""],
                "model": ["rapidocr+opencv", "rapidocr+opencv"],
            }
        )
    if asset == "embeddings":
        return pd.DataFrame(
            {
                "item_index": [0, 1, 2],
                "kind": ["transcript", "frame", "transcript"],
                "start_seconds": [0.0, 1.6, 2.5],
                "end_seconds": [2.5, 1.6, 4.0],
                "text": ["hello world", "INVOICE 2024 TOTAL 42", "a different model"],
                "model": ["all-MiniLM-L6-v2", "all-MiniLM-L6-v2", "text-embedding-3-small"],
                "dimension": [384, 384, 8],
                "embedding": [_vector(1, 384), _vector(2, 384), _vector(3, 8)],
            }
        )
    raise KeyError(asset)


def assert_frames_equal(expected: pd.DataFrame, actual: pd.DataFrame, asset: str) -> None:
    spec = TABLES[asset]
    assert list(actual.columns) == list(spec.data_column_names)
    assert len(actual) == len(expected)
    for column in spec.data_columns:
        for position in range(len(expected)):
            want: Any = expected[column.name].iloc[position]
            got: Any = actual[column.name].iloc[position]
            where = f"{asset}.{column.name}[{position}]"
            if column.sql_type == VECTOR_TYPE:
                assert isinstance(got, np.ndarray) and got.dtype == np.float32, where
                np.testing.assert_array_equal(got, want, err_msg=where)
            elif column.sql_type == "text[]":
                assert list(got) == list(want), where
            elif want is None or (isinstance(want, float) and np.isnan(want)):
                assert got is None or got is pd.NA or (isinstance(got, float) and np.isnan(got)), where
            else:
                assert got == want, where


@pytest.mark.parametrize("asset", sorted(TABLES))
def test_round_trip_every_table(database: Database, video_id: str, asset: str) -> None:
    spec = TABLES[asset]
    frame = sample_frame(asset)

    written = replace_partition(database, spec, video_id, frame)
    back = read_partition(database, spec, video_id)

    assert written == len(frame)
    assert_frames_equal(frame, back, asset)


@pytest.mark.parametrize("asset", sorted(TABLES))
def test_replacing_twice_never_duplicates(database: Database, video_id: str, asset: str) -> None:
    spec = TABLES[asset]
    frame = sample_frame(asset)

    replace_partition(database, spec, video_id, frame)
    replace_partition(database, spec, video_id, frame)

    assert count_partition_rows(database, spec, video_id) == len(frame)


@pytest.mark.parametrize("asset", sorted(TABLES))
def test_empty_frame_replaces_partition_with_no_rows(database: Database, video_id: str, asset: str) -> None:
    spec = TABLES[asset]
    replace_partition(database, spec, video_id, sample_frame(asset))

    written = replace_partition(database, spec, video_id, sample_frame(asset).iloc[0:0])
    back = read_partition(database, spec, video_id)

    assert written == 0
    assert back.empty and list(back.columns) == list(spec.data_column_names)


def test_rows_come_back_ordered_by_primary_key(database: Database, video_id: str) -> None:
    frame = sample_frame("scenes").iloc[::-1]
    replace_partition(database, TABLES["scenes"], video_id, frame)

    back = read_partition(database, TABLES["scenes"], video_id)

    assert back["scene_index"].tolist() == [0, 1, 2]
    assert back["scene_index"].dtype == np.int64 and back["start_seconds"].dtype == np.float64


def test_partitions_are_independent(database: Database, video_id: str) -> None:
    other = f"{video_id}-other"
    replace_partition(database, TABLES["scenes"], video_id, sample_frame("scenes"))
    replace_partition(database, TABLES["scenes"], other, sample_frame("scenes").iloc[:1])

    replace_partition(database, TABLES["scenes"], video_id, sample_frame("scenes").iloc[:2])

    assert count_partition_rows(database, TABLES["scenes"], video_id) == 2
    assert count_partition_rows(database, TABLES["scenes"], other) == 1


def test_embedding_column_type_matches_backend(database: Database, backend: str) -> None:
    if backend == "embedded":
        assert database.has_pgvector and database.embedding_column_type == "vector"
    elif backend == "system":
        assert not database.has_pgvector and database.embedding_column_type == "real[]"
    with database.connection() as conn:
        row = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'videoqa_embeddings'::regclass AND attname = 'embedding'"
        ).fetchone()
    assert row is not None and row[0] == database.embedding_column_type


def test_full_text_column_is_generated(database: Database, video_id: str) -> None:
    replace_partition(database, TABLES["embeddings"], video_id, sample_frame("embeddings"))
    with database.connection() as conn:
        hits = conn.execute(
            "SELECT item_index FROM videoqa_embeddings WHERE video_id = %s "
            "AND search_tsv @@ plainto_tsquery('simple', 'invoice total')",
            (video_id,),
        ).fetchall()
    assert hits == [(1,)]


def test_live_schema_matches_table_specs(database: Database) -> None:
    """A spec changed without a migration (or the reverse) fails here."""
    with database.connection() as conn:
        for spec in TABLES.values():
            catalog = conn.execute(
                """SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
                   FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0
                   AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum""",
                (spec.name,),
            ).fetchall()
            expected = [
                (
                    column.name,
                    database.embedding_column_type if column.sql_type == VECTOR_TYPE else column.sql_type,
                    not column.nullable,
                )
                for column in spec.columns
            ]
            assert catalog == expected, spec.name
            key = conn.execute(
                """SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i
                   CROSS JOIN unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                   WHERE i.indrelid = %s::regclass AND i.indisprimary""",
                (spec.name,),
            ).fetchone()
            assert key is not None and tuple(key[0]) == spec.primary_key, spec.name


def test_schema_version_is_recorded_once(database: Database) -> None:
    assert database.ensure_schema() == []
    with database.connection() as conn:
        versions = [
            row[0] for row in conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE} ORDER BY version")
        ]
    assert versions == list(range(1, CURRENT_SCHEMA_VERSION + 1))


def test_statement_timeout_is_applied(database: Database) -> None:
    with database.connection() as conn:
        row = conn.execute("SELECT current_setting('statement_timeout')").fetchone()
    assert row is not None and row[0] == f"{int(database.settings.timeout_seconds)}s"


def test_delete_video_clears_every_table(database: Database, video_id: str) -> None:
    for asset, spec in TABLES.items():
        replace_partition(database, spec, video_id, sample_frame(asset))

    delete_video(database, video_id)

    assert all(count_partition_rows(database, spec, video_id) == 0 for spec in TABLES.values())


# --- validation: clear errors before anything reaches the server ---------------------------------


def test_missing_and_extra_columns_are_named(database: Database, video_id: str) -> None:
    frame = sample_frame("scenes").drop(columns=["end_frame"]).assign(colour=["red", "green", "blue"])

    with pytest.raises(SchemaMismatchError) as caught:
        replace_partition(database, TABLES["scenes"], video_id, frame)

    message = str(caught.value)
    assert "videoqa_scenes" in message and "end_frame" in message and "colour" in message


def test_failed_write_keeps_previous_rows(database: Database, video_id: str) -> None:
    spec = TABLES["scenes"]
    replace_partition(database, spec, video_id, sample_frame("scenes"))
    bad = sample_frame("scenes").assign(start_frame=[0, 2**40, 5])  # does not fit in integer

    with pytest.raises(SchemaMismatchError, match="start_frame"):
        replace_partition(database, spec, video_id, bad)

    assert count_partition_rows(database, spec, video_id) == 3


def test_null_in_not_null_column_is_rejected(database: Database, video_id: str) -> None:
    frame = sample_frame("transcript").assign(model=["whisper-tiny", None])

    with pytest.raises(SchemaMismatchError, match=r"row 1 .*'model'.*NOT NULL"):
        replace_partition(database, TABLES["transcript"], video_id, frame)


def test_duplicate_primary_key_is_rejected(database: Database, video_id: str) -> None:
    frame = sample_frame("scenes").assign(scene_index=[0, 1, 1])

    with pytest.raises(SchemaMismatchError, match="scene_index"):
        replace_partition(database, TABLES["scenes"], video_id, frame)


def test_vector_length_must_match_dimension(database: Database, video_id: str) -> None:
    frame = sample_frame("embeddings").assign(dimension=[384, 384, 9])

    with pytest.raises(SchemaMismatchError, match="dimension"):
        replace_partition(database, TABLES["embeddings"], video_id, frame)


def test_unknown_embedding_kind_is_rejected_by_the_database(database: Database, video_id: str) -> None:
    frame = sample_frame("embeddings").assign(kind=["transcript", "frame", "audio"])

    with pytest.raises(SchemaMismatchError, match="kind"):
        replace_partition(database, TABLES["embeddings"], video_id, frame)


def test_video_id_column_must_match_partition(database: Database, video_id: str) -> None:
    spec = TABLES["scenes"]
    same = sample_frame("scenes").assign(video_id=video_id)
    assert replace_partition(database, spec, video_id, same) == 3

    with pytest.raises(SchemaMismatchError, match="other video IDs"):
        replace_partition(database, spec, video_id, sample_frame("scenes").assign(video_id="someone-else"))


def test_whole_floats_are_accepted_for_integer_columns(database: Database, video_id: str) -> None:
    frame = sample_frame("normalized_video").assign(width=[1280.0], video_size_bytes=[np.int32(5)])
    replace_partition(database, TABLES["normalized_video"], video_id, frame)

    back = read_partition(database, TABLES["normalized_video"], video_id)

    assert back["width"].tolist() == [1280] and str(back["width"].dtype) == "Int64"
    with pytest.raises(SchemaMismatchError, match="whole number"):
        replace_partition(database, TABLES["normalized_video"], video_id, frame.assign(width=[12.5]))
