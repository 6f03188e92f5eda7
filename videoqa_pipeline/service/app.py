"""The ASGI app of ``videoqa serve``: signed webhook intake and the operations endpoints.

:func:`create_app` builds one Starlette app from :class:`~videoqa_pipeline.settings.Settings`
with either or both route groups:

* ``webhook``: ``POST /webhook/jobs`` (plus ``/healthz`` for the load balancer);
* ``operations``: ``/healthz``, ``/readyz``, ``/jobs/peek``, ``/jobs/{id}``, ``/stats``, ``/metrics``,
  and search: ``/`` (search page), ``GET /search``, ``POST /ask``, ``/media/{key}``.

``/openapi.json`` documents the routes the app serves. ``videoqa serve`` runs one app when the
webhook and operations ports are the same, and two uvicorn servers in one process when they
differ (see :mod:`videoqa_pipeline.cli.service_commands`).

Webhook intake order (each step answers with its own 4xx and writes nothing):
body size (413) → signature headers, timestamp, HMAC (401) → UTF-8 JSON object (400) → job fields
and where source and callback may point (422) → ledger insert. The ledger row exists before the
response: 202 for a new job, 200 with the same job ID when the ``webhook-id`` was already recorded
(a replay or a sender's retry).

Every request passes :class:`~videoqa_pipeline.service.guard.RequestGuard` first: header count and
body time limits, one mapping of errors to answers (a client's mistake is a 4xx with the reason,
never a 500), and every answer counted in ``/metrics``. Request bodies are read and decoded by
:mod:`videoqa_pipeline.service.bodies` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from videoqa_pipeline.fetch import SourcePolicy
from videoqa_pipeline.service import callbacks, health, search_routes, stats
from videoqa_pipeline.service.bodies import ClientError, decode_json, read_body
from videoqa_pipeline.service.guard import RequestGuard
from videoqa_pipeline.service.metrics import CONTENT_TYPE, ServiceMetrics
from videoqa_pipeline.service.openapi import openapi_document
from videoqa_pipeline.service.webhooks import (
    ID_HEADER,
    WebhookSecretError,
    WebhookVerificationError,
    secret_key,
    verify,
)
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.blobs import BlobStore, LocalBlobStore
from videoqa_pipeline.storage.database import Database, DatabaseSettings, get_database

logger = logging.getLogger(__name__)

_INTEGER = re.compile(r"-?[0-9]{1,18}", re.ASCII)

WEBHOOK_ROUTES = "webhook"
OPERATIONS_ROUTES = "operations"


class ServiceConfigError(ValueError):
    """The service cannot start as configured; the message says which setting to change."""


@dataclass(frozen=True)
class ServiceOptions:
    """How one app behaves beyond :class:`Settings`.

    Attributes:
        routes: Route groups to serve: ``webhook`` and/or ``operations``.
        insecure_dev: Accept unsigned webhooks when ``WEBHOOK_SECRET`` is unset (local development only).
        max_body_bytes: Largest accepted request body (default: ``VIDEOQA_HTTP_MAX_BODY_BYTES``).
        tolerance_seconds: Largest accepted distance of ``webhook-timestamp`` from the clock.
        deliver_callbacks: Run the completion-callback loop in this process.
        callback_interval_seconds: Pause between callback passes (default: WORKER_POLL_MS).
    """

    routes: Collection[str] = (WEBHOOK_ROUTES, OPERATIONS_ROUTES)
    insecure_dev: bool = False
    max_body_bytes: int | None = None
    tolerance_seconds: int = 5 * 60
    deliver_callbacks: bool = False
    callback_interval_seconds: float | None = None


def _submit(db: Database, request: ledger.JobRequest, policy: SourcePolicy) -> ledger.SubmittedJob:
    # Cached after the first success; retried here when the database was down at startup.
    db.ensure_schema()
    return ledger.submit_job(db, request, strict=True, policy=policy)


def _error(status: int, error: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail, **extra}, status_code=status)


def database_for(settings: Settings) -> Database:
    """The process's ledger database for ``settings`` (pooled, lazily connecting)."""
    return get_database(
        DatabaseSettings(
            url=settings.database_url,
            home=settings.home,
            pool_size=settings.postgres_pool_size,
            timeout_seconds=settings.postgres_timeout,
        )
    )


