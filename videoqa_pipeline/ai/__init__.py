"""AI providers: transcription, frame analysis and embeddings, offline or via OpenAI.

Pure library code (no Dagster). Pick implementations with :class:`AIConfig` and the
``get_*`` functions of :mod:`.registry`; every result carries :class:`Usage` for metadata.
"""

from videoqa_pipeline.ai.config import AIConfig
from videoqa_pipeline.ai.errors import AIProviderError
from videoqa_pipeline.ai.registry import clear_cache, get_embedder, get_frame_analyzer, get_transcriber
from videoqa_pipeline.ai.types import (
    Embedder,
    EmbeddingBatch,
    FrameAnalysis,
    FrameAnalysisBatch,
    FrameAnalyzer,
    Transcriber,
    Transcript,
    TranscriptSegment,
    Usage,
    Word,
)

__all__ = [
    "AIConfig",
    "AIProviderError",
    "Embedder",
    "EmbeddingBatch",
    "FrameAnalysis",
    "FrameAnalysisBatch",
    "FrameAnalyzer",
    "Transcriber",
    "Transcript",
    "TranscriptSegment",
    "Usage",
    "Word",
    "clear_cache",
    "get_embedder",
    "get_frame_analyzer",
    "get_transcriber",
]
