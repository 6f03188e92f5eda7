"""A local HTTP server speaking the parts of the OpenAI API the pipeline uses.

It answers /v1/audio/transcriptions, /v1/chat/completions and /v1/embeddings with responses
shaped like the real API's, records every request (parsed JSON or multipart fields), and
can be scripted to answer the next requests of an endpoint with errors: 429 with
Retry-After, 500, 400, or a malformed JSON body.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import io
import json
import threading
import time
import wave
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

EMBED_DIM = 1536


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
    """Threaded HTTP server on 127.0.0.1; use as a context manager."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.scripts: dict[str, deque[ScriptedReply]] = defaultdict(deque)
        self.vision_reply: dict[str, Any] = {
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
        if path == "/v1/audio/transcriptions":
            return self._transcription(record, index)
        if path == "/v1/chat/completions":
            return self._chat(record)
        if path == "/v1/embeddings":
            return self._embeddings(record)
        return error_reply(404, f"Unknown endpoint {path}")

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
        payload = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": (record.json or {}).get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": json.dumps(self.vision_reply),
                        "refusal": None,
                    },
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
        }
        return ScriptedReply(200, json.dumps(payload).encode())

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