def blob_store_for(settings: Settings) -> BlobStore:
    """The blob store FILE_STORAGE names (local directory or S3)."""
    if settings.file_storage == "s3":
        from videoqa_pipeline.aws import AwsConfig
        from videoqa_pipeline.storage.s3_blobs import S3BlobStore

        return S3BlobStore(
            settings.aws_s3_bucket or "",
            settings.s3_prefix,
            AwsConfig(region=settings.aws_region, endpoint_url=settings.aws_endpoint_url),
        )
    return LocalBlobStore(settings.blob_root)


class _CallbackLoop:
    """A daemon thread delivering due completion callbacks until stopped.

    A thread, not an asyncio task: delivery is blocking I/O (psycopg, HTTP) and must never slow
    the event loop that answers webhooks. Errors are logged and the loop goes on.
    """

    def __init__(self, settings: Settings, db: Database, metrics: ServiceMetrics, interval: float) -> None:
        self._settings = settings
        self._db = db
        self._metrics = metrics
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="videoqa-callbacks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=callbacks.DEFAULT_TIMEOUT_SECONDS * 2)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                report = callbacks.deliver_pending_callbacks(
                    self._db,
                    secret=self._settings.webhook_secret,
                    default_url=self._settings.webhook_url,
                    policy=self._settings.source_policy,
                )
                for outcome, ids in (
                    ("delivered", report.delivered),
                    ("retrying", report.retrying),
                    ("gave_up", report.gave_up),
                ):
                    if ids:
                        self._metrics.callbacks.labels(outcome).inc(len(ids))
                if report.attempted:
                    continue  # more may be due: go again without waiting
            except Exception as error:  # keep delivering after a database hiccup
                logger.warning("completion callbacks: %s", error)
            self._stop.wait(self._interval)


def _webhook_keys(settings: Settings, options: ServiceOptions) -> list[bytes] | None:
    """The HMAC keys of webhook intake, or None for unsigned intake (``insecure_dev`` only).

    Raises:
        ServiceConfigError: no ``WEBHOOK_SECRET`` (and not ``insecure_dev``), or an unusable one.
    """
    if settings.webhook_secret:
        try:
            return [secret_key(settings.webhook_secret)]
        except WebhookSecretError as error:
            raise ServiceConfigError(str(error)) from None
    if not options.insecure_dev:
        raise ServiceConfigError(
            "WEBHOOK_SECRET is not set: the webhook endpoint refuses to start without it. Set "
            "WEBHOOK_SECRET to a long random string (e.g. `openssl rand -base64 32`), or pass "
            "--insecure-dev to accept unsigned webhooks on a development machine"
        )
    logger.warning(
        "!!! INSECURE: WEBHOOK_SECRET is unset and --insecure-dev is on: POST /webhook/jobs accepts "
        "UNSIGNED requests from anyone who can reach this port. Never run this in production. !!!"
    )
    return None


@dataclass(frozen=True)
class _Context:
    """What the handlers of one app share."""

    settings: Settings
    options: ServiceOptions
    db: Database
    metrics: ServiceMetrics
    store_factory: Callable[[], BlobStore]
    max_body_bytes: int


