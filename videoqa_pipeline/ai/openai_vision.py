"""Frame analysis with a chat model that takes images (OpenAI or a compatible server).

Each frame is sent as a base64 JPEG data URI with a JSON-schema response format asking for
``caption``, ``labels`` and ``visible_text``. One frame per request keeps a failure local to
its frame and the prompt small; requests run in a thread pool bounded by
``VIDEOQA_OPENAI_MAX_CONCURRENCY`` so a long video cannot flood the API.

Small open VLMs behind vLLM, Ollama, llama-server or LM Studio are served too:

* a self-hosted server's replies are bounded (``max_tokens``): a small model without a grammar
  may otherwise repeat itself until its context is full;
* a server that refuses one of those optional parameters (an error naming it: llama-server builds
  that only know ``json_object``, OpenAI models without structured outputs, a gateway to a model
  that only takes ``max_completion_tokens``) is asked once more without it, and that server and
  model are remembered for the rest of the process, so later frames do not pay for the refused
  request again; a server that ignores the format (Ollama before structured outputs) needs
  nothing: its reply is read tolerantly;
* replies are parsed tolerantly (:func:`parse_analysis_reply`): JSON inside Markdown fences or
  prose, single quotes, trailing commas, missing fields (defaults), labels as one string; a
  plain-text reply becomes the caption. What could not be read is a warning in the analysis's
  ``facts`` (the stage shows it in its metadata), never a failed stage.
"""

from __future__ import annotations

import ast
import base64
import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from videoqa_pipeline.ai.config import DEFAULT_OPENAI_MODELS, AIConfig, is_openai_endpoint
from videoqa_pipeline.ai.errors import AIProviderError
from videoqa_pipeline.ai.openai_client import Endpoint, call_api, make_client
from videoqa_pipeline.ai.pricing import estimate_cost
from videoqa_pipeline.ai.types import FrameAnalysis, FrameAnalysisBatch, Usage

logger = logging.getLogger(__name__)

