"""A local HTTP server speaking the parts of the OpenAI API the pipeline uses.

It answers /v1/audio/transcriptions, /v1/chat/completions and /v1/embeddings with responses
shaped like the real API's, records every request (parsed JSON or multipart fields), and
can be scripted to answer the next requests of an endpoint with errors: 429 with
Retry-After, 500, 400, or a malformed JSON body.

A **flavour** makes it behave like a self-hosted model server instead of OpenAI (see
:data:`FLAVOURS` for what each reproduces and where that behaviour was read). Chat requests
without an image are answered from the prompt the project built (:meth:`OpenAITestServer._answer`):
the first moment's first sentence with that moment's label, so tests check both the prompt and
the parsing of the answer. Streaming requests are refused: the project must not rely on them.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import io
import json
import re
import threading
import time
import wave
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

EMBED_DIM = 1536

NOT_FOUND = "not found in the videos"


@dataclass(frozen=True)
class Flavour:
    """How one kind of server answers where servers differ.

    Attributes:
        name: ``openai``, ``vllm``, ``ollama``, ``ollama-0.4`` or ``llama.cpp``.
        error_shape: ``openai`` (``{"error": {"message", "type", "param", "code"}}``), ``vllm``
            (top level ``{"object": "error", "message", "type", "param", "code"}``) or
            ``llama.cpp`` (``{"error": {"code", "message", "type"}}``).
        json_schema: ``enforced`` (the reply is the schema's JSON), ``ignored`` (the format is
            accepted and the model answers as it likes) or ``rejected`` (400).
        transcriptions: Whether ``/v1/audio/transcriptions`` exists.
        checks_models: Whether an unknown model name is a 404 (llama-server serves whatever it
            loaded under any name).
        loose_reply: What the model says about a frame when nothing enforces the JSON.
    """

    name: str
    error_shape: str = "openai"
    json_schema: str = "enforced"
    transcriptions: bool = True
    checks_models: bool = False
    loose_reply: str = ""


#: The servers reproduced, and where each behaviour was read (their source and issue trackers).
FLAVOURS: dict[str, Flavour] = {
    "openai": Flavour("openai"),
    # vLLM's OpenAI server: response_format json_schema is guided decoding (the reply is the
    # schema's JSON); errors are its ErrorResponse model at the top level of the body,
    # {"object": "error", "message", "type": "BadRequestError" | "NotFoundError", "param", "code"}
    # (vllm/entrypoints/openai/protocol.py before 0.10; later versions wrap it in "error"); an unknown
    # model is a 404 "The model `x` does not exist."; Whisper models serve /v1/audio/transcriptions.
    "vllm": Flavour("vllm", error_shape="vllm", checks_models=True),
    # Ollama's /v1 compatibility layer (0.5 and later): json_schema is honoured (structured
    # outputs); errors are {"error": {"message", "type": "api_error", "param": null, "code": null}};
    # an unknown model is a 404 'model "x" not found, try pulling it first' (seen in
    # netease-youdao/QAnything#555, musistudio/claude-code-router#518); there is no audio route, and
    # Go's router answers unknown paths with a plain-text "404 page not found".
    "ollama": Flavour("ollama", checks_models=True, transcriptions=False),
    # Ollama before structured outputs (0.4): response_format json_schema is accepted and ignored
    # (ollama/ollama#6473, #10001), so a small VLM answers in prose around its JSON.
    "ollama-0.4": Flavour(
        "ollama-0.4",
        json_schema="ignored",
        checks_models=True,
        transcriptions=False,
        loose_reply=(
            "Sure! Here is the analysis of the keyframe:\n"
            '{"caption": "A slide with large white text on a red background.", '
            '"labels": ["slide", "text"], "visible_text": "INVOICE 2024"}\n'
            "Let me know if you need anything else."
        ),
    ),
    # llama.cpp's llama-server (builds before json_schema support): response_format types other than
    # "text" and "json_object" fail with 400 'response_format type must be one of "text" or
    # "json_object", but got: json_schema' (tools/server/utils.hpp oaicompat_completion_params_parse);
    # errors are {"error": {"code", "message", "type": "invalid_request_error"}} (format_error_response);
    # no /v1/audio/transcriptions route (404 "File Not Found", not_found_error); the model name of a
    # request is not checked. Without a grammar small VLMs like to fence their JSON, write it with
    # Python quotes and leave a trailing comma.
    "llama.cpp": Flavour(
        "llama.cpp",
        error_shape="llama.cpp",
        json_schema="rejected",
        transcriptions=False,
        loose_reply=(
            "```json\n{'caption': 'A slide with large white text on a red background.',\n"
            " 'labels': ['slide', 'text'],\n 'visible_text': 'INVOICE 2024',}\n```"
        ),
    ),
}


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    json: dict[str, Any] | None = None
    fields: dict[str, list[str]] = field(default_factory=dict)
    file_bytes: bytes | None = None
    at: float = 0.0


@dataclass
class ScriptedReply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> ScriptedReply:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": None}})
    return ScriptedReply(status, body.encode(), headers or {})


def flavoured_error(flavour: Flavour, status: int, message: str, kind: str = "") -> ScriptedReply:
    """An error in the body shape ``flavour``'s server uses (see :data:`FLAVOURS`)."""
    body: dict[str, Any]
    if flavour.error_shape == "vllm":
        kind = kind or {404: "NotFoundError"}.get(status, "BadRequestError")
        body = {"object": "error", "message": message, "type": kind, "param": None, "code": status}
    elif flavour.error_shape == "llama.cpp":
        kind = kind or {404: "not_found_error"}.get(status, "invalid_request_error")
        body = {"error": {"code": status, "message": message, "type": kind}}
    else:
        kind = kind or ("api_error" if flavour.name.startswith("ollama") else "invalid_request_error")
        body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return ScriptedReply(status, json.dumps(body).encode())


