"""Media generated once per test session with the same ffmpeg the library uses."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from videoqa_pipeline.media import SampleVideo, ffmpeg_executable, make_sample_video


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; fail the test with its stderr when it fails."""
    command = [ffmpeg_executable(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"fixture ffmpeg failed: {' '.join(command)}\n{result.stderr}")


def has_encoder(name: str) -> bool:
    result = subprocess.run(
        [ffmpeg_executable(), "-hide_banner", "-encoders"], capture_output=True, text=True, check=False
    )
    return any(line.split()[1:2] == [name] for line in result.stdout.splitlines() if line.strip())


def lavfi_video(
    out: Path, *extra: str, source: str = "testsrc2=s=320x240:r=25:d=2", audio: bool = True
) -> Path:
    inputs: list[str] = ["-f", "lavfi", "-i", source]
    if audio:
        inputs += ["-f", "lavfi", "-i", "sine=frequency=300:sample_rate=44100:duration=2", "-shortest"]
    ffmpeg(*inputs, *extra, str(out))
    return out


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def good_mp4(media_dir: Path) -> Path:
    return lavfi_video(
        media_dir / "good.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"
    )


@pytest.fixture(scope="session")
def cut_video(media_dir: Path) -> SampleVideo:
    """Seven scenes of uneven length with known cuts, real speech when espeak-ng exists."""
    return make_sample_video(
        media_dir / "cuts.mp4",
        scene_seconds=(2.0, 1.5, 3.0, 1.0, 2.5, 2.0, 1.8),
        speech="The red scene shows the number seven.",
        width=320,
        height=180,
        fps=25,
    )


@pytest.fixture(scope="session")
def bad_inputs(media_dir: Path) -> dict[str, Path]:
    """Files that must be rejected, keyed by case name."""
    cases: dict[str, Path] = {}
    cases["missing"] = media_dir / "does-not-exist.mp4"
    empty = media_dir / "empty.mp4"
    empty.write_bytes(b"")
    cases["empty"] = empty
    random_bytes = media_dir / "random.mp4"
    random_bytes.write_bytes(os.urandom(64 * 1024))
    cases["random"] = random_bytes
    text = media_dir / "notes.mp4"
    text.write_text("This is not a video, it is a text file.\n" * 20)
    cases["text"] = text
    png = media_dir / "picture.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x240", "-frames:v", "1", str(png))
    cases["png"] = png
    jpeg_as_mp4 = media_dir / "picture.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x240", "-frames:v", "1", "-f", "mjpeg", str(jpeg_as_mp4))
    cases["jpeg_named_mp4"] = jpeg_as_mp4
    audio_only = media_dir / "audio-only.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(audio_only))
    cases["audio_only"] = audio_only
    # A regular MP4 has its moov atom at the end: cutting it in half loses the index.
    full = lavfi_video(media_dir / "full.mp4", "-c:v", "libx264", "-preset", "ultrafast")
    cut = media_dir / "truncated.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    cases["truncated"] = cut
    # A faststart MP4 keeps its index but loses the data it points to.
    faststart = lavfi_video(
        media_dir / "faststart.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-movflags", "+faststart"
    )
    cut_fs = media_dir / "truncated-faststart.mp4"
    data = faststart.read_bytes()
    cut_fs.write_bytes(data[: len(data) // 2])
    cases["truncated_faststart"] = cut_fs
    return cases


def rotated_video(media_dir: Path, source: Path) -> Path:
    """A phone-style video: stored landscape, display matrix rotates it 90°."""
    out = media_dir / "rotated.mp4"
    attempts: Sequence[Sequence[str]] = (
        ("-display_rotation", "90", "-i", str(source), "-c", "copy"),
        ("-i", str(source), "-c", "copy", "-metadata:s:v:0", "rotate=270"),
    )
    errors = []
    for args in attempts:
        try:
            ffmpeg(*args, str(out))
            return out
        except AssertionError as exc:
            errors.append(str(exc))
    raise AssertionError("cannot make a rotated video with this ffmpeg:\n" + "\n".join(errors))


@pytest.fixture(scope="session")
def asymmetric_mp4(media_dir: Path) -> Path:
    """640x360, left half red, right half blue: makes the orientation of a frame checkable."""
    out = media_dir / "asymmetric.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=320x360:r=25:d=1[l];color=c=blue:s=320x360:r=25:d=1[r];[l][r]hstack",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        str(out),
    )
    return out


@pytest.fixture(scope="session")
def rotated_mp4(media_dir: Path, asymmetric_mp4: Path) -> Path:
    return rotated_video(media_dir, asymmetric_mp4)


@pytest.fixture(scope="session")
def variants(media_dir: Path) -> dict[str, Path]:
    """Readable inputs of many kinds, keyed by case name."""
    cases: dict[str, Path] = {}
    x264 = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
    cases["no_audio"] = lavfi_video(media_dir / "no-audio.mp4", *x264, audio=False)
    cases["one_frame"] = lavfi_video(
        media_dir / "one-frame.mp4", "-frames:v", "1", *x264, source="testsrc2=s=320x240:r=25", audio=False
    )
    cases["half_second"] = lavfi_video(
        media_dir / "half-second.mp4", *x264, source="testsrc2=s=320x240:r=25:d=0.5", audio=False
    )
    # Variable frame rate: drop two frames in three after the first second, keep timestamps.
    vfr = media_dir / "vfr.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=320x240:r=30:d=4",
        "-vf",
        "select='lt(n\\,30)+not(mod(n\\,3))'",
        "-fps_mode",
        "vfr",
        *x264,
        str(vfr),
    )
    cases["vfr"] = vfr
    cases["mkv"] = lavfi_video(media_dir / "clip.mkv", *x264)
    cases["mov"] = lavfi_video(media_dir / "clip.mov", *x264)
    # Odd dimensions need a chroma layout without subsampling.
    cases["odd"] = lavfi_video(
        media_dir / "odd.mkv",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv444p",
        source="testsrc=s=1001x555:r=25:d=1",
        audio=False,
    )
    cases["uhd"] = lavfi_video(
        media_dir / "uhd.mp4", *x264, source="testsrc2=s=3840x2160:r=25:d=0.4", audio=False
    )
    if has_encoder("libx265"):
        cases["hevc10"] = lavfi_video(
            media_dir / "hevc10.mp4",
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p10le",
            "-x265-params",
            "log-level=error",
            "-tag:v",
            "hvc1",
            source="testsrc2=s=320x240:r=25:d=1",
        )
    if has_encoder("libvpx-vp9"):
        cases["vp9"] = lavfi_video(
            media_dir / "clip.webm",
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "300k",
            "-c:a",
            "libopus",
            source="testsrc2=s=320x240:r=25:d=1",
        )
    return cases
