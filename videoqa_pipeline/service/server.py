"""How ``videoqa serve`` runs an app on uvicorn: HTTP/1.1 with bounded request heads.

What uvicorn offers, and what is added here:

* header **size**: uvicorn's h11 protocol takes ``h11_max_incomplete_event_size``, the most bytes a
  request head may hold while incomplete; it is set to ``VIDEOQA_HTTP_MAX_HEADER_BYTES``. (The
  default httptools protocol has no such bound: an unfinished 100 MB header was held in memory,
  and parsing it stalled the event loop.) h11 is always installed with uvicorn, so the service
  behaves the same wherever it runs;
* header **time**: uvicorn has none (its keep-alive timeout starts only after a first answer, and
  any byte received cancels it), so :class:`GuardedH11Protocol` closes a connection whose request
  head is not complete within ``VIDEOQA_HTTP_HEADER_TIMEOUT`` of the connection opening or of the
  previous answer: 408 when part of a head came, silently when nothing did;
* refusals made here (431 head too large, 408 head too slow, 400 not HTTP) answer with the same
  JSON as the app's, naming the setting, and are counted in the app's ``/metrics``;
* header **count** and body **time** are checked in the app (:mod:`videoqa_pipeline.service.guard`),
  where the parsed head is at hand.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
from collections.abc import Callable
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from videoqa_pipeline.service.guard import UNROUTED
from videoqa_pipeline.settings import Settings

logger = logging.getLogger(__name__)

#: Seconds an idle keep-alive connection stays open after an answer (uvicorn's default).
KEEP_ALIVE_SECONDS = 5


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and JSON refusals.

    Configured per server by :func:`guarded_protocol` (class attributes, as uvicorn builds one
    protocol instance per connection from the class).
    """

    max_header_bytes: ClassVar[int] = 16 * 1024
    header_timeout: ClassVar[float] = 10.0
    refusals: ClassVar[list[Callable[[int], None]]] = []  # called with the status of each refusal

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_timer is not None and not self._awaiting_head():
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._awaiting_head():
            self._arm_head_timer()

    def send_400_response(self, msg: str) -> None:
        """h11 refused the request head: too large (431) or not HTTP/1.1 (400)."""
        if len(self.conn.trailing_data[0]) > self.max_header_bytes:
            self._refuse(
                431,
                "request_header_too_large",
                f"the request line and headers exceed {self.max_header_bytes} bytes "
                "(VIDEOQA_HTTP_MAX_HEADER_BYTES)",
            )
        else:
            self._refuse(400, "invalid_http", "the request is not valid HTTP/1.1")

    def _awaiting_head(self) -> bool:
        return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if getattr(self, "_head_timer", None) is not None:
            assert self._head_timer is not None
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._awaiting_head():
            return
        if not self.conn.trailing_data[0]:
            self.transport.close()  # nothing was asked: an idle connection is closed without a word
            return
        self._refuse(
            408,
            "request_header_timeout",
            f"the request line and headers did not arrive within {self.header_timeout:g} s "
            "(VIDEOQA_HTTP_HEADER_TIMEOUT)",
        )

    def _refuse(self, status: int, error: str, detail: str) -> None:
        body = json.dumps({"error": error, "detail": detail}).encode()
        head = (
            f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode("ascii") + body)
        self.transport.close()
        logger.info("refused a request from %s: %s", _client(self.client), detail)
        for report in self.refusals:
            report(status)


class _WithoutBareRefusals(logging.Filter):
    """Drops uvicorn's "Invalid HTTP request received.": :meth:`GuardedH11Protocol._refuse` logs
    the same refusal with its reason (header too large, or not HTTP), so one refusal is one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Invalid HTTP request received."


_BARE_REFUSALS = _WithoutBareRefusals()


def _client(address: tuple[str, int] | None) -> str:
    return f"{address[0]}:{address[1]}" if address else "an unknown client"


def guarded_protocol(
    max_header_bytes: int, header_timeout: float, on_refusal: Callable[[int], None]
) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` class with these limits, reporting refusals to ``on_refusal``."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {
            "max_header_bytes": max_header_bytes,
            "header_timeout": header_timeout,
            "refusals": [on_refusal],
        },
    )


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> Any:
    """The ``uvicorn.Config`` of ``videoqa serve`` for ``app`` (built by ``create_app``).

    Args:
        app: The Starlette app; refusals are counted in its ``state.metrics`` when it has one.
        settings: The ``VIDEOQA_HTTP_*`` limits.
        options: More ``uvicorn.Config`` arguments (host, port, log_level, ...).

    Returns:
        A ``uvicorn.Config``.
    """
    import uvicorn

    metrics = getattr(getattr(app, "state", None), "metrics", None)

    def count(status: int) -> None:
        if metrics is not None:
            metrics.observe(UNROUTED, "-", status, 0.0)

    protocol = guarded_protocol(settings.http_max_header_bytes, settings.http_header_timeout, count)
    config = uvicorn.Config(
        app,
        http=protocol,
        h11_max_incomplete_event_size=settings.http_max_header_bytes,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        ws="none",
        access_log=False,
        **options,
    )
    logging.getLogger("uvicorn.error").addFilter(_BARE_REFUSALS)  # after Config set up uvicorn's logging
    return config
