"""Generated videos with known scene cuts and real speech, for tests, benchmarks and the demo.

Each scene is drawn by a different ffmpeg test source (moving patterns, colour bars, solid
colours with big words) so that cuts are unambiguous while the content inside a scene still
moves. Speech comes from espeak-ng when it is installed; otherwise the audio is a quiet tone
and ``speech_text`` is None, so callers know there is nothing to transcribe.

Run ``python -m videoqa_pipeline.media.sample --bundled OUT.mp4`` to re-make the packaged
sample video.
"""

from __future__ import annotations

import argparse
import functools
import importlib.resources
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from videoqa_pipeline.media.tools import ffmpeg_executable, run_ffmpeg

logger = logging.getLogger(__name__)

# Background colours for the text scenes: far apart in hue so adjacent scenes always differ.
_COLOURS = ("0x1f4e99", "0xb22222", "0x2e8b57", "0xdaa520", "0x6a0dad", "0x008b8b", "0xd2691e", "0x2f4f4f")
# Pattern sources for the other scenes; each looks unlike the others and moves.
_PATTERNS = ("testsrc2", "smptebars", "rgbtestsrc", "testsrc", "smptehdbars", "yuvtestsrc")

BUNDLED_SCENES: tuple[tuple[float, str | None], ...] = (
    (5.0, "INVOICE 2024 TOTAL 42"),
    (4.0, None),
    (5.0, "MEETING ROOM B7"),
    (4.0, None),
    (5.0, "LAUNCH DATE MARCH 3"),
    (4.0, None),
)
BUNDLED_SPEECH = (
    "Welcome to the video pipeline demo. "
    "The invoice total for twenty twenty four is forty two dollars. "
    "The weekly meeting takes place in room B seven. "
    "The product launch is planned for the third of March. "
    "The office cat is called Pixel."
)


@dataclass(frozen=True)
class SampleVideo:
    """A generated video and what is known about it.

    Attributes:
        path: The MP4 file.
        cut_times: Seconds at which a new scene starts (excluding 0).
        duration: Total length in seconds.
        speech_text: The sentence spoken on the audio track, or None without espeak-ng.
    """

    path: Path
    cut_times: list[float]
    duration: float
    speech_text: str | None


def espeak_available() -> bool:
    """Return True when espeak-ng can synthesize speech on this machine."""
    return shutil.which("espeak-ng") is not None


