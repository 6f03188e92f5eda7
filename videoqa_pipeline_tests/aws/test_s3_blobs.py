"""S3BlobStore against moto over HTTP: the BlobStore contract, multipart, errors a user can act on."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from videoqa_pipeline import aws
from videoqa_pipeline.storage.blobs import BlobStore
from videoqa_pipeline.storage.errors import BlobNotFoundError, InvalidBlobKeyError
from videoqa_pipeline.storage.s3_blobs import PART_BYTES, S3BlobStore, S3StorageError, normalize_prefix


@pytest.fixture()
def store(bucket: str, aws_config: aws.AwsConfig) -> S3BlobStore:
    return S3BlobStore(bucket, "video-processing", aws_config)


def test_implements_the_blob_store_protocol(store: S3BlobStore) -> None:
    assert isinstance(store, BlobStore)


def test_prefix_is_normalized() -> None:
    assert normalize_prefix("video-processing") == "video-processing/"
    assert normalize_prefix("/a/b/") == "a/b/"
    assert normalize_prefix("") == normalize_prefix("/") == ""


def test_bytes_round_trip_under_the_prefix(store: S3BlobStore, s3: Any, bucket: str) -> None:
    uri = store.put_bytes("vid1/keyframes/scene_0001.jpg", b"\xff\xd8jpeg")
    assert uri == f"s3://{bucket}/video-processing/vid1/keyframes/scene_0001.jpg"
    head = s3.head_object(Bucket=bucket, Key="video-processing/vid1/keyframes/scene_0001.jpg")
    assert head["ContentLength"] == 6
    assert store.get_bytes("vid1/keyframes/scene_0001.jpg") == b"\xff\xd8jpeg"
    assert store.exists("vid1/keyframes/scene_0001.jpg")
    assert store.size("vid1/keyframes/scene_0001.jpg") == 6
    assert not store.exists("vid1/keyframes/scene_0002.jpg")


def test_multipart_file_round_trip(store: S3BlobStore, s3: Any, bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "video.mp4"
    payload = os.urandom(PART_BYTES * 2 + 12345)  # three parts
    source.write_bytes(payload)
    store.put_file("vid1/source/original.mp4", source)
    head = s3.head_object(Bucket=bucket, Key="video-processing/vid1/source/original.mp4")
    assert head["ETag"].strip('"').endswith("-3"), "expected a 3-part multipart upload"
    with store.local_path("vid1/source/original.mp4") as local:
        assert local.suffix == ".mp4"
        assert local.read_bytes() == payload
        downloaded = local
    assert not downloaded.exists(), "the temporary download is removed on exit"


def test_list_and_delete_prefix(store: S3BlobStore, s3: Any, bucket: str) -> None:
    for key in ("vid1/a/x", "vid1/b/y", "vid10/a/z", "vid2/a/w"):
        store.put_bytes(key, key.encode())
    s3.put_object(Bucket=bucket, Key="elsewhere/vid1/a/x", Body=b"not ours")
    assert list(store.list_keys("vid1/")) == ["vid1/a/x", "vid1/b/y"]
    assert list(store.list_keys("vid1")) == ["vid1/a/x", "vid1/b/y", "vid10/a/z"]
    assert store.delete_prefix("vid1/") == 2
    assert list(store.list_keys()) == ["vid10/a/z", "vid2/a/w"]
    assert s3.get_object(Bucket=bucket, Key="elsewhere/vid1/a/x")["Body"].read() == b"not ours"
    with pytest.raises(InvalidBlobKeyError):
        store.delete_prefix("")


def test_missing_blob_and_bad_keys(store: S3BlobStore) -> None:
    with pytest.raises(BlobNotFoundError, match="re-materialize"):
        store.get_bytes("vid1/none/missing.bin")
    with pytest.raises(BlobNotFoundError), store.local_path("vid1/none/missing.bin"):
        pass
    with pytest.raises(BlobNotFoundError):
        store.size("vid1/none/missing.bin")
    for key in ("/abs", "a/../b", ""):
        with pytest.raises(InvalidBlobKeyError):
            store.put_bytes(key, b"x")


def test_missing_bucket_is_a_permanent_readable_error(aws_config: aws.AwsConfig, tmp_path: Path) -> None:
    store = S3BlobStore("videoqa-no-such-bucket", "p/", aws_config)
    source = tmp_path / "f.bin"
    source.write_bytes(b"x" * 10)
    with pytest.raises(S3StorageError) as caught:
        store.put_file("vid1/source/f.bin", source)
    assert caught.value.permanent
    message = str(caught.value)
    assert "s3://videoqa-no-such-bucket/p/vid1/source/f.bin" in message
    assert "NoSuchBucket" in message and "AWS_S3_BUCKET" in message
    with pytest.raises(S3StorageError, match="NoSuchBucket") as listed:
        list(store.list_keys("vid1/"))
    assert listed.value.permanent


def test_unreachable_endpoint_is_transient(tmp_path: Path) -> None:
    config = aws.AwsConfig(endpoint_url="http://127.0.0.1:9", max_attempts=1, connect_timeout=1)
    store = S3BlobStore("bucket", "p/", config)
    with pytest.raises(S3StorageError) as caught:
        store.put_bytes("vid1/a/b", b"x")
    assert not caught.value.permanent
    assert "127.0.0.1:9" in str(caught.value)


def test_empty_bucket_name_is_refused() -> None:
    with pytest.raises(S3StorageError, match="AWS_S3_BUCKET"):
        S3BlobStore("", "p/")


_ROUND_TRIP = r"""
import hashlib, json, os, sys, time
from pathlib import Path
from videoqa_pipeline import aws
from videoqa_pipeline.storage.s3_blobs import S3BlobStore

