"""LocalBlobStore: atomic, streaming, confined to its root."""

from __future__ import annotations

import errno
import os
import tracemalloc
from pathlib import Path
from typing import IO

import pytest

from videoqa_pipeline.storage import blobs
from videoqa_pipeline.storage.blobs import TEMPORARY_PREFIX, BlobStore, LocalBlobStore, blob_key
from videoqa_pipeline.storage.errors import BlobNotFoundError, InvalidBlobKeyError


@pytest.fixture()
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def _files_under(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


def test_store_satisfies_the_protocol(store: LocalBlobStore) -> None:
    assert isinstance(store, BlobStore)


def test_put_and_read_back(store: LocalBlobStore, tmp_path: Path) -> None:
    source = tmp_path / "clip.bin"
    source.write_bytes(os.urandom(3 * blobs.COPY_BUFFER_BYTES + 17))
    key = blob_key("vid1", "source", "original.mp4")

    uri = store.put_file(key, source)

    assert uri == (store.root / key).as_uri() == store.uri(key)
    assert store.exists(key) and store.size(key) == source.stat().st_size
    assert store.get_bytes(key) == source.read_bytes()
    with store.local_path(key) as path:
        assert path.read_bytes() == source.read_bytes()
    assert store.put_bytes("vid1/keyframes/scene_0000.jpg", b"\xff\xd8jpeg").startswith("file://")
    assert store.get_bytes("vid1/keyframes/scene_0000.jpg") == b"\xff\xd8jpeg"
    assert source.exists(), "put_file must copy, not move, the source"


def test_overwrite_replaces_content(store: LocalBlobStore) -> None:
    store.put_bytes("v/s/a.txt", b"first")
    store.put_bytes("v/s/a.txt", b"second")

    assert store.get_bytes("v/s/a.txt") == b"second"
    assert _files_under(store.root) == ["v/s/a.txt"]


def test_failed_write_leaves_no_partial_blob(
    store: LocalBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(b"x" * (4 * blobs.COPY_BUFFER_BYTES))
    store.put_bytes("v/s/existing.bin", b"old content")
    seen_during_write: list[bytes] = []

    def copy_half_then_fail(reader: IO[bytes], writer: IO[bytes]) -> None:
        writer.write(reader.read(2 * blobs.COPY_BUFFER_BYTES))
        writer.flush()
        seen_during_write.append(store.get_bytes("v/s/existing.bin"))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(blobs, "_copy_stream", copy_half_then_fail)  # an I/O error mid-copy

    with pytest.raises(OSError, match="No space left"):
        store.put_file("v/s/existing.bin", source)
    with pytest.raises(OSError, match="No space left"):
        store.put_file("v/s/new.bin", source)

    assert seen_during_write == [b"old content", b"old content"]  # readers never see a partial write
    assert store.get_bytes("v/s/existing.bin") == b"old content"
    assert not store.exists("v/s/new.bin")
    assert _files_under(store.root) == ["v/s/existing.bin"], "temporary files must be cleaned up"


def test_put_file_streams_instead_of_reading_the_whole_file(store: LocalBlobStore, tmp_path: Path) -> None:
    source = tmp_path / "large.bin"
    size = 48 * 1024 * 1024
    with open(source, "wb") as handle:
        for _ in range(size // blobs.COPY_BUFFER_BYTES):
            handle.write(os.urandom(1024) * 1024)

    tracemalloc.start()
    try:
        store.put_file("v/source/large.bin", source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert store.size("v/source/large.bin") == size
    assert peak < 8 * 1024 * 1024, f"put_file held {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB file"


def test_put_file_falls_back_to_a_buffered_copy(
    store: LocalBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where sendfile cannot copy between regular files (e.g. macOS), a chunked copy is used."""
    source = tmp_path / "clip.bin"
    source.write_bytes(os.urandom(2 * blobs.COPY_BUFFER_BYTES + 5))

    def refuse(*args: object) -> int:
        raise OSError(errno.ENOTSOCK, "Socket operation on non-socket")

    monkeypatch.setattr(os, "sendfile", refuse)
    tracemalloc.start()
    try:
        store.put_file("v/source/clip.bin", source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert store.get_bytes("v/source/clip.bin") == source.read_bytes()
    assert peak < 4 * blobs.COPY_BUFFER_BYTES


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../outside",
        "v/../../outside",
        "v//a",
        "v/./a",
        "v\\a",
        "v/a/",
        "v/.",
        "a\x00b",
        f"v/{TEMPORARY_PREFIX}x",
    ],
)
def test_invalid_keys_are_rejected(store: LocalBlobStore, key: str) -> None:
    with pytest.raises(InvalidBlobKeyError):
        store.put_bytes(key, b"data")
    assert not store.root.exists() or _files_under(store.root) == []


@pytest.mark.parametrize(
    ("video_id", "stage", "name"), [("a/b", "s", "n"), ("v", "", "n"), ("v", "s", ".."), ("v", "s", "x/y")]
)
def test_blob_key_rejects_unsafe_parts(video_id: str, stage: str, name: str) -> None:
    with pytest.raises(InvalidBlobKeyError):
        blob_key(video_id, stage, name)


def test_symlink_inside_root_cannot_escape(store: LocalBlobStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store.root.mkdir(parents=True)
    (store.root / "link").symlink_to(outside, target_is_directory=True)

    with pytest.raises(InvalidBlobKeyError, match="outside"):
        store.put_bytes("link/evil.txt", b"data")
    assert list(outside.iterdir()) == []


def test_missing_blob_errors_name_the_key(store: LocalBlobStore) -> None:
    assert not store.exists("v/s/missing.jpg")
    with pytest.raises(BlobNotFoundError, match=r"missing\.jpg"):
        store.get_bytes("v/s/missing.jpg")
    with pytest.raises(BlobNotFoundError):
        store.size("v/s/missing.jpg")
    with pytest.raises(BlobNotFoundError), store.local_path("v/s/missing.jpg"):
        pass


def test_list_and_delete_prefix(store: LocalBlobStore) -> None:
    for key in ["vid1/source/a.mp4", "vid1/keyframes/0.jpg", "vid1/keyframes/1.jpg", "vid10/source/b.mp4"]:
        store.put_bytes(key, key.encode())
    (store.root / "vid1" / "keyframes" / f"{TEMPORARY_PREFIX}inflight").write_bytes(b"partial")

    assert list(store.list_keys("vid1/")) == [
        "vid1/keyframes/0.jpg",
        "vid1/keyframes/1.jpg",
        "vid1/source/a.mp4",
    ]
    assert list(store.list_keys("vid1/key")) == ["vid1/keyframes/0.jpg", "vid1/keyframes/1.jpg"]
    assert store.delete_prefix("vid1/keyframes/") == 2
    assert store.delete_prefix("vid1/") == 1

    assert list(store.list_keys()) == ["vid10/source/b.mp4"]
    assert not (store.root / "vid1" / "source").exists(), "emptied directories are removed"
    assert store.delete_prefix("nothing/") == 0
    with pytest.raises(InvalidBlobKeyError):
        store.delete_prefix("")
    with pytest.raises(InvalidBlobKeyError):
        store.delete_prefix("../")
