"""Embeddings with the OpenAI embeddings API (or a compatible server), batched.

Inputs go in batches of at most 2048 texts and about 250k tokens (estimated at 4 characters
per token, under the API's 300k per request). Vectors are re-normalised because compatible
servers do not always return unit vectors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from videoqa_pipeline.ai.config import DEFAULT_OPENAI_MODELS, AIConfig, is_openai_endpoint
from videoqa_pipeline.ai.errors import AIProviderError
from videoqa_pipeline.ai.openai_client import Endpoint, call_api, make_client
from videoqa_pipeline.ai.pricing import estimate_cost
from videoqa_pipeline.ai.types import EmbeddingBatch, Usage

logger = logging.getLogger(__name__)

MAX_INPUTS_PER_REQUEST = 2048
MAX_TOKENS_PER_REQUEST = 250_000
KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


def batch_texts(
    texts: Sequence[str], max_inputs: int = MAX_INPUTS_PER_REQUEST, max_tokens: int = MAX_TOKENS_PER_REQUEST
) -> list[list[int]]:
    """Group text indices into request batches under both limits, preserving order."""
    batches: list[list[int]] = []
    current: list[int] = []
    current_tokens = 0
    for index, text in enumerate(texts):
        tokens = len(text) // 4 + 1
        if current and (len(current) >= max_inputs or current_tokens + tokens > max_tokens):
            batches.append(current)
            current, current_tokens = [], 0
        current.append(index)
        current_tokens += tokens
    if current:
        batches.append(current)
    return batches


class OpenAIEmbedder:
    """An :class:`~videoqa_pipeline.ai.types.Embedder` that calls ``/embeddings``."""

    def __init__(self, config: AIConfig) -> None:
        """Create the client; the dimension is known for OpenAI models and probed once otherwise."""
        self._config = config
        self._client = make_client(config, "embedding")
        self._endpoint = Endpoint.of(config, "embedding")
        self._priced = is_openai_endpoint(config.base_url_for("embedding"))
        self.model_name = config.embed_model or DEFAULT_OPENAI_MODELS["embedding"]
        self._dimension: int | None = KNOWN_DIMENSIONS.get(self.model_name)
        self.max_inputs_per_request = MAX_INPUTS_PER_REQUEST

    @property
    def dimension(self) -> int:
        """Vector size; for unknown models found with one small request on first use."""
        if self._dimension is None:
            self._dimension = int(self.embed(["dimension probe"]).vectors.shape[1])
        return self._dimension

    def embed(self, texts: Sequence[str]) -> EmbeddingBatch:
        """Embed ``texts`` in as few requests as the API limits allow.

        Returns:
            ``(len(texts), dimension)`` float32 unit vectors, usage with tokens and cost.

        Raises:
            AIProviderError: see :func:`~videoqa_pipeline.ai.openai_client.call_api`; also
            (transient) when the server returns the wrong number of vectors.
        """
        # The API rejects empty strings; a single space embeds as "nothing".
        clean = [text if text.strip() else " " for text in (str(t) for t in texts)]
        if not clean:
            return EmbeddingBatch(
                np.zeros((0, self._dimension or 0), np.float32),
                self.model_name,
                self._dimension or 0,
                Usage(),
            )
        rows: list[np.ndarray | None] = [None] * len(clean)
        usage = Usage()
        for batch in batch_texts(clean, self.max_inputs_per_request):
            inputs = [clean[i] for i in batch]
            response = call_api(
                f"embed {len(inputs)} texts with {self.model_name}",
                lambda inputs=inputs: self._client.embeddings.create(  # type: ignore[misc]
                    model=self.model_name, input=inputs, encoding_format="float"
                ),
                self._endpoint,
            )
            data = sorted(response.data, key=lambda item: item.index)
            if len(data) != len(inputs):
                raise AIProviderError(
                    f"The embeddings API returned {len(data)} vectors for {len(inputs)} texts (model {self.model_name}).",
                    permanent=False,
                )
            for position, item in zip(batch, data, strict=True):
                rows[position] = np.asarray(item.embedding, dtype=np.float32)
            tokens = int(getattr(response.usage, "prompt_tokens", 0) or 0)
            usage += Usage(
                requests=1,
                input_tokens=tokens,
                cost_usd=estimate_cost(
                    self._config.prices, self.model_name, input_tokens=tokens, warn=self._priced
                ),
            )
        vectors = np.vstack([row for row in rows if row is not None]).astype(np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        self._dimension = int(vectors.shape[1])
        return EmbeddingBatch(vectors=vectors, model=self.model_name, dimension=self._dimension, usage=usage)