PROMPT = (
    "This is a keyframe from a video. Describe it for search. Return JSON with: "
    "caption - one factual sentence about what is shown; "
    "labels - up to 10 short lowercase nouns or noun phrases for objects, people, setting and activity; "
    "visible_text - all legible text exactly as written, lines separated by newlines, empty string if none. "
    'Reply with the JSON object only, like {"caption": "...", "labels": ["..."], "visible_text": "..."}.'
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


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_FENCE_MARK = re.compile(r"```(?:json|JSON)?")
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
#: Keys small models use instead of the asked ones.
_CAPTION_KEYS = ("caption", "description", "summary", "scene")
_LABEL_KEYS = ("labels", "tags", "objects", "keywords")
_TEXT_KEYS = ("visible_text", "text", "ocr_text", "ocr", "on_screen_text")
#: Longest plain-text reply kept as a caption.
MAX_CAPTION_CHARS = 500
#: Most tokens a self-hosted model may write about one frame: small VLMs without a grammar
#: sometimes repeat themselves until the context is full (llama-server's default has no limit).
#: OpenAI's own models are left alone (its newer models refuse ``max_tokens``).
MAX_REPLY_TOKENS = 600


def _json_object(text: str) -> dict[str, Any] | None:
    """The first JSON-like object in ``text``: strict JSON, else Python-literal syntax (single
    quotes, ``True``/``None``), else JSON with trailing commas removed; None when none parses."""
    fenced = _FENCE.search(text)
    candidates = [fenced.group(1).strip()] if fenced else []
    first, last = text.find("{"), text.rfind("}")
    if 0 <= first < last:
        candidates.append(text[first : last + 1])
    for candidate in candidates:
        for attempt in (
            lambda c: json.loads(c),
            lambda c: json.loads(_TRAILING_COMMA.sub(r"\1", c)),
            lambda c: ast.literal_eval(_TRAILING_COMMA.sub(r"\1", c)),
        ):
            try:
                parsed = attempt(candidate)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(parsed, dict):
                return parsed
    return None


def _first(parsed: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {str(key).lower(): value for key, value in parsed.items()}
    return next((lowered[key] for key in keys if lowered.get(key) not in (None, "", [])), None)


def _as_labels(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value or "").split(",")
    return [str(label).strip().lower() for label in items if str(label).strip()][:20]


def parse_analysis_reply(content: str | None) -> tuple[dict[str, Any], str | None]:
    """Read a vision model's reply, however loosely it followed the requested JSON.

    Returns:
        ``({"caption", "labels", "visible_text"}, warning)``: the fields, with defaults for what
        is missing, and a sentence saying what could not be read (None when the reply was a
        JSON object with the three fields).
    """
    text = (content or "").strip()
    if not text:
        return {"caption": None, "labels": [], "visible_text": ""}, "the model's reply was empty"
    parsed = _json_object(text)
    if parsed is None:
        caption = " ".join(_FENCE_MARK.sub(" ", text).split())[:MAX_CAPTION_CHARS] or None
        return (
            {"caption": caption, "labels": [], "visible_text": ""},
            "the model answered in plain text, not JSON: its reply is kept as the caption",
        )
    visible = _first(parsed, _TEXT_KEYS)
    if isinstance(visible, list):
        visible = "\n".join(str(line) for line in visible)
    fields = {
        "caption": str(_first(parsed, _CAPTION_KEYS) or "").strip() or None,
        "labels": _as_labels(_first(parsed, _LABEL_KEYS)),
        "visible_text": str(visible or "").strip(),
    }
    present = {str(key).lower() for key in parsed}
    groups = {"caption": _CAPTION_KEYS, "labels": _LABEL_KEYS, "visible_text": _TEXT_KEYS}
    missing = [name for name, keys in groups.items() if not present.intersection(keys)]
    warning: str | None = f"the model's JSON had no {', '.join(missing)}: left empty" if missing else None
    return fields, warning


#: Optional request parameters each (base URL, model) refused in this process: later frames go
#: without them at once.
_refused_by_server: dict[tuple[str | None, str], set[str]] = {}
_refused_lock = threading.Lock()

#: Words of the servers' refusals of a response format (llama-server: 'response_format type must be
#: one of "text" or "json_object"'; OpenAI: "'response_format' of type 'json_schema' is not
#: supported with this model"; vLLM and others name the schema, the grammar or guided decoding).
_FORMAT_WORDS = ("response_format", "json_schema", "schema", "structured output", "grammar", "guided")


def refused_parameters(error: AIProviderError, sent: Mapping[str, Any]) -> set[str]:
    """The optional parameters among ``sent`` that ``error`` says the server refuses.

    Only an HTTP error whose message names one counts: a 400 for an invalid image or a context
    overflow would fail again without them, and must fail the frame at once with one request.
    ``max_tokens`` is refused by gateways to models that only take ``max_completion_tokens``;
    the response format by servers without structured outputs.
    """
    if error.status_code is None or error.status_code < 400 or error.status_code == 429:
        return set()
    text = str(error).lower()
    refused = set()
    if "max_tokens" in sent and "max_tokens" in text:
        refused.add("max_tokens")
    if "response_format" in sent and any(word in text for word in _FORMAT_WORDS):
        refused.add("response_format")
    return refused


class OpenAIFrameAnalyzer:
    """A :class:`~videoqa_pipeline.ai.types.FrameAnalyzer` that calls ``/chat/completions`` with images."""

    def __init__(self, config: AIConfig, *, detail: str = "low") -> None:
        """Create the client.

        Args:
            config: AI settings (model, key, base URL, retries, concurrency, prices).
            detail: OpenAI image detail level; ``low`` (85 tokens per image) is enough for
                keyframe captions and large text. Other servers ignore it.
        """
        self._config = config
        self._client = make_client(config, "vision")
        self._endpoint = Endpoint.of(config, "vision")
        self._priced = is_openai_endpoint(config.base_url_for("vision"))
        self._base_url = config.base_url_for("vision")
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

    @property
    def uses_schema(self) -> bool:
        """Whether requests still ask for the ``json_schema`` response format."""
        return "response_format" not in self._refused()

    def _refused(self) -> set[str]:
        with _refused_lock:
            return set(_refused_by_server.get((self._base_url, self.model_name), ()))

    def _optional_parameters(self) -> dict[str, Any]:
        """The JSON schema, and for a self-hosted server a bound on a small model that would
        ramble on; less what this server refused before."""
        refused = self._refused()
        wanted: dict[str, Any] = {"response_format": RESPONSE_FORMAT}
        if not self._priced:
            wanted["max_tokens"] = MAX_REPLY_TOKENS
        return {name: value for name, value in wanted.items() if name not in refused}

    def _complete(self, what: str, messages: list[dict[str, Any]]) -> Any:
        """One chat completion; asked once more without the optional parameters the server refuses."""

        def create(extra: dict[str, Any]) -> Any:
            return call_api(
                what,
                lambda: self._client.chat.completions.create(
                    model=self.model_name, messages=messages, **extra
                ),
                self._endpoint,
            )

        sent = self._optional_parameters()
        try:
            return create(sent)
        except AIProviderError as error:
            refused = refused_parameters(error, sent)
            if not refused:
                raise
            logger.info(
                "%s: the server refused %s (%s); asking without", what, ", ".join(sorted(refused)), error
            )
        response = create({name: value for name, value in sent.items() if name not in refused})
        with _refused_lock:
            _refused_by_server.setdefault((self._base_url, self.model_name), set()).update(refused)
        logger.warning(
            "%s (model %s) does not take %s: frames are sent without it and their replies read tolerantly",
            self._endpoint.name,
            self.model_name,
            " or ".join(sorted(refused)),
        )
        return response

    def _analyze_one(self, index: int, jpeg: bytes) -> tuple[FrameAnalysis, Usage]:
        data_uri = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        what = f"analyse frame {index} with {self.model_name}"
        messages: list[dict[str, Any]] = [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": PROMPT},
                    {"type": "image_url", "image_url": {"url": data_uri, "detail": self._detail}},
                ],
            }
        ]
        response = self._complete(what, messages)
        parsed, warning = self._read_reply(response)
        input_tokens = int(getattr(getattr(response, "usage", None), "prompt_tokens", 0) or 0)
        output_tokens = int(getattr(getattr(response, "usage", None), "completion_tokens", 0) or 0)
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
                warn=self._priced,
            ),
        )
        if warning:
            logger.warning("frame %d (%s): %s", index, self.model_name, warning)
        analysis = FrameAnalysis(
            caption=parsed["caption"],
            labels=parsed["labels"],
            ocr_text=parsed["visible_text"],
            model=self.model_name,
            facts={"warning": warning} if warning else {},
        )
        return analysis, usage

    def _read_reply(self, response: Any) -> tuple[dict[str, Any], str | None]:
        """The fields of a completion and a warning; a refusal or a missing message is a warning."""
        try:
            message = response.choices[0].message
        except (AttributeError, IndexError, TypeError):
            return {"caption": None, "labels": [], "visible_text": ""}, "the server's reply had no message"
        refusal = getattr(message, "refusal", None)
        if refusal:
            return {"caption": None, "labels": [], "visible_text": ""}, f"the model refused: {refusal}"
        content = message.content if isinstance(getattr(message, "content", None), str) else None
        return parse_analysis_reply(content)
