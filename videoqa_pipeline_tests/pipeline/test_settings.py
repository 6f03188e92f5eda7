"""Settings: the public environment interface, its defaults, and how problems are reported."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from videoqa_pipeline.cli import main
from videoqa_pipeline.settings import Settings, SettingsError, mask_url_password


def test_defaults_match_the_design_table() -> None:
    settings = Settings.from_env({})
    assert settings.job_sources == ("postgres",)
    assert settings.storage_type == "postgres"
    assert settings.metadata_storage == "postgres"
    assert settings.file_storage == "local"
    assert settings.database_url is None and settings.uses_embedded_database
    assert (settings.postgres_pool_size, settings.postgres_timeout) == (5, 10.0)
    assert (settings.aws_region, settings.sqs_max_messages, settings.sqs_wait_time) == ("us-east-1", 1, 20)
    assert settings.s3_prefix == "video-processing/"
    assert settings.webhook_port == 8080
    assert settings.max_frames_per_video == 50
    assert settings.enable_transcription and settings.enable_vision_analysis and settings.enable_embeddings
    assert (settings.worker_poll_ms, settings.worker_max_attempts) == (1500, 3)
    assert settings.log_level == "INFO"
    assert (settings.worker_dev_http, settings.worker_http_port) == (False, 8000)
    assert settings.problems() == []


def test_every_variable_is_parsed() -> None:
    env = {
        "JOB_SOURCE_TYPE": "postgres, sqs,webhook",
        "STORAGE_TYPE": "hybrid",
        "METADATA_STORAGE": "postgres",
        "FILE_STORAGE": "s3",
        "DATABASE_URL": "postgresql://user:pw@db:5432/videoqa",
        "POSTGRES_POOL_SIZE": "9",
        "POSTGRES_TIMEOUT": "2.5",
        "AWS_SQS_QUEUE_URL": "http://127.0.0.1:5000/123/jobs",
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "SQS_MAX_MESSAGES": "10",
        "SQS_WAIT_TIME": "5",
        "AWS_S3_BUCKET": "videos",
        "S3_PREFIX": "vq/",
        "WEBHOOK_SECRET": "whsec_c2VjcmV0",
        "WEBHOOK_PORT": "9090",
        "WEBHOOK_URL": "https://example.test/hook",
        "MAX_FRAMES_PER_VIDEO": "12",
        "ENABLE_TRANSCRIPTION": "false",
        "ENABLE_VISION_ANALYSIS": "0",
        "ENABLE_EMBEDDINGS": "yes",
        "WORKER_POLL_MS": "500",
        "WORKER_MAX_ATTEMPTS": "5",
        "LOG_LEVEL": "debug",
        "WORKER_DEV_HTTP": "true",
        "WORKER_HTTP_PORT": "8001",
        "VIDEOQA_HOME": "/tmp/vq-home",
    }
    settings = Settings.from_env(env)
    assert settings.problems() == []
    assert settings.job_sources == ("postgres", "sqs", "webhook")
    assert (settings.storage_type, settings.metadata_storage, settings.file_storage) == (
        "hybrid",
        "postgres",
        "s3",
    )
    assert settings.database_url == env["DATABASE_URL"]
    assert (settings.postgres_pool_size, settings.postgres_timeout) == (9, 2.5)
    assert settings.aws_sqs_queue_url == env["AWS_SQS_QUEUE_URL"]
    assert (settings.aws_region, settings.aws_endpoint_url) == ("eu-west-1", "http://127.0.0.1:5000")
    assert (settings.sqs_max_messages, settings.sqs_wait_time) == (10, 5)
    assert (settings.aws_s3_bucket, settings.s3_prefix) == ("videos", "vq/")
    assert (settings.webhook_secret, settings.webhook_port, settings.webhook_url) == (
        "whsec_c2VjcmV0",
        9090,
        "https://example.test/hook",
    )
    assert settings.max_frames_per_video == 12
    assert (settings.enable_transcription, settings.enable_vision_analysis, settings.enable_embeddings) == (
        False,
        False,
        True,
    )
    assert (settings.worker_poll_ms, settings.worker_max_attempts, settings.log_level) == (500, 5, "DEBUG")
    assert (settings.worker_dev_http, settings.worker_http_port) == (True, 8001)
    assert str(settings.blob_root) == "/tmp/vq-home/blobs"


def test_database_url_alone_means_postgres_jobs_and_storage() -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgresql://localhost/videoqa"})
    assert settings.job_sources == ("postgres",)
    assert settings.storage_type == "postgres" and settings.metadata_storage == "postgres"
    assert not settings.uses_embedded_database
    assert settings.validate() is settings


def test_all_problems_are_reported_together() -> None:
    settings = Settings.from_env(
        {
            "STORAGE_TYPE": "s3",
            "JOB_SOURCE_TYPE": "sqs,ftp",
            "MAX_FRAMES_PER_VIDEO": "lots",
            "POSTGRES_POOL_SIZE": "0",
            "AWS_REGION": "mars",
            "ENABLE_EMBEDDINGS": "maybe",
        }
    )
    with pytest.raises(SettingsError) as raised:
        settings.validate()
    problems = raised.value.problems
    text = str(raised.value)
    assert len(problems) >= 6
    for expected in (
        "AWS_S3_BUCKET",
        "AWS_SQS_QUEUE_URL",
        "'ftp'",
        "MAX_FRAMES_PER_VIDEO='lots'",
        "POSTGRES_POOL_SIZE",
        "AWS_REGION",
        "ENABLE_EMBEDDINGS",
    ):
        assert expected in text, expected


def test_secrets_are_masked_everywhere() -> None:
    env = {
        "DATABASE_URL": "postgresql://app:hunter2secret@db/videoqa",
        "WEBHOOK_SECRET": "topsecretvalue",
        "OPENAI_API_KEY": "sk-verysecretkey",
        "JOB_SOURCE_TYPE": "webhook",
    }
    settings = Settings.from_env(env)
    shown = json.dumps(settings.describe())
    for secret in ("hunter2secret", "topsecretvalue", "sk-verysecretkey"):
        assert secret not in shown
    assert mask_url_password(env["DATABASE_URL"]) == "postgresql://app:***@db/videoqa"
    result = CliRunner().invoke(main, ["check-config"], env=env)
    for secret in ("hunter2secret", "topsecretvalue", "sk-verysecretkey"):
        assert secret not in result.output


def test_check_config_exits_non_zero_and_lists_problems() -> None:
    ok = CliRunner().invoke(main, ["check-config"], env={"MAX_FRAMES_PER_VIDEO": "7"})
    assert ok.exit_code == 0, ok.output
    assert "MAX_FRAMES_PER_VIDEO" in ok.output and "configuration OK" in ok.output
    bad = CliRunner().invoke(
        main, ["check-config"], env={"STORAGE_TYPE": "floppy", "WORKER_MAX_ATTEMPTS": "-1"}
    )
    assert bad.exit_code == 1
    assert "STORAGE_TYPE='floppy'" in bad.output and "WORKER_MAX_ATTEMPTS" in bad.output
