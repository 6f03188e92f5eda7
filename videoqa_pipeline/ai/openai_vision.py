"""Frame analysis with a chat model that takes images (OpenAI or a compatible server).

Each frame is sent as a base64 JPEG data URI with a JSON-schema response format asking for
``caption``, ``labels`` and ``visible_text``. One frame per request keeps a failure local to
its frame and the prompt small; requests run in a thread pool bounded by
``VIDEOQA_OPENAI_MAX_CONCURRENCY`` so a long video cannot flood the API.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from videoqa_pipeline.ai.config import DEFAULT_OPENAI_MODELS, AIConfig
from videoqa_pipeline.ai.errors import AIProviderError
from videoqa_pipeline.ai.openai_client import call_api, make_client
from videoqa_pipeline.ai.pricing import estimate_cost
from videoqa_pipeline.ai.types import FrameAnalysis, FrameAnalysisBatch, Usage

logger = logging.getLogger(__name__)

PROMPT = (
    "This is a keyframe from a video. Describe it for search. Return JSON with: "
    "caption - one factual sentence about what is shown; "
    "labels - up to 10 short lowercase nouns or noun phrases for objects, people, setting and activity; "
    "visible_text - all legible text exactly as written, lines separated by newlines, empty string if none."
)

RESPONSE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "frame_analysis",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "caption": {"type": "string"},
                "labels": {"type": "array", "items": {"type": "string"}},
                "visible_text": {"type": "string"},
            },
            "required": ["caption", "labels", "visible_text"],
            "additionalProperties": False,
        },
    },
}


def ensure_jpeg(data: bytes, index: int) -> bytes:
    """Return ``data`` if it is a JPEG, else re-encode it as one (the API is sent ``image/jpeg``).

    Raises:
        AIProviderError: (permanent) when the bytes are not an image at all.
    """
    if data[:3] == b"\xff\xd8\xff":
        return data
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    ok, encoded = (
        cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90]) if image is not None else (False, None)
    )
    if not ok or encoded is None:
        raise AIProviderError(
            f"Image {index} of the batch ({len(data)} bytes) is not a decodable image; expected JPEG bytes.",
            permanent=True,
        )
    return bytes(encoded.tobytes())


def parse_analysis_json(content: str | None) -> dict[str, Any]:
    """Parse the model's JSON reply, tolerating a Markdown code fence around it.

    Raises:
        ValueError: when the reply is not a JSON object with the expected fields.
    """
    text = (content or "").strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    parsed = json.loads(text)
    if not isinstance(parsed, dict):
        raise ValueError(f"expected a JSON object, got {type(parsed).__name__}")
    labels = parsed.get("labels") or []
    if not isinstance(labels, list):
        raise ValueError("'labels' is not a list")
    return {
        "caption": str(parsed.get("caption") or "").strip() or None,
        "labels": [str(label).strip().lower() for label in labels if str(label).strip()],
        "visible_text": str(parsed.get("visible_text") or "").strip(),
    }


class OpenAIFrameAnalyzer:
    """A :class:`~videoqa_pipeline.ai.types.FrameAnalyzer` that calls ``/chat/completions`` with images."""

    def __init__(self, config: AIConfig, *, detail: str = "low") -> None:
        """Create the client.

        Args:
            config: AI settings (model, key, base URL, retries, concurrency, prices).
            detail: OpenAI image detail level; ``low`` (85 tokens per image) is enough for
                keyframe captions and large text.
        """
        self._config = config
        self._client = make_client(config)
        self.model_name = config.vision_model or DEFAULT_OPENAI_MODELS["vision"]
        self._detail = detail

    def analyze(self, images: Sequence[bytes]) -> FrameAnalysisBatch:
        """Analyse JPEG frames, at most ``openai_max_concurrency`` requests at a time.

        Raises:
            AIProviderError: the first failure among the frames (others are cancelled).
        """
        jpegs = [ensure_jpeg(data, index) for index, data in enumerate(images)]
        if not jpegs:
            return FrameAnalysisBatch([], self.model_name, Usage())
        workers = max(1, min(self._config.openai_max_concurrency, len(jpegs)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="videoqa-vision") as pool:
            results = list(pool.map(self._analyze_one, range(len(jpegs)), jpegs))
        usage = Usage()
        for _analysis, one_usage in results:
            usage += one_usage
        return FrameAnalysisBatch([analysis for analysis, _u in results], self.model_name, usage)

    def _analyze_one(self, index: int, jpeg: bytes) -> tuple[FrameAnalysis, Usage]:
        data_uri = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        what = f"analyse frame {index} with {self.model_name}"
        response = call_api(
            what,
            lambda: self._client.chat.completions.create(
                model=self.model_name,
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": PROMPT},
                            {"type": "image_url", "image_url": {"url": data_uri, "detail": self._detail}},
                        ],
                    }
                ],
                response_format=RESPONSE_FORMAT,
            ),
        )
        try:
            message = response.choices[0].message
            if getattr(message, "refusal", None):
                raise AIProviderError(f"The model refused to {what}: {message.refusal}", permanent=True)
            parsed = parse_analysis_json(message.content)
        except AIProviderError:
            raise
        except (ValueError, IndexError, AttributeError, TypeError) as exc:
            raise AIProviderError(
                f"The vision model returned an unusable reply while trying to {what}: {exc}.", permanent=False
            ) from exc
        input_tokens = int(getattr(response.usage, "prompt_tokens", 0) or 0)
        output_tokens = int(getattr(response.usage, "completion_tokens", 0) or 0)
        usage = Usage(
            requests=1,
            images=1,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=estimate_cost(
                self._config.prices,
                self.model_name,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                images=1,
            ),
        )
        analysis = FrameAnalysis(
            caption=parsed["caption"],
            labels=parsed["labels"],
            ocr_text=parsed["visible_text"],
            model=self.model_name,
            facts={},
        )
        return analysis, usage
