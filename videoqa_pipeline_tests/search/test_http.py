"""GET /search, POST /ask, /media with Range, and the search page in a real headless Chromium."""

from __future__ import annotations

import contextlib
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from videoqa_pipeline import aws, media
from videoqa_pipeline.service.app import ServiceOptions, create_app
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage.blobs import BlobStore, LocalBlobStore
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.s3_blobs import S3BlobStore
from videoqa_pipeline_tests.aws.conftest import moto_endpoint  # noqa: F401 - fixture
from videoqa_pipeline_tests.search.corpus import FACTS, SCENE_SECONDS, Corpus
from videoqa_pipeline_tests.service.conftest import serve

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A 15 s H.264 video of three 5 s scenes and a JPEG keyframe of each, made with ffmpeg."""
    folder = tmp_path_factory.mktemp("search-media")
    sample = media.make_sample_video(
        folder / "clip.mp4",
        scene_seconds=(SCENE_SECONDS,) * 3,
        audio=False,
        scene_texts=["FERRY", "BOATS", "LIGHTHOUSE"],
        preset="ultrafast",
    )
    frames = []
    for scene in range(3):
        frame = folder / f"scene-{scene:04d}.jpg"
        subprocess.run(
            [
                media.ffmpeg_executable(),
                "-v",
                "error",
                "-y",
                "-ss",
                str(scene * SCENE_SECONDS + 2.0),
                "-i",
                str(sample.path),
                "-frames:v",
                "1",
                "-vf",
                "scale=320:-2",
                str(frame),
            ],
            check=True,
        )
        frames.append(frame)
    return sample.path, frames


@contextlib.contextmanager
def _service_with_media(
    database: Database,
    corpus: Corpus,
    clip: tuple[Path, list[Path]],
    store: BlobStore,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """The service (operations routes, search included) on uvicorn, the clip's media in ``store``."""
    monkeypatch.setenv("VIDEOQA_AI_PROVIDER", "local")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("VIDEOQA_ASK_PROVIDER", raising=False)
    video, frames = clip
    for video_id in corpus.video_ids.values():
        store.put_file(f"{video_id}/normalized/video.mp4", video)
        for scene, frame in enumerate(frames):
            store.put_file(f"{video_id}/keyframes/scene-{scene:04d}.jpg", frame)
    settings = Settings.from_env(
        {"VIDEOQA_HOME": str(home), "WORKER_DEV_HTTP": "true", "LOG_LEVEL": "WARNING"}
    )
    app = create_app(settings, ServiceOptions(routes=("operations",)), database=database, blob_store=store)
    with serve(app) as url:
        yield url