def _webhook_route(context: _Context, keys: list[bytes] | None) -> Route:
    """``POST /webhook/jobs``: verify, decode, validate, record; every refusal counted by reason."""
    settings, options, db, metrics = context.settings, context.options, context.db, context.metrics

    def rejected(reason: str, status: int, detail: str) -> JSONResponse:
        metrics.webhooks.labels(reason).inc()
        return _error(status, reason, detail)

    async def receive_job(request: Request) -> Response:
        try:
            body = await read_body(request, context.max_body_bytes)
            if keys is not None:
                verified = verify(keys, request.headers, body, tolerance_seconds=options.tolerance_seconds)
                webhook_id = verified.webhook_id
            else:
                webhook_id = request.headers.get(ID_HEADER) or f"insecure-{time.time_ns()}"
            decoded = decode_json(body)
        except WebhookVerificationError as error:
            return rejected(error.reason, 401, str(error))
        except ClientError as error:
            metrics.webhooks.labels(error.error).inc()
            raise
        if not isinstance(decoded, dict):
            return rejected(
                "invalid_job",
                422,
                f'the body must be a JSON object like {{"source_uri": "s3://bucket/video.mp4"}}, got '
                f"{type(decoded).__name__}",
            )
        try:
            job_request = ledger.parse_job_message(decoded)
            job_request = dataclasses.replace(job_request, source_kind="webhook", external_id=webhook_id)
            submitted = await run_in_threadpool(_submit, db, job_request, settings.source_policy)
        except ledger.JobMessageError as error:
            return rejected("invalid_job", 422, str(error))
        metrics.webhooks.labels("accepted" if submitted.created else "duplicate").inc()
        return JSONResponse(
            {
                "job_id": submitted.job_id,
                "video_id": submitted.video_id,
                "webhook_id": webhook_id,
                "duplicate": not submitted.created,
                "status_url": f"/jobs/{submitted.job_id}",
            },
            status_code=202 if submitted.created else 200,
        )

    return Route("/webhook/jobs", receive_job, methods=["POST"])


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise ClientError(400, "invalid_parameter", f"{name}={raw[:40]!r} is not an integer")
    value = int(raw)
    if not low <= value <= high:
        raise ClientError(400, "invalid_parameter", f"{name}={value} must be between {low} and {high}")
    return value


def _health_routes(context: _Context) -> tuple[Route, Route]:
    """``/healthz`` (liveness, or readiness with ``?ready=1``) and ``/readyz``."""
    settings, db = context.settings, context.db

    async def readyz(request: Request) -> Response:
        ready, results = await health.readiness(
            {
                "database": lambda: health.check_database(db),
                "blob_store": lambda: health.check_blob_store(context.store_factory()),
                "dagster": lambda: health.check_dagster(settings.dagster_home),
            }
        )
        body = {
            "status": "ready" if ready else "not ready",
            "failing": [name for name, result in results.items() if not result.ok],
            "checks": {name: result.as_dict() for name, result in results.items()},
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    async def healthz(request: Request) -> Response:
        if request.query_params.get("ready") in ("1", "true", "yes"):
            return await readyz(request)
        return JSONResponse({"status": "ok"})

    return Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])


