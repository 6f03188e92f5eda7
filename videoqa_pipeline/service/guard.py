"""The one place where a request's outcome is decided when a handler does not answer normally.

:class:`RequestGuard` wraps the whole app (outside routing), so every request passes through it,
whichever route it reaches or fails to reach:

* **limits a handler cannot apply**: more headers than ``VIDEOQA_HTTP_MAX_HEADERS`` (431), and a
  body that does not arrive within ``VIDEOQA_HTTP_BODY_TIMEOUT`` of the request head (408); the
  header *size* and header *time* limits act earlier, in the connection itself
  (:mod:`videoqa_pipeline.service.server`);
* **errors mapped to answers**: :class:`~videoqa_pipeline.service.bodies.ClientError` becomes its
  4xx with ``{"error", "detail"}``; an unreachable database becomes 503 with ``retry-after``; a
  client that disconnects before its request is complete is one log line; anything else is a
  500 with a JSON body and one traceback in the log, never a bare "Internal Server Error";
* **metrics**: every answer, 4xx and 5xx included, is counted by route template, method and
  status in ``/metrics`` (a request whose client went away counts as 499, as nginx names it).
  Paths no route matches share one label, so a scanner cannot grow the metrics without bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import psycopg
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from videoqa_pipeline.service.bodies import ClientError
from videoqa_pipeline.service.metrics import ServiceMetrics
from videoqa_pipeline.storage.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

#: The route label of requests that matched no route (404, 405 of unknown paths, early refusals).
UNROUTED = "(unrouted)"
#: The status counted for a request whose client disconnected before it could be answered.
CLIENT_CLOSED = 499
#: Seconds a client is asked to wait after a 503.
RETRY_AFTER_SECONDS = 5


def route_label(scope: Scope) -> str:
    """The route template that handled ``scope`` (``/jobs/{job_id}``), or :data:`UNROUTED`."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNROUTED


def _declares_body(scope: Scope) -> bool:
    """Whether the request head announces a body (a non-zero length, or chunked encoding)."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip(b"0 ")):
            return True
    return False


class _Exchange:
    """One request's receive and send, watched: body deadline, body size seen, status sent."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, body_timeout: float) -> None:
        self._receive = receive
        self._send = send
        self._body_timeout = body_timeout
        self._deadline = asyncio.get_running_loop().time() + body_timeout
        self.body_complete = not _declares_body(scope)
        self.body_bytes = 0
        self.status: int | None = None

    async def receive(self) -> Message:
        if self.body_complete:
            # After the body (e.g. a streaming response listening for a disconnect): no deadline.
            return await self._receive()
        remaining = self._deadline - asyncio.get_running_loop().time()
        try:
            message = await asyncio.wait_for(self._receive(), max(remaining, 0.0))
        except asyncio.TimeoutError:
            raise ClientError(
                408,
                "body_timeout",
                f"the request body did not arrive within {self._body_timeout:g} s of its headers "
                f"(VIDEOQA_HTTP_BODY_TIMEOUT); {self.body_bytes} bytes came: send the body at once",
            ) from None
        if message["type"] == "http.request":
            self.body_bytes += len(message.get("body", b""))
            self.body_complete = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        await self._send(message)

    async def answer(
        self, status: int, error: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        """Send a JSON error; the connection is closed when the body was not read to its end."""
        body = json.dumps({"error": error, "detail": detail}).encode()
        fields = {"content-type": "application/json", "content-length": str(len(body)), **(headers or {})}
        if not self.body_complete:
            fields["connection"] = "close"
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (name.encode("latin-1"), value.encode("latin-1")) for name, value in fields.items()
                ],
            }
        )
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


class RequestGuard:
    """ASGI middleware: header-count and body-time limits, errors as answers, every status counted."""

    def __init__(
        self, app: ASGIApp, *, metrics: ServiceMetrics, max_headers: int, body_timeout: float
    ) -> None:
        """Args:
        app: The routed app.
        metrics: Where every answer is counted.
        max_headers: Most request headers (``VIDEOQA_HTTP_MAX_HEADERS``).
        body_timeout: Seconds the whole body may take after the head (``VIDEOQA_HTTP_BODY_TIMEOUT``).
        """
        self.app = app
        self.metrics = metrics
        self.max_headers = max_headers
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        exchange = _Exchange(scope, receive, send, self.body_timeout)
        try:
            await self._handle(scope, exchange)
        finally:
            status = exchange.status if exchange.status is not None else CLIENT_CLOSED
            self.metrics.observe(route_label(scope), scope["method"], status, time.perf_counter() - started)

    async def _handle(self, scope: Scope, exchange: _Exchange) -> None:
        where = f"{scope['method']} {scope['path'][:200]}"
        try:
            if len(scope["headers"]) > self.max_headers:
                raise ClientError(
                    431,
                    "too_many_headers",
                    f"the request has {len(scope['headers'])} headers, more than {self.max_headers} "
                    "(VIDEOQA_HTTP_MAX_HEADERS)",
                )
            await self.app(scope, exchange.receive, exchange.send)
        except ClientError as error:
            if exchange.status is not None:
                raise
            await exchange.answer(error.status, error.error, error.detail)
        except ClientDisconnect:
            logger.info(
                "%s: the client disconnected before its request was complete (%d body bytes came)",
                where,
                exchange.body_bytes,
            )
        except (DatabaseUnavailableError, psycopg.OperationalError) as error:
            if exchange.status is not None:
                raise
            logger.warning("%s: %s", where, error)
            await exchange.answer(
                503, "database_unavailable", str(error), {"retry-after": str(RETRY_AFTER_SECONDS)}
            )
        except Exception:
            if exchange.status is not None:
                raise  # the answer had begun: the server closes the connection
            logger.exception("%s failed", where)
            await exchange.answer(
                500, "internal_error", "the service failed on this request; the reason is in its log"
            )
