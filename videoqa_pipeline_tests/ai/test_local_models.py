"""The offline models on generated media: speech, a frame with printed text, sentences."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import numpy as np
import pytest

from videoqa_pipeline.ai import AIConfig, AIProviderError, get_embedder, get_frame_analyzer, get_transcriber
from videoqa_pipeline_tests.ai.conftest import SPEECH_TEXT, text_frame_jpeg

LOCAL = AIConfig.from_env({"VIDEOQA_AI_PROVIDER": "local"})


def normalise_words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance over words divided by the reference length."""
    ref, hyp = normalise_words(reference), normalise_words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        current = [i]
        for j, hyp_word in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1] / max(1, len(ref))


def test_word_error_rate_helper() -> None:
    assert word_error_rate("a b c d", "a b c d") == 0.0
    assert word_error_rate("a b c d", "a x c") == 0.5
    assert word_error_rate("Hello, world!", "hello world") == 0.0


def test_offline_transcription_of_generated_speech(speech_wav: Path) -> None:
    from videoqa_pipeline.ai.local_asr import BASE_NAME

    transcript = get_transcriber(LOCAL).transcribe(speech_wav)
    wer = word_error_rate(SPEECH_TEXT, transcript.text)
    assert wer <= 0.35, f"WER {wer:.2f}: {transcript.text!r}"
    assert transcript.language == "en" and transcript.model == BASE_NAME
    assert transcript.language_probability is not None and transcript.language_probability > 0.5
    assert transcript.duration == pytest.approx(transcript.usage.audio_seconds) and transcript.duration > 5
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts) and transcript.segments[-1].end <= transcript.duration + 0.5
    words = [w for s in transcript.segments for w in s.words]
    assert len(words) >= 15, "word timestamps expected"
    assert all(
        s.start - 0.05 <= w.start <= w.end <= s.end + 0.05 for s in transcript.segments for w in s.words
    )
    assert transcript.usage.cost_usd == 0.0


def test_transcriber_is_loaded_once_per_process() -> None:
    assert get_transcriber(LOCAL) is get_transcriber(
        AIConfig.from_env({"VIDEOQA_ASR_PROVIDER": "local", "OPENAI_BASE_URL": "http://x"})
    )


def test_missing_audio_file_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(AIProviderError) as info:
        get_transcriber(LOCAL).transcribe(tmp_path / "missing.wav")
    assert info.value.permanent and "missing.wav" in str(info.value)


def test_bad_model_directory_is_a_permanent_error(tmp_path: Path) -> None:
    from videoqa_pipeline.ai.local_asr import LocalWhisperTranscriber

    with pytest.raises(AIProviderError) as info:
        LocalWhisperTranscriber(str(tmp_path))
    assert info.value.permanent and str(tmp_path) in str(info.value)


def test_printed_text_is_read_back_by_offline_ocr() -> None:
    batch = get_frame_analyzer(LOCAL).analyze([text_frame_jpeg(["SEARCH THE PIPELINE", "TOTAL 42"])])
    analysis = batch.analyses[0]
    read = re.sub(r"[^A-Z0-9]", "", analysis.ocr_text.upper())
    similarity = difflib.SequenceMatcher(None, read, "SEARCHTHEPIPELINETOTAL42").ratio()
    assert similarity >= 0.85, analysis.ocr_text
    assert "text" in analysis.labels
    assert analysis.caption and "not a learned caption" in analysis.caption
    assert analysis.facts["dominant_colours"][0]["name"] == "red"
    assert batch.usage.images == 1


def test_black_frame_has_no_text_and_is_labelled() -> None:
    analysis = get_frame_analyzer(LOCAL).analyze([text_frame_jpeg([], background=(0, 0, 0))]).analyses[0]
    assert analysis.ocr_text == ""
    assert "black frame" in analysis.labels
    assert analysis.facts["brightness"] < 0.05


def test_undecodable_image_is_a_permanent_error() -> None:
    with pytest.raises(AIProviderError) as info:
        get_frame_analyzer(LOCAL).analyze([b"not a jpeg"])
    assert info.value.permanent and "Image 0" in str(info.value)