def _operations_routes(context: _Context) -> list[Route]:
    """``/jobs/peek``, ``/jobs/{id}``, ``/stats``, ``/metrics``."""
    settings, db, metrics = context.settings, context.db, context.metrics

    async def jobs_peek(request: Request) -> Response:
        limit = _int_param(request, "limit", 10, 1, stats.MAX_PEEK)
        return JSONResponse(await run_in_threadpool(stats.peek_jobs, db, limit))

    async def job_detail(request: Request) -> Response:
        raw = request.path_params["job_id"]
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 19):
            return _error(400, "invalid_parameter", f"job ID {raw[:40]!r} is not an integer")
        job_id = int(raw)
        if not 0 < job_id < 2**63:
            return _error(404, "not_found", f"no job {job_id} in the ledger")

        def load() -> dict[str, Any] | None:
            try:
                job = ledger.get_job(db, job_id)
            except ledger.JobNotFoundError:
                return None
            return {**stats.job_summary(job), "callback": stats.callback_state(db, job_id)}

        found = await run_in_threadpool(load)
        if found is None:
            return _error(404, "not_found", f"no job {job_id} in the ledger")
        return JSONResponse(found)

    async def stats_endpoint(request: Request) -> Response:
        raw = request.query_params.get("window_hours", "24")
        try:
            window = float(raw)
        except ValueError:
            return _error(400, "invalid_parameter", f"window_hours={raw[:40]!r} is not a number")
        if not 0 < window <= 24 * 366:
            return _error(400, "invalid_parameter", "window_hours must be > 0 and at most one year")
        return JSONResponse(await run_in_threadpool(stats.collect_stats, db, settings, window_hours=window))

    async def metrics_endpoint(request: Request) -> Response:
        return Response(await run_in_threadpool(metrics.render), media_type=CONTENT_TYPE)

    return [
        Route("/jobs/peek", jobs_peek, methods=["GET"]),
        Route("/jobs/{job_id}", job_detail, methods=["GET"]),
        Route("/stats", stats_endpoint, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]


def _lifespan(context: _Context) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    """Migrate the ledger at startup (without failing), and run the callback loop when asked."""
    settings, options, db = context.settings, context.options, context.db

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await asyncio.to_thread(db.ensure_schema)
        except Exception as error:  # start anyway: /readyz reports it, intake answers 503 until it works
            logger.error("could not prepare the ledger schema at startup: %s", error)
        loop: _CallbackLoop | None = None
        if options.deliver_callbacks:
            refused = settings.source_policy.callback_problem(settings.webhook_url)
            if refused is not None:
                logger.warning("WEBHOOK_URL will not be called: %s", refused)
            interval = options.callback_interval_seconds or settings.worker_poll_ms / 1000
            loop = _CallbackLoop(settings, db, context.metrics, interval)
            loop.start()
        try:
            yield
        finally:
            if loop is not None:
                await asyncio.to_thread(loop.stop)

    return lifespan


def create_app(
    settings: Settings,
    options: ServiceOptions | None = None,
    *,
    database: Database | None = None,
    blob_store: BlobStore | None = None,
) -> Starlette:
    """Build the service app.

    Args:
        settings: The deployment's settings (validated by the caller, except the webhook secret
            rule, which this function enforces itself so ``insecure_dev`` can relax it).
        options: Route groups and limits (default: both groups, signed intake).
        database: The ledger database (default: the process's pool for ``settings``).
        blob_store: The blob store to probe in ``/readyz`` (default: from FILE_STORAGE).

    Returns:
        The Starlette app; the ledger schema is migrated on startup.

    Raises:
        ServiceConfigError: webhook routes without ``WEBHOOK_SECRET`` (and not ``insecure_dev``), an
            unusable secret, or no route group at all.
    """
    options = options or ServiceOptions()
    served = set(options.routes)
    unknown = served - {WEBHOOK_ROUTES, OPERATIONS_ROUTES}
    if unknown or not served:
        raise ServiceConfigError(
            f"route groups {sorted(unknown) or '(none)'} are not served: choose webhook and/or operations"
        )
    keys = _webhook_keys(settings, options) if WEBHOOK_ROUTES in served else None
    db = database or database_for(settings)
    context = _Context(
        settings=settings,
        options=options,
        db=db,
        metrics=ServiceMetrics(db),
        store_factory=(lambda: blob_store) if blob_store else (lambda: blob_store_for(settings)),
        max_body_bytes=options.max_body_bytes or settings.http_max_body_bytes,
    )
    healthz, readyz = _health_routes(context)
    routes: list[Route] = [healthz]
    if WEBHOOK_ROUTES in served:
        routes.append(_webhook_route(context, keys))
    document = openapi_document(served)
    if OPERATIONS_ROUTES in served:
        routes.extend([readyz, *_operations_routes(context)])
        # Search, ask, their media and the search page (see search_routes.py).
        search_service = search_routes.SearchService(settings, db, context.store_factory)
        handlers = search_routes.build_search_handlers(search_service, max_body_bytes=context.max_body_bytes)
        methods = {"/ask": ["POST"]}
        routes.extend(
            Route(path, handler, methods=methods.get(path, ["GET"])) for path, handler in handlers.items()
        )
        document["paths"].update(search_routes.OPENAPI_PATHS)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    routes.append(Route("/openapi.json", openapi, methods=["GET"]))
    guard = Middleware(
        RequestGuard,
        metrics=context.metrics,
        max_headers=settings.http_max_headers,
        body_timeout=settings.http_body_timeout,
    )
    app = Starlette(routes=routes, middleware=[guard], lifespan=_lifespan(context))
    app.state.metrics = context.metrics
    app.state.database = db
    return app
