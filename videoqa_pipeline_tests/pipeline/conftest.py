"""Fixtures for pipeline tests: a private VIDEOQA_HOME (embedded PostgreSQL, local blobs) and media made with ffmpeg."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from videoqa_pipeline import media
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage.database import DatabaseSettings, get_database
from videoqa_pipeline.storage.embedded import release_embedded_database

SPOKEN = (
    "The red lighthouse opens at nine in the morning. "
    "Visitors can climb three hundred steps to the top. "
    "The museum shop sells maps and postcards."
)


@pytest.fixture(scope="session")
def pipeline_home() -> Iterator[Path]:
    """Outside pytest's temp root: a concurrent pytest session resets that root to mode 0700,
    which the embedded server (running as its own user when we are root) then cannot enter."""
    home = Path(tempfile.mkdtemp(prefix="videoqa-test-home-"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(pipeline_home: Path) -> Iterator[Settings]:
    """Embedded database and local blobs in a temporary home; offline models.

    The embedded server is stopped before the home is removed, never the other way round.
    """
    settings = Settings.from_env({"VIDEOQA_HOME": str(pipeline_home), "LOG_LEVEL": "WARNING"}).validate()
    yield settings
    database_settings = DatabaseSettings(
        url=None,
        home=settings.home,
        pool_size=settings.postgres_pool_size,
        timeout_seconds=settings.postgres_timeout,
    )
    get_database(database_settings).close()
    release_embedded_database(settings.home)


@pytest.fixture()
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def talk_video(media_dir: Path) -> media.SampleVideo:
    """About 25 s, five visually distinct scenes, real speech when espeak-ng is installed."""
    if shutil.which("espeak-ng") is None:
        pytest.skip(
            "espeak-ng is not installed: cannot make a video with real speech (apt-get install espeak-ng)"
        )
    return media.make_sample_video(
        media_dir / "talk.mp4", scene_seconds=(5.0, 5.0, 5.0, 5.0, 5.0), speech=SPOKEN
    )


@pytest.fixture(scope="session")
def silent_video(media_dir: Path) -> media.SampleVideo:
    return media.make_sample_video(media_dir / "silent.mp4", scene_seconds=(3.0, 3.0), audio=False)


def _ffmpeg(*args: str) -> None:
    subprocess.run([media.ffmpeg_executable(), "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def bad_inputs(media_dir: Path, talk_video: media.SampleVideo) -> dict[str, Path]:
    """Inputs a user will eventually submit by mistake."""
    zero = media_dir / "zero.mp4"
    zero.write_bytes(b"")
    text = media_dir / "notes.mp4"
    text.write_text("this is not a video, just some notes\n" * 20)
    corrupt = media_dir / "corrupt.mp4"
    corrupt.write_bytes(bytes(range(256)) * 400)
    truncated = media_dir / "truncated.mp4"
    with talk_video.path.open("rb") as source:
        truncated.write_bytes(source.read(talk_video.path.stat().st_size // 3))
    audio_only = media_dir / "voice.m4a"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-c:a", "aac", str(audio_only))
    return {"zero": zero, "text": text, "corrupt": corrupt, "truncated": truncated, "audio_only": audio_only}
