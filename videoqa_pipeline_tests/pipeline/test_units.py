"""Pure helpers of the pipeline: video IDs, chunking for the index, source fetching, UI formatting."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from videoqa_pipeline.fetch import SourceUnavailableError, fetched_source, file_sha256, local_path_of
from videoqa_pipeline.media import Keyframe
from videoqa_pipeline.steps.indexing import TimedText, frame_text, transcript_chunks
from videoqa_pipeline.steps.previews import keyframe_gallery, preview_timestamp, thumbnail_data_uri
from videoqa_pipeline.video_ids import InvalidVideoIdError, validate_video_id, video_id_from_uri


def test_video_ids_are_safe_stable_and_distinct() -> None:
    first = video_id_from_uri("/data/My Holiday, 2024 (final).MP4")
    assert first == video_id_from_uri("/data/My Holiday, 2024 (final).MP4")
    assert first.startswith("my-holiday-2024-final-")
    assert validate_video_id(first) == first
    assert video_id_from_uri("/a/video.mp4") != video_id_from_uri("/b/video.mp4")
    assert video_id_from_uri("s3://bucket/uploads/clip%20one.mov").startswith("clip-one-")
    assert video_id_from_uri("https://example.test/").startswith("video-")


@pytest.mark.parametrize(
    "bad", ["", "has space", "a,b", '{"json": 1}', "../up", "-leading", "x" * 129, "ünï"]
)
def test_unsafe_video_ids_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidVideoIdError, match="not allowed"):
        validate_video_id(bad)


def test_transcript_chunks_follow_scene_boundaries_and_cap_length() -> None:
    segments = [
        TimedText(0.0, 2.0, "hello there"),
        TimedText(2.0, 4.0, "still the first scene"),
        TimedText(5.5, 7.0, "second scene words"),
        TimedText(7.0, 8.0, "   "),
        TimedText(8.0, 30.0, " ".join(["word"] * 10)),
    ]
    chunks = transcript_chunks(segments, [(0.0, 5.0), (5.0, 10.0)], max_words=8)
    assert [(c.start, c.end, c.text) for c in chunks] == [
        (0.0, 4.0, "hello there still the first scene"),
        (5.5, 7.0, "second scene words"),
        (8.0, 30.0, " ".join(["word"] * 10)),  # one segment longer than the cap stays whole
    ]
    assert all(c.kind == "transcript" for c in chunks)
    assert transcript_chunks([], [(0.0, 1.0)]) == []
    assert [c.text for c in transcript_chunks(segments[:2], [])] == ["hello there still the first scene"]


def test_frame_text_reads_like_a_sentence() -> None:
    assert frame_text("A red door", ["door", "red"], "OPEN\n 24/7") == (
        "A red door. Labels: door, red. Text on screen: OPEN 24/7"
    )
    assert frame_text(None, [], "  ") == ""


def test_local_sources_are_used_in_place(tmp_path: Path) -> None:
    video = tmp_path / "clip one.mp4"
    video.write_bytes(b"abc")
    assert local_path_of(str(video)) == video
    assert local_path_of(video.as_uri()) == video
    assert local_path_of("https://example.test/x.mp4") is None
    with fetched_source(video.as_uri()) as path:
        assert path == video
    assert file_sha256(video) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/video.mp4":
            body = b"\x00" * 300_000
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/busy.mp4":
            self.send_error(503, "try later")
        else:
            self.send_error(404, "no such video")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def http_base(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # The server is on loopback, which sources may only name when private networks are allowed.
    monkeypatch.setenv("VIDEOQA_ALLOW_PRIVATE_NETWORK_SOURCES", "true")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_sources_stream_to_a_temporary_file(http_base: str) -> None:
    with fetched_source(f"{http_base}/video.mp4") as path:
        assert path.suffix == ".mp4" and path.stat().st_size == 300_000
        kept = path
    assert not kept.exists(), "temporary copies are removed"


def test_http_errors_say_whether_a_retry_can_help(http_base: str) -> None:
    with (
        pytest.raises(SourceUnavailableError, match="HTTP 404") as missing,
        fetched_source(f"{http_base}/gone.mp4"),
    ):
        pass
    assert missing.value.permanent
    with (
        pytest.raises(SourceUnavailableError, match="HTTP 503") as busy,
        fetched_source(f"{http_base}/busy.mp4"),
    ):
        pass
    assert not busy.value.permanent
    with (
        pytest.raises(SourceUnavailableError, match="unsupported scheme") as ftp,
        fetched_source("ftp://example.test/a.mp4"),
    ):
        pass
    assert ftp.value.permanent


def test_timestamps_and_thumbnails_for_the_ui() -> None:
    assert preview_timestamp(75.44) == "01:15.4"
    assert preview_timestamp(0) == "00:00.0"
    image = np.zeros((360, 640, 3), dtype=np.uint8)
    image[:, :320] = (0, 0, 255)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    jpeg = encoded.tobytes()
    uri = thumbnail_data_uri(jpeg)
    assert uri.startswith("data:image/jpeg;base64,")
    frames = [
        Keyframe(timestamp=float(i), jpeg=jpeg, width=640, height=360, sharpness=None) for i in range(20)
    ]
    gallery = keyframe_gallery(frames, list(range(20)))
    assert gallery.startswith("8 of 20 keyframes")
    assert gallery.count("data:image/jpeg;base64,") == 8
    assert "scene 0 at 00:00.0" in gallery and "scene 19 at 00:19.0" in gallery
    assert keyframe_gallery([], []) == "(no keyframes)"