def test_paraphrases_are_closer_than_unrelated_sentences() -> None:
    embedder = get_embedder(LOCAL)
    texts = [
        "A man is playing a guitar on stage.",
        "Someone performs music with a guitar in front of an audience.",
        "The quarterly tax report is due next Friday.",
        "Heavy rain flooded the streets of the city.",
        "Downtown roads were under water after the storm.",
    ]
    batch = embedder.embed(texts)
    vectors = batch.vectors
    assert vectors.shape == (5, embedder.dimension) == (5, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sim = vectors @ vectors.T
    assert sim[0, 1] > sim[0, 2] + 0.3 and sim[0, 1] > sim[0, 3] + 0.3
    assert sim[3, 4] > sim[3, 0] + 0.3 and sim[3, 4] > sim[3, 2] + 0.3
    assert batch.usage.input_tokens > 20


def test_embeddings_do_not_depend_on_batch_composition() -> None:
    """Padding must not leak into a text's vector (attention masking and mean pooling)."""
    embedder = get_embedder(LOCAL)
    alone = embedder.embed(["short"]).vectors[0]
    together = embedder.embed(["short", "a much longer sentence " * 20, ""]).vectors
    np.testing.assert_allclose(alone, together[0], atol=1e-5)
    assert np.isfinite(together).all()


def test_long_audio_is_transcribed_in_windows_with_offsets(gapped_speech_wav: Path, speech_wav: Path) -> None:
    """Windows bound memory on long files; times must stay relative to the whole file."""
    from videoqa_pipeline.ai.local_asr import LocalWhisperTranscriber

    windowed = LocalWhisperTranscriber()
    windowed.window_seconds = 6.0  # tiny windows: Whisper loses context below ~5 s
    transcript = windowed.transcribe(gapped_speech_wav)
    assert transcript.usage.requests >= 3  # one model call per window
    assert word_error_rate(SPEECH_TEXT, transcript.text) <= 0.35, transcript.text
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts)
    last = transcript.segments[-1]
    assert last.start > 8.0 and last.words and last.words[0].start >= last.start - 0.05  # offset applied
    assert transcript.duration == pytest.approx(transcript.usage.audio_seconds)


AWKWARD_TEXTS = [
    "A man is playing a guitar on stage.",
    "",
    "Prices rose 3.5% in Q3 (see https://example.com/report).",
    "word " * 400,  # longer than the 256-token limit: both truncate
    "Ünïcödé text \u2013 with dashes and emoji \U0001f3ac",
]


def test_numpy_runtime_matches_sentence_transformers() -> None:
    """The torch-free float32 encoder must reproduce the reference implementation (cosine > 0.999)."""
    sentence_transformers = pytest.importorskip(
        "sentence_transformers",
        reason="reference implementation not installed (the sentence-transformers extra)",
    )
    from videoqa_pipeline.ai.local_embed import LocalEmbedder
    from videoqa_pipeline.ai.packaged_models import packaged_minilm_dir

    reference = sentence_transformers.SentenceTransformer(str(packaged_minilm_dir()), device="cpu")
    expected = reference.encode(AWKWARD_TEXTS, normalize_embeddings=True)
    fp32 = LocalEmbedder("all-MiniLM-L6-v2")
    assert fp32.model_name == "all-MiniLM-L6-v2"
    agreement = (expected * fp32.embed(AWKWARD_TEXTS).vectors).sum(axis=1)
    assert agreement.min() > 0.999, agreement


def test_embedding_session_gives_its_buffers_back_after_each_run() -> None:
    from videoqa_pipeline.ai.local_embed import session_options

    options = session_options()
    assert options.enable_cpu_mem_arena is False and options.enable_mem_pattern is False


def test_long_texts_are_embedded_in_token_bounded_batches_with_the_same_vectors() -> None:
    from videoqa_pipeline.ai import local_embed

    embedder = get_embedder(LOCAL)
    assert isinstance(embedder, local_embed.LocalEmbedder)
    words = [
        "the",
        "harbour",
        "ferry",
        "crosses",
        "the",
        "bay",
        "every",
        "hour",
        "while",
        "gulls",
        "follow",
        "the",
        "boats",
    ]
    texts = [" ".join(words * (1 + i % 20)) for i in range(40)] + ["short text"] * 40
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    batches = list(embedder._token_bounded_batches(texts, order))
    assert [i for chunk, _ in batches for i in chunk] == order
    for chunk, encodings in batches:
        padded = len(chunk) * len(encodings[0].ids)
        assert len(chunk) == 1 or padded <= local_embed.MAX_BATCH_TOKENS, (len(chunk), padded)
    assert max(len(chunk) for chunk, _ in batches) == local_embed.BATCH_SIZE  # short texts still share
    together = embedder.embed(texts).vectors
    alone = np.vstack([embedder.embed([text]).vectors for text in texts[::7]])
    assert np.allclose(together[::7], alone, atol=1e-4)


def test_released_models_load_again_on_demand(speech_wav: Path) -> None:
    analyzer, embedder = get_frame_analyzer(LOCAL), get_embedder(LOCAL)
    for provider in (analyzer, embedder):
        provider.release()  # type: ignore[attr-defined]
        assert provider.loaded is False  # type: ignore[attr-defined]
    frame = text_frame_jpeg(["SEARCH THE PIPELINE", "TOTAL 42"])
    assert "TOTAL 42" in analyzer.analyze([frame]).analyses[0].ocr_text
    assert embedder.embed(["a sentence"]).vectors.shape == (1, 384)
    assert analyzer.loaded and embedder.loaded  # type: ignore[attr-defined]
