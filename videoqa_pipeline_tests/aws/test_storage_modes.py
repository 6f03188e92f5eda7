"""The whole pipeline with STORAGE_TYPE=s3 and hybrid on moto: objects, Parquet tables, overwrites."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from videoqa_pipeline import aws, media
from videoqa_pipeline.defs.io_managers.parquet import ParquetTableIOManager
from videoqa_pipeline.defs.io_managers.postgres import PostgresTableIOManager
from videoqa_pipeline.defs.resources import BlobStoreResource, DatabaseResource, build_resources
from videoqa_pipeline.runner import process_video
from videoqa_pipeline.storage import parquet_tables
from videoqa_pipeline.storage.s3_blobs import S3BlobStore
from videoqa_pipeline.storage.schema import TABLES
from videoqa_pipeline.storage.tables import read_partition
from videoqa_pipeline_tests.aws.conftest import aws_settings

PREFIX = "videos/"


def _objects(s3: Any, bucket: str, prefix: str) -> list[str]:
    response = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in response.get("Contents", []))


def test_settings_alone_choose_the_backends(aws_home: Path, moto_endpoint: str) -> None:
    cases = {
        "postgres": (PostgresTableIOManager, "local"),
        "s3": (ParquetTableIOManager, "s3"),
        "hybrid": (PostgresTableIOManager, "s3"),
    }
    for storage_type, (io_manager_type, blob_kind) in cases.items():
        settings = aws_settings(aws_home, moto_endpoint, STORAGE_TYPE=storage_type, AWS_S3_BUCKET="b")
        resources = build_resources(settings)
        assert isinstance(resources["io_manager"], io_manager_type), storage_type
        blob_store = resources["blob_store"]
        assert isinstance(blob_store, BlobStoreResource) and blob_store.kind == blob_kind, storage_type
    hybrid_local = aws_settings(aws_home, moto_endpoint, STORAGE_TYPE="hybrid", FILE_STORAGE="local")
    assert isinstance(build_resources(hybrid_local)["io_manager"], PostgresTableIOManager)
    s3_blobs = build_resources(
        aws_settings(aws_home, moto_endpoint, STORAGE_TYPE="s3", AWS_S3_BUCKET="b", S3_PREFIX="x")
    )["blob_store"]
    assert isinstance(s3_blobs, BlobStoreResource)
    store = s3_blobs.get()
    assert isinstance(store, S3BlobStore) and store.uri("v/a/b") == "s3://b/x/v/a/b"
    assert store.config.endpoint_url == moto_endpoint


def _check_blobs(s3: Any, bucket: str, video_id: str, keyframes: pd.DataFrame) -> list[str]:
    keys = _objects(s3, bucket, f"{PREFIX}{video_id}/")
    assert f"{PREFIX}{video_id}/source/original.mp4" in keys
    assert f"{PREFIX}{video_id}/normalized/video.mp4" in keys
    assert f"{PREFIX}{video_id}/normalized/audio.wav" in keys
    assert len(keyframes) >= 1
    for blob in keyframes["blob_key"]:
        assert f"{PREFIX}{blob}" in keys
    return keys


def test_full_pipeline_on_s3_storage(
    aws_home: Path, moto_endpoint: str, s3: Any, bucket: str, small_video: media.SampleVideo
) -> None:
    settings = aws_settings(
        aws_home, moto_endpoint, STORAGE_TYPE="s3", AWS_S3_BUCKET=bucket, S3_PREFIX=PREFIX
    )
    report = process_video(str(small_video.path), settings=settings, video_id="s3talk")
    assert report.success, report.error
    store = S3BlobStore(bucket, PREFIX, aws.AwsConfig(endpoint_url=moto_endpoint))
    tables = {name: parquet_tables.read_partition(store, spec, "s3talk") for name, spec in TABLES.items()}
    assert len(tables["source_video"]) == 1 and len(tables["normalized_video"]) == 1
    assert len(tables["scenes"]) == len(small_video.cut_times) + 1
    assert len(tables["frame_analyses"]) == len(tables["keyframes"])
    embeddings = tables["embeddings"]
    assert len(embeddings) >= 1
    assert all(
        vector.dtype == "float32" and len(vector) == dim
        for vector, dim in zip(embeddings["embedding"], embeddings["dimension"], strict=True)
    )
    keys = _check_blobs(s3, bucket, "s3talk", tables["keyframes"])
    table_keys = sorted(key for key in keys if "/tables/" in key)
    assert table_keys == sorted(f"{PREFIX}s3talk/tables/{spec.name}.parquet" for spec in TABLES.values())
    # The UI shows where each table went.
    for step in TABLES:
        metadata = report.metadata_of(step)
        assert metadata["storage"] == "s3", step
        assert str(metadata["uri"]).startswith(f"s3://{bucket}/{PREFIX}s3talk/tables/"), step
        assert metadata["dagster/row_count"] == len(tables[step]), step

    # Re-materializing with fewer keyframes overwrites: no leftover rows or objects.
    again = process_video(
        str(small_video.path),
        settings=settings,
        video_id="s3talk",
        config_overrides={"max_frames_per_video": 1},
    )
    assert again.success, again.error
    keyframes = parquet_tables.read_partition(store, TABLES["keyframes"], "s3talk")
    assert len(keyframes) == 1
    assert len(parquet_tables.read_partition(store, TABLES["frame_analyses"], "s3talk")) == 1
    after = _objects(s3, bucket, f"{PREFIX}s3talk/")
    assert sorted(key for key in after if "/tables/" in key) == table_keys
    assert [key for key in after if "/keyframes/" in key] == [f"{PREFIX}{keyframes['blob_key'].iloc[0]}"]


def test_full_pipeline_on_hybrid_storage(
    aws_home: Path, moto_endpoint: str, s3: Any, bucket: str, small_video: media.SampleVideo
) -> None:
    settings = aws_settings(
        aws_home, moto_endpoint, STORAGE_TYPE="hybrid", AWS_S3_BUCKET=bucket, S3_PREFIX=PREFIX
    )
    assert (settings.metadata_storage, settings.file_storage) == ("postgres", "s3")
    report = process_video(str(small_video.path), settings=settings, video_id="hybridtalk")
    assert report.success, report.error
    database = DatabaseResource(home=str(settings.home)).get()
    keyframes = read_partition(database, TABLES["keyframes"], "hybridtalk")
    keys = _check_blobs(s3, bucket, "hybridtalk", keyframes)
    assert not [key for key in keys if "/tables/" in key], "hybrid keeps tables in PostgreSQL"
    assert report.metadata_of("scenes")["storage"] == "postgres"
    assert str(report.metadata_of("source_video")["blob"]).startswith(f"s3://{bucket}/{PREFIX}hybridtalk/")


def test_s3_source_is_read_directly(
    aws_home: Path, moto_endpoint: str, s3: Any, bucket: str, small_video: media.SampleVideo
) -> None:
    s3.upload_file(str(small_video.path), bucket, "uploads/clip one.mp4")
    settings = aws_settings(
        aws_home, moto_endpoint, STORAGE_TYPE="hybrid", AWS_S3_BUCKET=bucket, S3_PREFIX=PREFIX
    )
    report = process_video(
        f"s3://{bucket}/uploads/clip one.mp4",
        settings=settings,
        video_id="froms3",
        config_overrides={
            "enable_transcription": False,
            "enable_vision_analysis": False,
            "enable_embeddings": False,
        },
    )
    assert report.success, report.error
    database = DatabaseResource(home=str(settings.home)).get()
    source = read_partition(database, TABLES["source_video"], "froms3")
    assert source["source_uri"].iloc[0] == f"s3://{bucket}/uploads/clip one.mp4"
    assert source["size_bytes"].iloc[0] == small_video.path.stat().st_size


def test_missing_bucket_fails_the_step_readably(
    aws_home: Path, moto_endpoint: str, small_video: media.SampleVideo
) -> None:
    settings = aws_settings(
        aws_home,
        moto_endpoint,
        STORAGE_TYPE="s3",
        AWS_S3_BUCKET="videoqa-missing-bucket",
        WORKER_MAX_ATTEMPTS="3",
    )
    with dg.instance_for_test() as instance:
        report = process_video(
            str(small_video.path), settings=settings, video_id="nobucket", instance=instance
        )
        retries = [
            entry
            for entry in instance.all_logs(report.run_id)
            if entry.dagster_event is not None
            and entry.dagster_event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
        ]
    assert not report.success
    assert report.error is not None
    assert "source_video" in report.error and "videoqa-missing-bucket" in report.error
    assert "NoSuchBucket" in report.error and "AWS_S3_BUCKET" in report.error
    assert "Traceback" not in report.error
    assert not retries, "a missing bucket is permanent: no retry"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"STORAGE_TYPE": "s3"}, ["AWS_S3_BUCKET is not set"]),
        ({"STORAGE_TYPE": "hybrid"}, ["AWS_S3_BUCKET is not set"]),
        ({"JOB_SOURCE_TYPE": "sqs"}, ["AWS_SQS_QUEUE_URL is not set"]),
        (
            {"STORAGE_TYPE": "s3", "JOB_SOURCE_TYPE": "postgres,sqs", "AWS_REGION": "Virginia"},
            ["AWS_S3_BUCKET is not set", "AWS_SQS_QUEUE_URL is not set", "AWS_REGION='Virginia'"],
        ),
        (
            {"STORAGE_TYPE": "s3", "AWS_S3_BUCKET": "b", "AWS_ENDPOINT_URL": "localhost:9000"},
            ["AWS_ENDPOINT_URL"],
        ),
        (
            {"JOB_SOURCE_TYPE": "sqs", "AWS_SQS_QUEUE_URL": "q", "SQS_MAX_MESSAGES": "11"},
            ["SQS_MAX_MESSAGES"],
        ),
    ],
)
def test_settings_validation_lists_every_aws_problem(env: dict[str, str], expected: list[str]) -> None:
    from videoqa_pipeline.settings import Settings, SettingsError

    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env).validate()
    assert len(caught.value.problems) == len(expected), caught.value.problems
    for fragment in expected:
        assert fragment in str(caught.value)


def test_valid_aws_settings_pass() -> None:
    from videoqa_pipeline.settings import Settings

    settings = Settings.from_env(
        {
            "STORAGE_TYPE": "s3",
            "AWS_S3_BUCKET": "b",
            "JOB_SOURCE_TYPE": "sqs",
            "AWS_SQS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123/q",
            "AWS_REGION": "eu-west-1",
        }
    ).validate()
    assert (settings.metadata_storage, settings.file_storage) == ("s3", "s3")
