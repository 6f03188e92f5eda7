"""Damaged media made on the spot: a clean 60 s video, then its packets overwritten or left out.

The clean video is 160x120 at 25 fps (1,500 frames, a keyframe every 10 s) with mono AAC audio
that beeps for half a second at 1, 11, 21, 31, 41 and 51 s, so a test can see where each second
of the source ended up. Damage is done to the bytes of chosen packets (found through the
container's own index), exactly as a bad disk sector or a broken upload does it: the container
still opens, the decoder refuses those packets.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np

from videoqa_pipeline.media import ffmpeg_executable

DURATION = 60.0
FPS = 25
BEEPS = (1.0, 11.0, 21.0, 31.0, 41.0, 51.0)
_BEEP = "0.8*sin(2*PI*1000*t)*between(mod(t\\,10)\\,1\\,1.5)"


def _ffmpeg(*args: str) -> None:
    command = [ffmpeg_executable(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"ffmpeg failed: {' '.join(command)}\n{result.stderr}")


def clean_video(out: Path, *, speech_wav: Path | None = None) -> Path:
    """The clean 60 s source (beeps, or ``speech_wav`` as its audio)."""
    audio = (
        ["-i", str(speech_wav)] if speech_wav else ["-f", "lavfi", "-i", f"aevalsrc='{_BEEP}':s=44100:d=60"]
    )
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=s=160x120:r={FPS}:d={DURATION:g}",
        *audio,
        "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "250",
        "-c:a", "aac", "-ac", "1", "-t", f"{DURATION:g}",
        str(out),
    )  # fmt: skip
    return out


def speech_track(out: Path, sentences: dict[float, str]) -> Path:
    """60 s of silence with each sentence spoken (espeak-ng) from its start time on."""
    inputs: list[str] = ["-f", "lavfi", "-i", f"anullsrc=r=22050:cl=mono:d={DURATION:g}"]
    chains = []
    for number, (start, sentence) in enumerate(sorted(sentences.items()), start=1):
        spoken = out.with_name(f"{out.stem}-{number}.wav")
        subprocess.run(
            ["espeak-ng", "-s", "140", "-w", str(spoken), sentence], check=True, capture_output=True
        )
        inputs += ["-i", str(spoken)]
        chains.append(f"[{number}]adelay={round(start * 1000)}[s{number}]")
    mix = "".join(f"[s{number}]" for number in range(1, len(sentences) + 1))
    graph = ";".join([*chains, f"[0]{mix}amix=inputs={len(sentences) + 1}:duration=first:normalize=0"])
    _ffmpeg(*inputs, "-filter_complex", graph, "-t", f"{DURATION:g}", str(out))
    return out


def overwrite_packets(src: Path, dst: Path, kind: str, start: float, end: float = float("inf")) -> int:
    """Copy ``src`` to ``dst`` with the bytes of its ``kind`` ("audio"/"video") packets in
    ``[start, end)`` seconds overwritten; returns how many packets were damaged."""
    data = bytearray(src.read_bytes())
    damaged = 0
    with av.open(str(src)) as container:
        stream = container.streams.audio[0] if kind == "audio" else container.streams.video[0]
        for packet in container.demux(stream):
            if packet.pts is None or packet.pos is None or packet.pos < 0 or not packet.size:
                continue
            if start <= float(packet.pts * packet.time_base) < end:
                data[packet.pos : packet.pos + packet.size] = b"\xff" * packet.size
                damaged += 1
    dst.write_bytes(bytes(data))
    return damaged


def mkv_without_audio(src: Path, dst: Path, start: float, end: float) -> int:
    """Remux ``src`` into Matroska leaving out its audio packets in ``[start, end)``: a stream with
    a hole in its timestamps, as a capture that lost its sound for a while writes. Returns how many
    packets were left out."""
    dropped = 0
    with av.open(str(src)) as source, av.open(str(dst), "w", format="matroska") as target:
        streams = {
            stream.index: target.add_stream_from_template(stream)
            for stream in (source.streams.video[0], source.streams.audio[0])
        }
        for packet in source.demux(source.streams.video[0], source.streams.audio[0]):
            if packet.dts is None:
                continue
            seconds = float(packet.pts * packet.time_base) if packet.pts is not None else 0.0
            if packet.stream.type == "audio" and start <= seconds < end:
                dropped += 1
                continue
            packet.stream = streams[packet.stream.index]
            target.mux(packet)
    return dropped


def wav_samples(wav: Path) -> tuple[np.ndarray, int]:
    """The mono samples of a WAV and its rate."""
    with av.open(str(wav)) as container:
        rate = container.streams.audio[0].sample_rate
        samples = np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)])
    return samples.astype(np.float64), int(rate)


def beep_onsets(wav: Path) -> list[float]:
    """Where the beeps start in ``wav``, to a tenth of a second."""
    samples, rate = wav_samples(wav)
    block = rate // 10
    usable = len(samples) // block * block
    loudness = np.abs(samples[:usable]).reshape(-1, block).max(axis=1)
    loud = loudness > 0.1 * float(np.abs(samples).max() or 1.0)
    onsets = np.flatnonzero(loud[1:] & ~loud[:-1]) + 1
    return [round(float(index) / 10, 1) for index in onsets]