path = Path(sys.argv[1]); bucket = sys.argv[2]
config = aws.AwsConfig(region="us-east-1", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
store = S3BlobStore(bucket, "big/", config)

def status_mb(field):
    # VmHWM belongs to this process image; ru_maxrss would carry the forking parent's peak.
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(field)

baseline = status_mb("VmHWM")
started = time.perf_counter()
store.put_file("vid/source/big.bin", path)
uploaded = time.perf_counter()
digest = hashlib.sha256()
with store.local_path("vid/source/big.bin") as local:
    size = local.stat().st_size
    with local.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
done = time.perf_counter()
print(json.dumps({"size": size, "sha256": digest.hexdigest(), "baseline_mb": baseline,
    "peak_mb": status_mb("VmHWM"),
    "upload_s": uploaded - started, "download_s": done - uploaded}))
"""


@pytest.mark.parametrize(
    "mebibytes",
    [
        pytest.param(256, id="256MiB"),
        # About a minute on two cores (moto is slow at serving ranges): run with -m reliability.
        pytest.param(1024, id="1GiB", marks=pytest.mark.reliability),
    ],
)
def test_large_file_round_trip_with_bounded_memory(bucket: str, tmp_path: Path, mebibytes: int) -> None:
    """A large file through put_file/local_path in a fresh process: peak RSS stays far below its size."""
    path = tmp_path / "big.bin"
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with path.open("wb") as handle:
        for index in range(mebibytes):
            chunk = index.to_bytes(8, "little") + block[8:]  # distinct blocks, generated quickly
            digest.update(chunk)
            handle.write(chunk)
    result = subprocess.run(
        [sys.executable, "-c", _ROUND_TRIP, str(path), bucket],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["size"] == mebibytes << 20
    assert report["sha256"] == digest.hexdigest()
    # The imports alone (pandas, psycopg, boto3) take ~130 MB; transfers add a few parts' worth.
    assert report["peak_mb"] < 200, report
    assert report["peak_mb"] - report["baseline_mb"] < 100, report