@pytest.fixture()
def base_url(
    database: Database,
    corpus: Corpus,
    clip: tuple[Path, list[Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """The service with media in a local blob store."""
    store = LocalBlobStore(tmp_path / "blobs")
    with _service_with_media(database, corpus, clip, store, tmp_path, monkeypatch) as url:
        yield url


@pytest.fixture()
def s3_base_url(
    database: Database,
    corpus: Corpus,
    clip: tuple[Path, list[Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[str]:
    """The service with media on S3 (a moto server over HTTP)."""
    endpoint = request.getfixturevalue("moto_endpoint")
    config = aws.AwsConfig(region="us-east-1", endpoint_url=endpoint, max_attempts=2)
    bucket = f"videoqa-media-{uuid.uuid4().hex[:12]}"
    aws.client("s3", config).create_bucket(Bucket=bucket)
    store = S3BlobStore(bucket, config=config)
    with _service_with_media(database, corpus, clip, store, tmp_path, monkeypatch) as url:
        yield url


def test_search_endpoint_returns_moments_with_media_urls(base_url: str, corpus: Corpus) -> None:
    harbor = corpus.video_ids["harbor"]
    response = httpx.get(
        f"{base_url}/search",
        params={"q": "When was the lighthouse painted?", "video": list(corpus.video_ids.values()), "k": 2},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"] == "When was the lighthouse painted?" and body["mode"] == "hybrid"
    best = body["results"][0]
    assert (best["video_id"], best["start"], best["end"]) == (harbor, 10.0, 15.0)
    assert best["text"] == FACTS["harbor"][2][0]
    assert best["keyframe_url"] == f"/media/{harbor}/keyframes/scene-0002.jpg"
    assert best["video_url"] == f"/media/{harbor}/normalized/video.mp4"
    # A relevance a person can read (0-1, the cosine to the query) next to the raw fusion score.
    assert 0.3 <= best["relevance"] <= 1.0 and best["relevance"] == round(best["similarity"], 3)
    assert 0.0 < best["score"] < 0.05
    assert len(body["results"]) == 2
    only = httpx.get(f"{base_url}/search", params={"q": "dough", "video": harbor}, timeout=60).json()
    assert {r["video_id"] for r in only["results"]} == {harbor}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"q": ""}, "empty"),
        ({"q": "ferry", "k": "0"}, "out of range"),
        ({"q": "ferry", "k": "many"}, "not an integer"),
        ({"q": "ferry", "start": "soon"}, "not a number"),
        ({"q": "ferry", "start": "9", "end": "1"}, "ends before it starts"),
        ({"q": "ferry", "mode": "psychic"}, "mode"),
    ],
)
def test_search_endpoint_refuses_bad_queries(base_url: str, params: dict[str, str], message: str) -> None:
    response = httpx.get(f"{base_url}/search", params=params, timeout=60)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_query" and message in response.json()["detail"]


def test_ask_endpoint_answers_with_citations(base_url: str, corpus: Corpus) -> None:
    space = corpus.video_ids["space"]
    response = httpx.post(
        f"{base_url}/ask",
        json={
            "question": "Where did the Mars vehicle touch down?",
            "video_ids": list(corpus.video_ids.values()),
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["found"] and body["method"] == "extractive"
    assert f"Jezero crater in February 2021. [{space} @ 00:00]" in body["answer"]
    assert body["citations"][0]["video_id"] == space and body["citations"][0]["start"] == 0.0
    assert body["moments"][0]["video_url"] == f"/media/{space}/normalized/video.mp4"
    missing = httpx.post(
        f"{base_url}/ask",
        json={
            "question": "Which football team won the championship final last season?",
            "video_ids": [space],
        },
        timeout=60,
    ).json()
    assert missing["found"] is False and missing["answer"] == "not found in the videos"
    assert httpx.post(f"{base_url}/ask", content=b"nope", timeout=10).status_code == 400
    assert httpx.post(f"{base_url}/ask", json={"question": 3}, timeout=10).status_code == 400


@pytest.mark.parametrize("store", ["local", "s3"])
def test_media_serves_keyframes_and_video_ranges_only(
    request: pytest.FixtureRequest, store: str, corpus: Corpus, clip: tuple[Path, list[Path]]
) -> None:
    base_url = request.getfixturevalue("base_url" if store == "local" else "s3_base_url")
    harbor = corpus.video_ids["harbor"]
    video, frames = clip
    size = video.stat().st_size
    picture = httpx.get(f"{base_url}/media/{harbor}/keyframes/scene-0001.jpg", timeout=10)
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
    assert picture.content == frames[1].read_bytes()
    video_url = f"{base_url}/media/{harbor}/normalized/video.mp4"
    part = httpx.get(video_url, headers={"Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{size}"
    assert part.content == video.read_bytes()[100:200]
    tail = httpx.get(video_url, headers={"Range": "bytes=-50"}, timeout=10)
    assert tail.status_code == 206 and tail.content == video.read_bytes()[-50:]
    open_ended = httpx.get(video_url, headers={"Range": f"bytes={size - 10}-"}, timeout=10)
    assert open_ended.status_code == 206 and open_ended.content == video.read_bytes()[-10:]
    assert httpx.get(video_url, headers={"Range": f"bytes={size}-"}, timeout=10).status_code == 416
    whole = httpx.get(video_url, timeout=10)
    assert whole.status_code == 200 and whole.content == video.read_bytes()
    assert httpx.get(f"{base_url}/media/{harbor}/source/original.mp4", timeout=10).status_code == 404
    assert httpx.get(f"{base_url}/media/{harbor}/keyframes/none.jpg", timeout=10).status_code == 404
    assert httpx.get(f"{base_url}/media/{harbor}/keyframes/..%2F..%2Fsecret", timeout=10).status_code in (
        400,
        404,
    )
    document = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
    assert {"/search", "/ask", "/media/{key}"} <= set(document["paths"])


def _browser_or_skip() -> Any:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium to run the search page test")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is missing (pip install playwright; the system chromium is used)")
    return sync_playwright


@pytest.mark.parametrize("backend", ["embedded"])
def test_search_page_plays_the_clicked_moment(base_url: str, corpus: Corpus) -> None:
    sync_playwright = _browser_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    harbor = corpus.video_ids["harbor"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(30_000)
            page.goto(base_url + "/", wait_until="load")
            page.fill("#video-filter", harbor)
            page.fill("#query", "When was the lighthouse painted?")
            page.click("#search-button")
            first = page.locator("#results .result").first
            first.wait_for(state="visible")
            assert first.get_attribute("data-video-id") == harbor
            assert first.get_attribute("data-start") == "10"
            thumbnail = first.locator("img")
            page.wait_for_function(
                "img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle()
            )
            assert thumbnail.get_attribute("src") == f"/media/{harbor}/keyframes/scene-0002.jpg"
            assert re.fullmatch(r"relevance \d{1,3}%", first.locator(".score").text_content() or "")
            first.click()
            page.wait_for_function(
                "() => { const v = document.getElementById('player');"
                " return v.readyState >= 1 && !v.seeking && v.dataset.momentStart === '10'; }"
            )
            current = page.evaluate("document.getElementById('player').currentTime")
            assert current == pytest.approx(10.0, abs=0.05)
            assert page.text_content("#now") == f"{harbor} @ 00:10-00:15"
            page.screenshot(path=str(ARTIFACTS / "search-page.png"))
        finally:
            browser.close()
