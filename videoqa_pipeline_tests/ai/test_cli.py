"""`videoqa transcribe / analyze-frame / embed` on generated media, offline."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from videoqa_pipeline.ai.audio import ffmpeg_exe
from videoqa_pipeline.cli import main
from videoqa_pipeline_tests.ai.conftest import text_frame_jpeg

OFFLINE_ENV = {"VIDEOQA_AI_PROVIDER": "local", "OPENAI_API_KEY": None, "OPENAI_BASE_URL": None}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env=OFFLINE_ENV)


def test_transcribe_a_video_file_as_json(runner: CliRunner, speech_wav: Path, tmp_path: Path) -> None:
    video = tmp_path / "talk.mp4"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=blue:s=320x240:d=9",
            "-i",
            str(speech_wav),
            "-shortest",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            str(video),
        ],
        check=True,
    )
    result = runner.invoke(main, ["transcribe", str(video), "--json", "--language", "en"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["language"] == "en"
    assert "searchable knowledge" in " ".join(s["text"] for s in payload["segments"]).lower()
    first = payload["segments"][0]
    assert 0 <= first["start"] < first["end"] and first["words"][0]["text"]


def test_transcribe_reports_missing_audio_in_one_line(runner: CliRunner, tmp_path: Path) -> None:
    video = tmp_path / "silent.mp4"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=d=1:s=160x120",
            "-pix_fmt",
            "yuv420p",
            str(video),
        ],
        check=True,
    )
    result = runner.invoke(main, ["transcribe", str(video)])
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "no audio stream" in result.stderr
    assert "Traceback" not in result.output


def test_analyze_frame_prints_the_text(runner: CliRunner, tmp_path: Path) -> None:
    image = tmp_path / "frame.jpg"
    image.write_bytes(text_frame_jpeg(["HELLO 42"]))
    result = runner.invoke(main, ["analyze-frame", str(image), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert "42" in payload["ocr_text"] and "text" in payload["labels"]


def test_embed_prints_similarities_and_vectors(runner: CliRunner) -> None:
    result = runner.invoke(main, ["embed", "a red car", "a crimson automobile", "tax law"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert float(rows[0][2]) > float(rows[0][3])  # car ~ automobile more than car ~ tax law
    as_json = json.loads(runner.invoke(main, ["embed", "one", "--json"]).stdout)
    assert as_json["dimension"] == 384 and len(as_json["vectors"][0]) == 384


def test_bad_settings_are_one_readable_line() -> None:
    result = CliRunner(env={"VIDEOQA_AI_PROVIDER": "bogus"}).invoke(main, ["embed", "x"])
    assert result.exit_code == 1
    assert "bogus" in result.stderr and "Traceback" not in result.output


def test_settings_of_other_protocols_do_not_block_a_command() -> None:
    result = CliRunner(env={"VIDEOQA_AI_PROVIDER": "local", "VIDEOQA_VISION_PROVIDER": "bogus"}).invoke(
        main, ["embed", "x"]
    )
    assert result.exit_code == 0, result.output
