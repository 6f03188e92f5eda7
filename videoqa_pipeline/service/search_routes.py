"""Search and ask over HTTP, the media they point at, and a one-page UI.

* ``GET /search?q=...&video=ID&k=5&start=&end=&mode=hybrid``: moments, best first, times in seconds,
  each with ``keyframe_url`` and ``video_url`` for a browser;
* ``POST /ask`` ``{"question": ..., "video_ids": [...], "k": 5, "start": s, "end": s}``: the answer
  and its structured citations;
* ``GET /media/{key}``: keyframes and normalized videos from the blob store, with HTTP ``Range``
  support so a ``<video>`` element can seek; other blobs (originals, tables) are not served;
* ``GET /``: a search page (plain HTML and JavaScript, no build step) with keyframe thumbnails and
  a player that jumps to the moment clicked.

The search embedder is loaded on the first query, not at startup, so the webhook and operations
routes of the same app start instantly.
"""

from __future__ import annotations

import mimetypes
import re
import threading
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse

from videoqa_pipeline.ai.errors import AIProviderError
from videoqa_pipeline.ai.registry import get_embedder
from videoqa_pipeline.search import (
    Answerer,
    ParquetSearchBackend,
    PostgresSearchBackend,
    SearchBackend,
    Searcher,
    SearchError,
    SearchFilters,
    answerer_for,
    ask,
)
from videoqa_pipeline.service.bodies import decode_json, read_body
from videoqa_pipeline.settings import Settings, environment
from videoqa_pipeline.storage.blobs import BlobStore, LocalBlobStore, validate_key
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.errors import BlobNotFoundError, InvalidBlobKeyError

#: Blob stages a browser may fetch: pictures and the playable video, never originals or tables.
SERVED_STAGES = frozenset({"keyframes", "normalized"})

#: Largest question or query accepted.
MAX_QUERY_CHARS = 2000

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")

OPENAPI_PATHS: dict[str, Any] = {
    "/search": {
        "get": {
            "summary": "Find moments of the stored videos matching a query",
            "parameters": [
                {"name": "q", "in": "query", "required": True, "schema": {"type": "string"}},
                {"name": "video", "in": "query", "schema": {"type": "string"}, "description": "Repeatable"},
                {"name": "k", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                {"name": "start", "in": "query", "schema": {"type": "number"}},
                {"name": "end", "in": "query", "schema": {"type": "number"}},
                {
                    "name": "mode",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["hybrid", "vector", "text"]},
                },
            ],
            "responses": {"200": {"description": "Moments, best first"}, "400": {"description": "Bad query"}},
        }
    },
    "/ask": {
        "post": {
            "summary": "Answer a question from the stored videos with [video_id @ mm:ss] citations",
            "responses": {
                "200": {"description": "Answer and citations"},
                "400": {"description": "Bad question"},
            },
        }
    },
    "/media/{key}": {
        "get": {
            "summary": "A keyframe or normalized video (Range requests supported)",
            "responses": {"200": {"description": "The blob"}, "206": {"description": "Part of it"}},
        }
    },
}


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def media_url(key: str) -> str:
    """The ``/media/...`` URL of a blob key."""
    return "/media/" + quote(key, safe="/")


class SearchService:
    """The searcher and answerer of one app, built on first use (loading the embedder takes a second)."""

    def __init__(
        self, settings: Settings, database: Database, store_factory: Callable[[], BlobStore]
    ) -> None:
        """Args:
        settings: Deployment settings (METADATA_STORAGE picks the backend).
        database: The metadata database (used when METADATA_STORAGE=postgres).
        store_factory: Makes the blob store of the media (and of the Parquet tables when
            METADATA_STORAGE=s3); called on first use.
        """
        self.settings = settings
        self.database = database
        self._store_factory = store_factory
        self._store: BlobStore | None = None
        self._lock = threading.RLock()
        self._searcher: Searcher | None = None
        self._answerer: Answerer | None = None

    @property
    def store(self) -> BlobStore:
        """The blob store, made on first use."""
        with self._lock:
            if self._store is None:
                self._store = self._store_factory()
            return self._store

    def backend(self) -> SearchBackend:
        """PostgreSQL, or the Parquet tables of the blob store."""
        if self.settings.metadata_storage == "s3":
            return ParquetSearchBackend(
                self.store if self.settings.file_storage == "s3" else _s3(self.settings)
            )
        return PostgresSearchBackend(self.database)

    def searcher(self) -> Searcher:
        """The shared searcher (embedder loaded once)."""
        with self._lock:
            if self._searcher is None:
                embedder = get_embedder(self.settings.ai)
                self._searcher = Searcher(self.backend(), embedder)
            return self._searcher

    def answerer(self) -> Answerer:
        """Chat with OpenAI when configured, else extractive."""
        searcher = self.searcher()
        with self._lock:
            if self._answerer is None:
                self._answerer = answerer_for(searcher, environment())
            return self._answerer

    def moment_json(self, moments: list[Any]) -> list[dict[str, Any]]:
        """Moments as JSON with browser URLs for the keyframe and the video."""
        video_keys: dict[str, str | None] = {}
        results = []
        for moment in moments:
            if moment.video_id not in video_keys:
                video_keys[moment.video_id] = self.searcher().backend.video_blob_key(moment.video_id)
            video_key = video_keys[moment.video_id]
            results.append(
                {
                    **moment.to_dict(),
                    "keyframe_url": media_url(moment.keyframe) if moment.keyframe else None,
                    "video_url": media_url(video_key) if video_key else None,
                }
            )
        return results