@functools.lru_cache(maxsize=4)
def drawtext_available(executable: str) -> bool:
    """Return True when this ffmpeg can draw text without a font file (needs fontconfig)."""
    result = subprocess.run(
        [
            executable,
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=black:s=64x64:d=0.04,drawtext=text=A:fontsize=20",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def make_sample_video(
    path: str | os.PathLike[str],
    *,
    scene_seconds: Sequence[float] = (4.0, 4.0, 4.0),
    speech: str | None = None,
    width: int = 640,
    height: int = 360,
    fps: int = 25,
    audio: bool = True,
    scene_texts: Sequence[str | None] | None = None,
    preset: str = "veryfast",
    crf: int = 23,
) -> SampleVideo:
    """Generate an H.264/AAC MP4 whose scene cuts are known exactly.

    Args:
        path: Output file (overwritten).
        scene_seconds: Length of each scene; cuts fall at their running sums.
        speech: Text to speak with espeak-ng (padded or cut to the video length). None gives a
            quiet tone, as does a missing espeak-ng (then ``speech_text`` is None).
        width: Frame width (even).
        height: Frame height (even).
        fps: Constant frame rate.
        audio: False writes a video without an audio stream.
        scene_texts: Big words drawn on the solid-colour scenes (even indices), one entry
            per scene; None draws "SCENE n". Skipped when this ffmpeg has no fontconfig.
        preset: x264 preset (use "ultrafast" for long benchmark videos).
        crf: x264 quality.

    Returns:
        The file and its known cut times, duration and spoken text.

    Raises:
        ValueError: No scenes, a scene shorter than one frame, or odd dimensions.
        FFmpegError: ffmpeg or espeak-ng failed.
    """
    if not scene_seconds:
        raise ValueError("scene_seconds must list at least one scene")
    if any(s * fps < 1 for s in scene_seconds):
        raise ValueError(f"every scene must last at least one frame (1/{fps} s)")
    if width % 2 or height % 2:
        raise ValueError(f"width and height must be even for yuv420p, got {width}x{height}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    executable = ffmpeg_executable()
    with_text = drawtext_available(executable)
    frame_counts = [max(1, round(s * fps)) for s in scene_seconds]
    duration = sum(frame_counts) / fps

    graph = _video_graph(frame_counts, width, height, fps, scene_texts if with_text else [])

    args = [executable, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    speech_text: str | None = None
    with tempfile.TemporaryDirectory(prefix="videoqa-sample-") as tmp:
        if audio:
            if speech and espeak_available():
                wav = Path(tmp) / "speech.wav"
                _espeak(speech, wav)
                args += ["-i", str(wav)]
                graph.append(f"[0:a]aformat=channel_layouts=mono,apad,atrim=0:{duration:.3f}[a]")
                speech_text = speech
            else:
                graph.append(f"sine=frequency=440:sample_rate=44100:duration={duration:.3f},volume=0.1[a]")
        args += ["-filter_complex", ";".join(graph), "-map", "[v]"]
        if audio:
            args += ["-map", "[a]", "-c:a", "aac", "-b:a", "64k"]
        args += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p"]
        args += ["-r", str(fps), "-movflags", "+faststart", str(out)]
        run_ffmpeg(args, path=out, step="make sample video")

    cut_times = [sum(frame_counts[: index + 1]) / fps for index in range(len(frame_counts) - 1)]
    return SampleVideo(path=out, cut_times=cut_times, duration=duration, speech_text=speech_text)


def _video_graph(
    frame_counts: Sequence[int], width: int, height: int, fps: int, scene_texts: Sequence[str | None] | None
) -> list[str]:
    """The scenes' filters and their concatenation into ``[v]``; ``scene_texts`` None draws
    "SCENE n", an empty list draws nothing (no fontconfig)."""
    graph = []
    for index, frames in enumerate(frame_counts):
        text = None
        if scene_texts is None:
            text = f"SCENE {index + 1}"
        elif index < len(scene_texts):
            text = scene_texts[index]
        graph.append(_scene_filter(index, frames / fps, width, height, fps, text))
    labels = "".join(f"[s{i}]" for i in range(len(frame_counts)))
    graph.append(f"{labels}concat=n={len(frame_counts)}:v=1:a=0,format=yuv420p[v]")
    return graph


def _scene_filter(index: int, seconds: float, width: int, height: int, fps: int, text: str | None) -> str:
    size = f"{width}x{height}"
    if index % 2 == 0:
        colour = _COLOURS[(index // 2) % len(_COLOURS)]
        chain = f"color=c={colour}:s={size}:r={fps}:d={seconds:.4f}"
        # A moving white box keeps the scene alive without looking like a cut.
        box = max(4, height // 8)
        chain += (
            f",drawbox=x='mod(t*{width // 4},{width - box})':y={height - 2 * box}:w={box}:h={box}:"
            "color=white@0.9:t=fill"
        )
        if text:
            fontsize = max(12, min(height // 6, int(1.6 * width / max(len(text), 1))))
            escaped = text.replace("\\", "\\\\").replace(":", "\\:").replace("'", "")
            chain += (
                f",drawtext=text='{escaped}':fontsize={fontsize}:fontcolor=white:"
                "x=(w-text_w)/2:y=(h-text_h)/2-h/10:borderw=2:bordercolor=black"
            )
    else:
        pattern = _PATTERNS[(index // 2) % len(_PATTERNS)]
        chain = f"{pattern}=s={size}:r={fps}:d={seconds:.4f}"
        # Hue rotation per occurrence: the same pattern never repeats identically.
        chain += f",hue=h={(index * 47) % 360}"
    return chain + f",setsar=1[s{index}]"


def _espeak(text: str, wav: Path) -> None:
    result = subprocess.run(
        ["espeak-ng", "-s", "150", "-w", str(wav), text],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not wav.exists():
        from videoqa_pipeline.media.errors import FFmpegError

        raise FFmpegError(wav, "espeak-ng could not synthesize speech", stderr_tail=result.stderr.strip())


def bundled_sample_video() -> Path:
    """Return the path of the sample video shipped in the package (``videoqa_pipeline/data/sample.mp4``).

    Returns:
        A filesystem path to the MP4.

    Raises:
        FileNotFoundError: The package was installed without its data files.
    """
    resource = importlib.resources.files("videoqa_pipeline") / "data" / "sample.mp4"
    path = Path(str(resource))
    if not path.is_file():
        raise FileNotFoundError(
            f"bundled sample video missing at {path}; reinstall videoqa-pipeline or run "
            "`python -m videoqa_pipeline.media.sample --bundled <path>`"
        )
    return path


def make_bundled_sample(path: str | os.PathLike[str]) -> SampleVideo:
    """Re-create the packaged sample video: 27 s, 6 scenes, spoken facts, big on-screen text.

    Args:
        path: Output file.

    Returns:
        The generated sample.

    Raises:
        RuntimeError: espeak-ng is missing (the packaged sample must carry real speech).
    """
    if not espeak_available():
        raise RuntimeError("espeak-ng is required to make the bundled sample (apt install espeak-ng)")
    return make_sample_video(
        path,
        scene_seconds=[seconds for seconds, _ in BUNDLED_SCENES],
        scene_texts=[text for _, text in BUNDLED_SCENES],
        speech=BUNDLED_SPEECH,
        width=854,
        height=480,
        fps=25,
        crf=28,
        preset="slow",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m videoqa_pipeline.media.sample [--bundled] OUT``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", help="output MP4 path")
    parser.add_argument("--bundled", action="store_true", help="make the packaged sample video")
    parser.add_argument("--scenes", type=float, nargs="*", default=[4.0, 4.0, 4.0], help="scene lengths (s)")
    parser.add_argument("--speech", default=None, help="text to speak (espeak-ng)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.bundled:
        sample = make_bundled_sample(args.out)
    else:
        sample = make_sample_video(args.out, scene_seconds=args.scenes, speech=args.speech)
    print(
        f"{sample.path}: {sample.duration:.2f} s, cuts at {sample.cut_times}, speech={sample.speech_text!r}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
