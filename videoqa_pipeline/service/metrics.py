"""Prometheus metrics of the HTTP service (``GET /metrics``).

Each app gets its own :class:`prometheus_client.CollectorRegistry` (not the global one), so two
apps in one process (webhook port and operations port, or tests) never collide. Request counters
and latency histograms are updated by the handlers; job counts per status are read from the
ledger at scrape time by a custom collector, so they are right whichever process changed them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.database import Database

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LedgerCollector(Collector):
    """Job counts per status and whether the ledger answered, read at scrape time."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("videoqa_ledger_up", "1 when the job ledger answered this scrape")
        jobs = GaugeMetricFamily("videoqa_jobs", "Jobs in the ledger by status", labels=["status"])
        try:
            counts = ledger.count_by_status(self._db)
        except Exception as error:  # a scrape must never fail because the database is down
            logger.warning("metrics: could not count jobs: %s", error)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for status, count in counts.items():
            jobs.add_metric([status], count)
        yield up
        yield jobs


class ServiceMetrics:
    """The service's metrics, in a registry of their own."""

    def __init__(self, db: Database | None = None) -> None:
        """Create the metrics; with ``db``, also export the ledger's job counts."""
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "videoqa_http_requests",
            "HTTP requests by route, method and status code",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "videoqa_http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.webhooks = Counter(
            "videoqa_webhooks",
            "Webhook deliveries by outcome (accepted, duplicate, or the rejection reason)",
            ["outcome"],
            registry=self.registry,
        )
        self.callbacks = Counter(
            "videoqa_callbacks",
            "Completion callback attempts made by this process, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        if db is not None:
            self.registry.register(LedgerCollector(db))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
