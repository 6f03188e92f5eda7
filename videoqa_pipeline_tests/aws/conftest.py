"""A real S3/SQS protocol server (moto) on a free loopback port, and clients that talk to it over HTTP."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from videoqa_pipeline import aws, media
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage.database import DatabaseSettings, get_database
from videoqa_pipeline.storage.embedded import release_embedded_database

REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="package")
def moto_endpoint() -> Iterator[str]:
    """Start moto's HTTP server for this package's tests, with dummy credentials in the environment.

    The environment (restored afterwards) is what deployments use too: boto3's credential chain, and ``AWS_ENDPOINT_URL``
    for code paths that only have a URI (``s3://`` sources).
    """
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    port = _free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {name: os.environ.get(name) for name in _ENV}
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": endpoint,
        }
    )
    try:
        yield endpoint
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
)


@pytest.fixture(scope="package")
def aws_config(moto_endpoint: str) -> aws.AwsConfig:
    return aws.AwsConfig(region=REGION, endpoint_url=moto_endpoint, max_attempts=2)


@pytest.fixture(scope="package")
def s3(aws_config: aws.AwsConfig) -> Any:
    return aws.client("s3", aws_config)


@pytest.fixture(scope="package")
def sqs(aws_config: aws.AwsConfig) -> Any:
    return aws.client("sqs", aws_config)


@pytest.fixture()
def bucket(s3: Any) -> str:
    """A fresh, empty bucket per test."""
    name = f"videoqa-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="package")
def aws_home() -> Iterator[Path]:
    """A VIDEOQA_HOME outside pytest's temp root (see videoqa_pipeline_tests/pipeline/conftest.py).

    The embedded PostgreSQL under it is stopped before the directory is removed.
    """
    home = Path(tempfile.mkdtemp(prefix="videoqa-aws-home-"))
    yield home
    get_database(DatabaseSettings(url=None, home=home, pool_size=5, timeout_seconds=10.0)).close()
    release_embedded_database(home)
    shutil.rmtree(home, ignore_errors=True)


def aws_settings(home: Path, endpoint: str, **env: str) -> Settings:
    """Settings for ``home`` and the moto ``endpoint``, plus ``env`` (e.g. STORAGE_TYPE)."""
    return Settings.from_env(
        {
            "VIDEOQA_HOME": str(home),
            "LOG_LEVEL": "WARNING",
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": endpoint,
            **env,
        }
    ).validate()


@pytest.fixture(scope="package")
def small_video(tmp_path_factory: pytest.TempPathFactory) -> media.SampleVideo:
    """Two scenes, six seconds, a tone for audio: every stage has something to do, quickly."""
    return media.make_sample_video(
        tmp_path_factory.mktemp("aws-media") / "small.mp4", scene_seconds=(3.0, 3.0), preset="ultrafast"
    )
