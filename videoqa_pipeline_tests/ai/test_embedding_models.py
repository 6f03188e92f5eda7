"""The default offline embedder: all-MiniLM-L6-v2 int8 on ONNX Runtime, named with its precision.

Reference vectors (``data/minilm_fp32_reference.npz``) were made by sentence-transformers on torch
from the float32 weights, so these tests run where neither is installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from videoqa_pipeline.ai import AIConfig, AIProviderError, get_embedder
from videoqa_pipeline.ai.local_embed import DEFAULT_MODEL_NAME, LocalEmbedder

DATA = Path(__file__).parent / "data"
LOCAL = AIConfig.from_env({"VIDEOQA_AI_PROVIDER": "local"})


def _reference() -> tuple[list[str], np.ndarray]:
    with np.load(DATA / "minilm_fp32_reference.npz") as stored:
        return [str(text) for text in stored["texts"]], stored["vectors"]


def test_default_embedder_is_int8_and_says_so() -> None:
    embedder = get_embedder(LOCAL)
    batch = embedder.embed(["Which room is the meeting in?"])
    assert embedder.model_name == batch.model == DEFAULT_MODEL_NAME == "all-MiniLM-L6-v2@int8"
    assert batch.dimension == embedder.dimension == 384


def test_int8_vectors_agree_with_float32_reference() -> None:
    """Close enough that rankings barely move: every cosine to the float32 vector >= 0.995 (mean >=
    0.999), and each text's 5 nearest neighbours are on average >= 95% the same."""
    texts, reference = _reference()
    vectors = get_embedder(LOCAL).embed(texts).vectors
    cosine = (vectors * reference).sum(axis=1)
    assert cosine.min() >= 0.995 and cosine.mean() >= 0.999, cosine
    ours, theirs = vectors @ vectors.T, reference @ reference.T
    overlap = [
        len(set(np.argsort(-ours[i])[1:6]) & set(np.argsort(-theirs[i])[1:6])) / 5 for i in range(len(texts))
    ]
    assert np.mean(overlap) >= 0.95, overlap


def test_an_onnx_model_directory_is_loaded_with_its_name(tmp_path: Path) -> None:
    from videoqa_pipeline.ai.packaged_models import packaged_minilm_int8

    model, tokenizer = packaged_minilm_int8()
    directory = tmp_path / "my-minilm"
    directory.mkdir()
    (directory / "model.onnx").symlink_to(model)
    (directory / "tokenizer.json").symlink_to(tokenizer)
    embedder = LocalEmbedder(str(directory))
    assert embedder.model_name == "onnx:my-minilm"
    np.testing.assert_allclose(
        embedder.embed(["ferry"]).vectors, get_embedder(LOCAL).embed(["ferry"]).vectors, atol=1e-6
    )


def test_a_name_for_sentence_transformers_without_the_extra_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as in an install without the extra
    with pytest.raises(AIProviderError) as info:
        LocalEmbedder("sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2")
    assert info.value.permanent
    assert "pip install 'videoqa-pipeline[sentence-transformers]'" in str(info.value)


def test_the_float32_model_without_its_weights_says_how_to_get_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from videoqa_pipeline.ai import packaged_models

    monkeypatch.setattr(packaged_models, "MINILM_PACKAGES", (("videoqa_no_such_module", "model", "x"),))
    with pytest.raises(AIProviderError, match=r"videoqa-pipeline\[sentence-transformers\]"):
        LocalEmbedder("all-MiniLM-L6-v2")