def _chat_completion(model: str, content: str) -> ScriptedReply:
    payload = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
    }
    return ScriptedReply(200, json.dumps(payload).encode())


_MOMENT = re.compile(r"^Moment \d+ (\[[^\]]+\]) \([^)]*\):\nTranscript: (.*)\nOn screen: (.*)$", re.M)


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, list[str]], bytes | None]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    fields: dict[str, list[str]] = defaultdict(list)
    file_bytes = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename():
            file_bytes = payload
        else:
            fields[str(name)].append(payload.decode())
    return dict(fields), file_bytes


def _wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data), "rb") as handle:
        return handle.getnframes() / handle.getframerate()


def fake_vector(text: str) -> list[float]:
    """A deterministic, deliberately unnormalised vector (length 3) for a text."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(EMBED_DIM)
    return (vector / np.linalg.norm(vector) * 3.0).tolist()


class OpenAITestServer:
    """Threaded HTTP server on 127.0.0.1; use as a context manager.

    Args:
        flavour: A key of :data:`FLAVOURS`: which server's quirks to reproduce.
        models: Model names the server has (for flavours that check them); None = any.
    """

    def __init__(self, flavour: str = "openai", models: set[str] | None = None) -> None:
        self.flavour = FLAVOURS[flavour]
        self.models = models
        #: Appended to every chat answer derived from a prompt (e.g. a citation of no moment).
        self.answer_suffix = ""
        #: False: answers leave out the moment's label, as small models often do.
        self.cites = True
        self.requests: list[RecordedRequest] = []
        self.scripts: dict[str, deque[ScriptedReply]] = defaultdict(deque)
        self.vision_reply: dict[str, Any] | str = {
            "caption": "A slide with large white text on a red background.",
            "labels": ["slide", "text", "presentation"],
            "visible_text": "INVOICE 2024",
        }
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                server._handle(self, body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> OpenAITestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def script(self, path: str, *replies: ScriptedReply) -> None:
        """Answer the next requests to ``path`` (e.g. ``/v1/embeddings``) with ``replies`` in order."""
        self.scripts[path].extend(replies)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        path = handler.path.split("?")[0]
        content_type = handler.headers.get("content-type", "")
        record = RecordedRequest(
            path=path, headers={k.lower(): v for k, v in handler.headers.items()}, at=time.monotonic()
        )
        if content_type.startswith("multipart/form-data"):
            record.fields, record.file_bytes = _parse_multipart(content_type, body)
        elif body:
            record.json = json.loads(body)
        with self._lock:
            self.requests.append(record)
            scripted = self.scripts[path].popleft() if self.scripts[path] else None
            index = len(self.requests_to(path)) - 1
        reply = scripted or self._default_reply(path, record, index)
        handler.send_response(reply.status)
        handler.send_header("Content-Type", reply.headers.pop("Content-Type", "application/json"))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(reply.body)))
        handler.end_headers()
        handler.wfile.write(reply.body)

    def _default_reply(self, path: str, record: RecordedRequest, index: int) -> ScriptedReply:
        body = record.json or {}
        if body.get("stream"):
            return flavoured_error(self.flavour, 400, "streaming is not served by this test server")
        model = str(body.get("model") or (record.fields.get("model") or [""])[0])
        if path == "/v1/audio/transcriptions" and not self.flavour.transcriptions:
            return self._unknown_route(path)
        if self.flavour.checks_models and self.models is not None and model not in self.models:
            return self._unknown_model(model)
        if path == "/v1/audio/transcriptions":
            return self._transcription(record, index)
        if path == "/v1/chat/completions":
            return self._chat(record)
        if path == "/v1/embeddings":
            return self._embeddings(record)
        return self._unknown_route(path)

    def _unknown_route(self, path: str) -> ScriptedReply:
        if self.flavour.name.startswith("ollama"):
            return ScriptedReply(404, b"404 page not found", {"Content-Type": "text/plain"})
        if self.flavour.error_shape == "llama.cpp":
            return flavoured_error(self.flavour, 404, "File Not Found")
        return flavoured_error(self.flavour, 404, f"Unknown endpoint {path}")

    def _unknown_model(self, model: str) -> ScriptedReply:
        if self.flavour.error_shape == "vllm":
            return flavoured_error(self.flavour, 404, f"The model `{model}` does not exist.")
        return flavoured_error(self.flavour, 404, f'model "{model}" not found, try pulling it first')

    def _transcription(self, record: RecordedRequest, index: int) -> ScriptedReply:
        duration = _wav_seconds(record.file_bytes or b"")
        text = f"part {index}"
        if record.fields.get("response_format", ["json"])[0] != "verbose_json":
            return ScriptedReply(200, json.dumps({"text": text}).encode())
        first_end = min(0.5, duration)
        payload = {
            "task": "transcribe",
            "language": "english",
            "duration": duration,
            "text": text,
            "segments": [
                {
                    "id": 0,
                    "seek": 0,
                    "start": 0.1,
                    "end": max(0.2, duration - 0.1),
                    "text": f" {text}",
                    "tokens": [50364, 1821, 50414],
                    "temperature": 0.0,
                    "avg_logprob": -0.21,
                    "compression_ratio": 0.8,
                    "no_speech_prob": 0.01,
                }
            ],
            "words": [
                {"word": "part", "start": 0.1, "end": first_end},
                {"word": str(index), "start": first_end, "end": max(0.2, duration - 0.1)},
            ],
            "usage": {"type": "duration", "seconds": round(duration)},
        }
        return ScriptedReply(200, json.dumps(payload).encode())

    def _chat(self, record: RecordedRequest) -> ScriptedReply:
        body = record.json or {}
        model = str(body.get("model", ""))
        messages = body.get("messages") or []
        has_image = any(
            isinstance(message.get("content"), list)
            and any(part.get("type") == "image_url" for part in message["content"])
            for message in messages
        )
        if not has_image:
            return _chat_completion(model, self._answer(messages))
        response_format = body.get("response_format") or {}
        wants_schema = response_format.get("type") == "json_schema"
        if wants_schema and self.flavour.json_schema == "rejected":
            return flavoured_error(
                self.flavour,
                400,
                'response_format type must be one of "text" or "json_object", but got: json_schema',
            )
        if isinstance(self.vision_reply, str):  # a test's scripted free-text reply
            return _chat_completion(model, self.vision_reply)
        if wants_schema and self.flavour.json_schema == "enforced":
            return _chat_completion(model, json.dumps(self.vision_reply))
        return _chat_completion(model, self.flavour.loose_reply or json.dumps(self.vision_reply))

    def _answer(self, messages: list[dict[str, Any]]) -> str:
        """An answer derived from the prompt: the first moment's first sentence, cited by its label.

        No moments in the prompt (or none with text) is the "not found" answer the system prompt
        asks for.
        """
        prompt = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
        for label, transcript, on_screen in _MOMENT.findall(prompt):
            said = transcript if transcript != "(no speech)" else on_screen
            if said and said != "(nothing)":
                sentence = re.split(r"(?<=[.!?])\s+", said.strip())[0].rstrip(".")
                cited = f" {label}" if self.cites else ""
                return f"{sentence}{cited}.{self.answer_suffix}"
        return NOT_FOUND

    def _embeddings(self, record: RecordedRequest) -> ScriptedReply:
        inputs = (record.json or {}).get("input", [])
        inputs = [inputs] if isinstance(inputs, str) else inputs
        data = [
            {"object": "embedding", "index": i, "embedding": fake_vector(text)}
            for i, text in enumerate(inputs)
        ]
        data.reverse()  # the API does not promise order; clients must sort by index
        tokens = sum(len(text.split()) for text in inputs)
        payload = {
            "object": "list",
            "data": data,
            "model": (record.json or {}).get("model", ""),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return ScriptedReply(200, json.dumps(payload).encode())
