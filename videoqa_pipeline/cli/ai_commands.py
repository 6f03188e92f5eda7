"""`videoqa` sub-commands for the ai layer: check a transcription, vision or embedding setup.

    videoqa transcribe FILE [--json] [--language xx]
    videoqa analyze-frame IMAGE [--json]
    videoqa embed TEXT... [--json]

Providers and models come from the same environment variables as the pipeline (see
:mod:`videoqa_pipeline.ai.config`). Failures print one readable line on stderr and exit 1.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click
import numpy as np

from videoqa_pipeline.ai import AIConfig, AIProviderError, get_embedder, get_frame_analyzer, get_transcriber
from videoqa_pipeline.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _config(protocol: str) -> AIConfig:
    config = Settings.from_env().ai
    problems = config.problems([protocol])
    if problems:
        raise click.ClickException("invalid AI settings: " + " ".join(problems))
    return config


def _run(fn: Callable[[], T]) -> T:
    """Run ``fn`` and turn the library's errors into one-line CLI errors (no traceback)."""
    from videoqa_pipeline.media.errors import MediaError

    try:
        return fn()
    except (AIProviderError, MediaError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from exc


def _extract_wav(src: Path, dest: Path) -> Path | None:
    from videoqa_pipeline.media.normalize import extract_audio

    return extract_audio(src, dest)


@click.command("transcribe")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--json", "as_json", is_flag=True, help="Print {language, segments: [{start, end, text, words?}]}."
)
@click.option("--language", default=None, metavar="xx", help="ISO 639-1 language hint (default: detect).")
def transcribe_command(file: Path, as_json: bool, language: str | None) -> None:
    """Transcribe the speech in an audio or video FILE."""
    config = _config("transcription")

    transcriber = _run(lambda: get_transcriber(config))
    with tempfile.TemporaryDirectory(prefix="videoqa-transcribe-") as tmp:
        wav = _run(lambda: _extract_wav(file, Path(tmp) / "audio.wav"))
        if wav is None:
            raise click.ClickException(f"{file} has no audio stream; nothing to transcribe.")
        transcript = _run(lambda: transcriber.transcribe(wav, language=language))
    if as_json:
        click.echo(
            json.dumps(transcript.to_dict() | {"usage": transcript.usage.to_dict()}, ensure_ascii=False)
        )
        return
    click.echo(
        f"# {file.name}: {transcript.duration:.1f}s, language {transcript.language}, model {transcript.model}"
    )
    for segment in transcript.segments:
        click.echo(f"[{segment.start:7.2f} → {segment.end:7.2f}] {segment.text}")
    if transcript.usage.cost_usd:
        click.echo(f"# estimated cost: ${transcript.usage.cost_usd:.4f}")


@click.command("analyze-frame")
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the analysis as JSON.")
def analyze_frame_command(image: Path, as_json: bool) -> None:
    """Describe an IMAGE (JPEG or PNG): caption, labels, visible text."""
    config = _config("vision")
    data = _run(image.read_bytes)
    analyzer = _run(lambda: get_frame_analyzer(config))
    batch = _run(lambda: analyzer.analyze([data]))
    analysis = batch.analyses[0]
    if as_json:
        payload = {
            "model": analysis.model,
            "caption": analysis.caption,
            "labels": analysis.labels,
            "ocr_text": analysis.ocr_text,
            "facts": analysis.facts,
            "usage": batch.usage.to_dict(),
        }
        click.echo(json.dumps(payload, ensure_ascii=False))
        return
    click.echo(f"model:   {analysis.model}")
    click.echo(f"caption: {analysis.caption or ''}")
    click.echo(f"labels:  {', '.join(analysis.labels)}")
    click.echo(f"text:    {analysis.ocr_text}")
    if batch.usage.cost_usd:
        click.echo(f"estimated cost: ${batch.usage.cost_usd:.5f}")


@click.command("embed")
@click.argument("texts", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print {model, dimension, vectors}.")
def embed_command(texts: tuple[str, ...], as_json: bool) -> None:
    """Embed TEXT... and show how similar they are to each other (cosine)."""
    config = _config("embedding")
    embedder = _run(lambda: get_embedder(config))
    batch = _run(lambda: embedder.embed(list(texts)))
    if as_json:
        payload = {
            "model": batch.model,
            "dimension": batch.dimension,
            "vectors": [[round(float(x), 6) for x in row] for row in batch.vectors],
            "usage": batch.usage.to_dict(),
        }
        click.echo(json.dumps(payload))
        return
    click.echo(f"model {batch.model}, {batch.dimension} dimensions, {len(texts)} texts")
    similarity = batch.vectors @ batch.vectors.T if len(texts) > 1 else np.ones((1, 1), np.float32)
    for i, text in enumerate(texts):
        preview = text if len(text) <= 40 else text[:37] + "..."
        scores = " ".join(f"{similarity[i, j]:+.3f}" for j in range(len(texts)))
        click.echo(f"[{i}] {scores}  {preview}")


def register(group: click.Group) -> None:
    """Attach this module's commands to the top-level group."""
    for command in (transcribe_command, analyze_frame_command, embed_command):
        group.add_command(command)