def _s3(settings: Settings) -> BlobStore:
    from videoqa_pipeline.search import backend_for

    backend = backend_for(settings)
    assert isinstance(backend, ParquetSearchBackend)
    return backend.store


def _filters(video_ids: list[str], start: Any, end: Any) -> SearchFilters:
    def number(name: str, value: Any) -> float | None:
        if value in (None, ""):
            return None
        try:
            parsed = float(value)
        except (TypeError, ValueError):
            raise SearchError(f"{name}={str(value)[:40]!r} is not a number of seconds") from None
        if not parsed >= 0 or parsed == float("inf"):
            raise SearchError(f"{name} must be a finite number of seconds >= 0")
        return parsed

    return SearchFilters(
        video_ids=tuple(video_ids), start_seconds=number("start", start), end_seconds=number("end", end)
    )


def _int(value: Any, default: int) -> int:
    if value in (None, ""):
        return default
    if isinstance(value, bool):
        raise SearchError("k must be an integer from 1 to 100")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SearchError(f"k={str(value)[:40]!r} is not an integer") from None


def _media_response(store: BlobStore, key: str, request: Request) -> Response:
    if isinstance(store, LocalBlobStore):
        path = store.path_for(key)
        if not path.is_file():
            raise BlobNotFoundError(f"blob {key!r} does not exist")
        return FileResponse(path)  # answers Range requests with 206
    # Other stores: stream the requested range from the store (one ranged GET on S3), so a
    # player seeking in a long video never makes the service hold it in memory.
    size = store.size(key)
    media_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    headers = {"accept-ranges": "bytes"}
    first, last, status = 0, size - 1, 200
    match = _RANGE.match(request.headers.get("range", "").strip())
    if match and (match.group(1) or match.group(2)):
        if match.group(1):
            first = int(match.group(1))
            last = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
        else:
            first = max(0, size - int(match.group(2)))
        if first >= size or first > last:
            return Response(status_code=416, headers={"content-range": f"bytes */{size}"})
        headers["content-range"] = f"bytes {first}-{last}/{size}"
        status = 206
    headers["content-length"] = str(last - first + 1 if size else 0)
    if size == 0:
        return Response(b"", media_type=media_type, headers=headers)
    return StreamingResponse(
        store.iter_bytes(key, first, last), status_code=status, media_type=media_type, headers=headers
    )


def build_search_handlers(service: SearchService, *, max_body_bytes: int = 64 * 1024) -> dict[str, Any]:
    """The request handlers, by route path (mounted by ``create_app``).

    Args:
        service: The searcher, answerer and blob store behind the routes.
        max_body_bytes: Largest ``POST /ask`` body (``VIDEOQA_HTTP_MAX_BODY_BYTES``).
    """

    async def index(request: Request) -> Response:
        page = resources.files("videoqa_pipeline.service").joinpath("static/index.html").read_text("utf-8")
        return HTMLResponse(page)

    async def search_endpoint(request: Request) -> Response:
        params = request.query_params
        query = params.get("q", "")
        try:
            if len(query) > MAX_QUERY_CHARS:
                raise SearchError(f"the query is longer than {MAX_QUERY_CHARS} characters")
            filters = _filters(params.getlist("video"), params.get("start"), params.get("end"))
            k = _int(params.get("k"), 5)
            mode = params.get("mode", "hybrid")

            def run() -> dict[str, Any]:
                result = service.searcher().search(query, k=k, filters=filters, mode=mode)  # type: ignore[arg-type]
                return {
                    "query": query,
                    "mode": result.mode,
                    "took_ms": round(result.seconds * 1000, 1),
                    "results": service.moment_json(result.moments),
                }

            return JSONResponse(await run_in_threadpool(run))
        except SearchError as error:
            return _error(400, "invalid_query", str(error))
        except AIProviderError as error:
            return _error(502, "embedding_failed", str(error))

    async def ask_endpoint(request: Request) -> Response:
        body = decode_json(await read_body(request, max_body_bytes))  # ClientError: a 4xx with the reason
        if not isinstance(body, dict) or not isinstance(body.get("question"), str):
            return _error(400, "invalid_question", 'send a JSON object with a "question" string')
        question = body["question"]
        video_ids = body.get("video_ids") or []
        if not isinstance(video_ids, list) or not all(isinstance(v, str) for v in video_ids):
            return _error(400, "invalid_question", "video_ids must be a list of video ID strings")
        try:
            if len(question) > MAX_QUERY_CHARS:
                raise SearchError(f"the question is longer than {MAX_QUERY_CHARS} characters")
            filters = _filters(video_ids, body.get("start"), body.get("end"))
            k = _int(body.get("k"), 5)

            def run() -> dict[str, Any]:
                answer = ask(question, service.searcher(), service.answerer(), k=k, filters=filters)
                document = answer.to_dict()
                document["moments"] = service.moment_json(answer.moments)
                return document

            return JSONResponse(await run_in_threadpool(run))
        except SearchError as error:
            return _error(400, "invalid_question", str(error))
        except AIProviderError as error:
            return _error(502, "answer_failed", str(error))

    async def media(request: Request) -> Response:
        key = request.path_params["key"]
        try:
            validate_key(key)
        except InvalidBlobKeyError as error:
            return _error(400, "invalid_key", str(error))
        parts = key.split("/")
        if len(parts) != 3 or parts[1] not in SERVED_STAGES:
            return _error(404, "not_found", "only keyframes and normalized videos are served under /media")
        try:
            return await run_in_threadpool(_media_response, service.store, key, request)
        except BlobNotFoundError:
            return _error(404, "not_found", f"no blob {key!r} in the blob store")

    return {"/": index, "/search": search_endpoint, "/ask": ask_endpoint, "/media/{key:path}": media}
