"""The OpenAI providers with the real SDK against a local server that speaks the API."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from videoqa_pipeline.ai import (
    AIConfig,
    AIProviderError,
    clear_cache,
    get_embedder,
    get_frame_analyzer,
    get_transcriber,
)
from videoqa_pipeline.ai.audio import wav_duration
from videoqa_pipeline.ai.openai_asr import OpenAITranscriber
from videoqa_pipeline.ai.openai_embed import OpenAIEmbedder
from videoqa_pipeline_tests.ai.conftest import text_frame_jpeg
from videoqa_pipeline_tests.ai.openai_test_server import (
    OpenAITestServer,
    ScriptedReply,
    error_reply,
    fake_vector,
)

TRANSCRIPTIONS = "/v1/audio/transcriptions"
CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"


def openai_config(server: OpenAITestServer, **env: str) -> AIConfig:
    return AIConfig.from_env(
        {
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": server.base_url,
            "VIDEOQA_OPENAI_MAX_RETRIES": "2",
            **env,
        }
    )


def test_transcription_sends_verbose_json_and_maps_segments(
    api_server: OpenAITestServer, speech_wav: Path
) -> None:
    transcript = OpenAITranscriber(openai_config(api_server)).transcribe(speech_wav, language="en")
    [request] = api_server.requests_to(TRANSCRIPTIONS)
    assert request.fields["model"] == ["whisper-1"]
    assert request.fields["response_format"] == ["verbose_json"]
    assert request.fields["timestamp_granularities[]"] == ["segment", "word"]
    assert request.fields["language"] == ["en"]
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.file_bytes == speech_wav.read_bytes()
    assert transcript.language == "en"  # "english" mapped to its ISO code
    assert transcript.text == "part 0"
    [segment] = transcript.segments
    assert [w.text for w in segment.words] == ["part", "0"]
    duration = wav_duration(speech_wav)
    assert transcript.duration == pytest.approx(duration)
    assert transcript.usage.cost_usd == pytest.approx(0.006 * duration / 60)


def test_text_only_models_get_json_and_one_segment(api_server: OpenAITestServer, speech_wav: Path) -> None:
    config = openai_config(api_server, VIDEOQA_ASR_MODEL="gpt-4o-mini-transcribe")
    transcript = OpenAITranscriber(config).transcribe(speech_wav)
    [request] = api_server.requests_to(TRANSCRIPTIONS)
    assert request.fields["response_format"] == ["json"]
    assert "timestamp_granularities[]" not in request.fields
    assert transcript.text == "part 0" and transcript.segments[0].start == 0.0
    assert transcript.usage.cost_usd == pytest.approx(0.003 * transcript.duration / 60)


def test_large_files_are_split_in_silences_with_offsets(
    api_server: OpenAITestServer, gapped_speech_wav: Path
) -> None:
    limit = 120_000  # ~3.6 s of 16 kHz mono audio per upload
    transcriber = OpenAITranscriber(openai_config(api_server), max_upload_bytes=limit)
    transcript = transcriber.transcribe(gapped_speech_wav)
    requests = api_server.requests_to(TRANSCRIPTIONS)
    assert len(requests) >= 3 and len(transcript.segments) == len(requests)
    assert all(len(r.file_bytes or b"") <= limit for r in requests)
    durations = [wav_duration_bytes(r.file_bytes or b"") for r in requests]
    assert sum(durations) == pytest.approx(wav_duration(gapped_speech_wav), abs=0.1)
    offsets = np.cumsum([0.0, *durations[:-1]])
    for index, (segment, offset) in enumerate(zip(transcript.segments, offsets, strict=True)):
        assert segment.text == f"part {index}"
        assert segment.start == pytest.approx(offset + 0.1, abs=0.05)  # server says 0.1 s into the chunk
        assert segment.words[0].start == pytest.approx(offset + 0.1, abs=0.05)
    assert transcript.usage.requests == len(requests)
    assert transcript.usage.audio_seconds == pytest.approx(transcript.duration, abs=0.1)


def wav_duration_bytes(data: bytes) -> float:
    import io
    import wave

    with wave.open(io.BytesIO(data)) as handle:
        return handle.getnframes() / handle.getframerate()


def test_vision_sends_base64_jpeg_with_json_schema(api_server: OpenAITestServer) -> None:
    jpeg = text_frame_jpeg(["INVOICE 2024"])
    _ok, png = cv2.imencode(".png", cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
    config = openai_config(api_server, VIDEOQA_OPENAI_MAX_CONCURRENCY="2")
    batch = get_frame_analyzer(config).analyze([jpeg, png.tobytes(), jpeg])
    requests = api_server.requests_to(CHAT)
    assert len(requests) == 3
    for request in requests:
        body = request.json or {}
        assert body["model"] == "gpt-4o-mini"
        assert body["response_format"]["type"] == "json_schema"
        assert set(body["response_format"]["json_schema"]["schema"]["required"]) == {
            "caption",
            "labels",
            "visible_text",
        }
        image_part = next(p for p in body["messages"][0]["content"] if p["type"] == "image_url")
        prefix = "data:image/jpeg;base64,"
        assert image_part["image_url"]["url"].startswith(prefix)
        decoded = base64.b64decode(image_part["image_url"]["url"][len(prefix) :])
        assert decoded[:3] == b"\xff\xd8\xff"  # the PNG was re-encoded as JPEG
    assert [a.ocr_text for a in batch.analyses] == ["INVOICE 2024"] * 3
    assert batch.analyses[0].labels == ["slide", "text", "presentation"]
    assert batch.usage.images == 3 and batch.usage.input_tokens == 360 and batch.usage.output_tokens == 90
    assert batch.usage.cost_usd == pytest.approx(3 * (120 * 0.15 + 30 * 0.60) / 1e6)


def test_vision_reply_in_plain_text_becomes_the_caption_with_a_warning(api_server: OpenAITestServer) -> None:
    api_server.vision_reply = "I see a red slide"
    batch = get_frame_analyzer(openai_config(api_server)).analyze([text_frame_jpeg(["X"])])
    [analysis] = batch.analyses
    assert analysis.caption == "I see a red slide" and analysis.labels == [] and analysis.ocr_text == ""
    assert "plain text" in analysis.facts["warning"]


def test_embeddings_are_batched_ordered_and_renormalised(api_server: OpenAITestServer) -> None:
    embedder = OpenAIEmbedder(openai_config(api_server))
    embedder.max_inputs_per_request = 4
    texts = [f"sentence {i}" for i in range(10)] + [""]
    batch = embedder.embed(texts)
    requests = api_server.requests_to(EMBEDDINGS)
    assert [len((r.json or {})["input"]) for r in requests] == [4, 4, 3]
    assert all((r.json or {})["model"] == "text-embedding-3-small" for r in requests)
    assert (requests[-1].json or {})["input"][-1] == " "  # empty text sent as a space
    assert batch.vectors.shape == (11, 1536) and batch.dimension == embedder.dimension == 1536
    np.testing.assert_allclose(np.linalg.norm(batch.vectors, axis=1), 1.0, atol=1e-5)
    expected = np.asarray(fake_vector("sentence 7"), np.float32) / 3.0
    np.testing.assert_allclose(
        batch.vectors[7], expected, atol=1e-5
    )  # order follows "index", not the reply order
    assert batch.usage.requests == 3 and batch.usage.input_tokens == 20
    assert batch.usage.cost_usd == pytest.approx(20 * 0.02 / 1e6)


def test_429_retry_after_is_honoured(api_server: OpenAITestServer) -> None:
    api_server.script(EMBEDDINGS, error_reply(429, "Rate limit reached", {"Retry-After": "1.5"}))
    batch = OpenAIEmbedder(openai_config(api_server)).embed(["hello"])
    first, second = api_server.requests_to(EMBEDDINGS)
    # The SDK's own first backoff is under 1 s, so a >= 1.4 s gap shows the header was used.
    assert second.at - first.at >= 1.4
    assert second.headers.get("x-stainless-retry-count") == "1"
    assert batch.vectors.shape == (1, 1536)


def test_5xx_is_retried_then_succeeds(api_server: OpenAITestServer) -> None:
    api_server.script(EMBEDDINGS, error_reply(500, "boom"), error_reply(503, "overloaded"))
    batch = OpenAIEmbedder(openai_config(api_server)).embed(["hello"])
    assert len(api_server.requests_to(EMBEDDINGS)) == 3
    assert batch.vectors.shape == (1, 1536)


def test_persistent_5xx_becomes_a_transient_error(api_server: OpenAITestServer) -> None:
    api_server.script(EMBEDDINGS, *(error_reply(500, "The server had an error") for _ in range(3)))
    with pytest.raises(AIProviderError) as info:
        OpenAIEmbedder(openai_config(api_server, VIDEOQA_OPENAI_MAX_RETRIES="1")).embed(["hello"])
    assert len(api_server.requests_to(EMBEDDINGS)) == 2
    assert not info.value.permanent and info.value.status_code == 500
    assert "The server had an error" in str(info.value)


def test_400_fails_fast_with_the_api_message(api_server: OpenAITestServer, speech_wav: Path) -> None:
    api_server.script(
        TRANSCRIPTIONS, error_reply(400, "Invalid file format. Supported formats: ['flac', 'mp3', 'wav']")
    )
    started = time.monotonic()
    with pytest.raises(AIProviderError) as info:
        OpenAITranscriber(openai_config(api_server)).transcribe(speech_wav)
    assert time.monotonic() - started < 2.0
    assert len(api_server.requests_to(TRANSCRIPTIONS)) == 1
    assert info.value.permanent and info.value.status_code == 400
    assert "Invalid file format" in str(info.value) and "speech.wav" in str(info.value)


def test_malformed_json_is_a_transient_error(api_server: OpenAITestServer) -> None:
    api_server.script(EMBEDDINGS, ScriptedReply(200, b'{"object": "list", "data": [{"embedd'))
    with pytest.raises(AIProviderError) as info:
        OpenAIEmbedder(openai_config(api_server)).embed(["hello"])
    assert not info.value.permanent and "malformed" in str(info.value)


def test_unreachable_server_is_a_transient_error() -> None:
    config = AIConfig.from_env(
        {
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "VIDEOQA_AI_PROVIDER": "openai",
            "VIDEOQA_OPENAI_MAX_RETRIES": "0",
        }
    )
    with pytest.raises(AIProviderError) as info:
        OpenAIEmbedder(config).embed(["hello"])
    assert not info.value.permanent and "OPENAI_BASE_URL" in str(info.value)


def test_mixed_providers_and_cached_clients(api_server: OpenAITestServer) -> None:
    clear_cache()
    config = openai_config(api_server, VIDEOQA_ASR_PROVIDER="local", VIDEOQA_EMBED_PROVIDER="local")
    assert type(get_transcriber(config)).__name__ == "LocalWhisperTranscriber"
    assert type(get_frame_analyzer(config)).__name__ == "OpenAIFrameAnalyzer"
    assert type(get_embedder(config)).__name__ == "LocalEmbedder"
    assert get_frame_analyzer(config) is get_frame_analyzer(
        openai_config(api_server, VIDEOQA_ASR_PROVIDER="local")
    )
    assert json.dumps(config.describe())
