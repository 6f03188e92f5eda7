"""`videoqa probe|scenes|keyframes`: in-process with CliRunner, and once as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from videoqa_pipeline.cli import main
from videoqa_pipeline.media import SampleVideo


def test_probe_json(rotated_mp4: Path) -> None:
    result = CliRunner().invoke(main, ["probe", str(rotated_mp4), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["video"]["width"] == 360 and data["video"]["height"] == 640
    assert data["video"]["rotation"] in (90, 270)
    assert data["audio"] is None
    assert {"duration", "container", "size"} <= set(data)


def test_probe_text(good_mp4: Path) -> None:
    result = CliRunner().invoke(main, ["probe", str(good_mp4)])
    assert result.exit_code == 0
    assert "h264 320x240" in result.output
    assert "aac 44100 Hz" in result.output


def test_scenes_json(cut_video: SampleVideo) -> None:
    result = CliRunner().invoke(main, ["scenes", str(cut_video.path), "--max-frames", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data["scenes"]) == len(cut_video.cut_times) + 1
    assert data["selected"] == [0, 3, 6]
    first = data["scenes"][0]
    assert set(first) == {"index", "start", "end", "start_frame", "end_frame"}
    assert first["start"] == 0.0


def test_scenes_table_with_content_detector(cut_video: SampleVideo) -> None:
    result = CliRunner().invoke(main, ["scenes", str(cut_video.path), "--detector", "content"])
    assert result.exit_code == 0
    assert f"{len(cut_video.cut_times) + 1} scene(s)" in result.output


def test_keyframes_writes_jpegs(cut_video: SampleVideo, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["keyframes", str(cut_video.path), str(tmp_path / "out"), "--max-frames", "4"]
    )
    assert result.exit_code == 0, result.output
    jpegs = sorted((tmp_path / "out").glob("*.jpg"))
    assert len(jpegs) == 4
    assert all(p.read_bytes()[:2] == b"\xff\xd8" for p in jpegs)


def test_errors_are_one_line_without_traceback(bad_inputs: dict[str, Path]) -> None:
    for case in ("missing", "text", "truncated", "audio_only"):
        result = CliRunner().invoke(main, ["scenes", str(bad_inputs[case])])
        assert result.exit_code != 0
        assert "Traceback" not in result.output
        assert str(bad_inputs[case]) in result.output


def test_real_subprocess(bad_inputs: dict[str, Path], good_mp4: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "videoqa_pipeline.cli", "probe", str(good_mp4), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["video"]["codec"] == "h264"

    bad = subprocess.run(
        [sys.executable, "-m", "videoqa_pipeline.cli", "probe", str(bad_inputs["random"])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode != 0
    assert bad.stdout == ""
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, bad.stderr
    assert str(bad_inputs["random"]) in lines[0] and "Traceback" not in bad.stderr
