"""The OpenAPI 3.0 document of the HTTP service (served at ``/openapi.json``).

Written out by hand rather than generated, so the contract (signature headers, status codes,
error bodies) is stated once, reviewed like code, and fuzzed by the tests with schemathesis.
"""

from __future__ import annotations

import copy
from collections.abc import Collection
from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_SIGNATURE_HEADERS = [
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "description": "Unique event ID; becomes the job's external ID (a replay is recorded once).",
        "schema": {"type": "string", "maxLength": 256},
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "description": "Unix seconds when the request was signed, as ASCII digits; must be within 5 minutes "
        "of the server clock.",
        "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "description": (
            'Space-separated "v1,<base64 HMAC-SHA256(secret, \\"{webhook-id}.{webhook-timestamp}.{body}\\")>"'
            " signatures; the secret is WEBHOOK_SECRET as UTF-8, or base64-decoded (padding optional) after a"
            " whsec_ prefix."
        ),
        "schema": {"type": "string"},
    },
]

_WEBHOOK_PATHS: dict[str, Any] = {
    "/webhook/jobs": {
        "post": {
            "operationId": "submitJob",
            "summary": "Submit a job (signed, Standard Webhooks)",
            "description": "The job is in the ledger before the answer. 202: new job. 200: this webhook-id was "
            "already recorded; the same job ID is returned and nothing else happens.",
            "parameters": _SIGNATURE_HEADERS,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobMessage"}}},
            },
            "responses": {
                "202": _json({"$ref": "#/components/schemas/Accepted"}, "Job recorded"),
                "200": _json({"$ref": "#/components/schemas/Accepted"}, "Duplicate delivery, same job"),
                "400": _json(
                    _ERROR,
                    "Body is not UTF-8 JSON, or holds NaN/Infinity, an integer of over 40 digits, nesting "
                    "deeper than 32 levels or a lone surrogate escape",
                ),
                "401": _json(_ERROR, "Missing or malformed headers, stale timestamp, or bad signature"),
                "408": _json(_ERROR, "The body did not arrive within VIDEOQA_HTTP_BODY_TIMEOUT"),
                "413": _json(_ERROR, "Body larger than VIDEOQA_HTTP_MAX_BODY_BYTES (default 64 KiB)"),
                "422": _json(_ERROR, "JSON does not describe a valid job (field, type or option named)"),
                "503": _json(_ERROR, "The ledger database is unavailable; retry later"),
            },
        }
    }
}

_HEALTH_PATH: dict[str, Any] = {
    "/healthz": {
        "get": {
            "operationId": "liveness",
            "summary": "Liveness; with ?ready=1 the same checks as /readyz",
            "parameters": [{"name": "ready", "in": "query", "required": False, "schema": {"type": "string"}}],
            "responses": {
                "200": _json({"type": "object"}, "Alive (or ready)"),
                "503": _json({"$ref": "#/components/schemas/Readiness"}, "Not ready (with ?ready=1)"),
            },
        }
    }
}

_OPERATIONS_PATHS: dict[str, Any] = {
    "/readyz": {
        "get": {
            "operationId": "readiness",
            "summary": "Readiness: ledger database, blob store, Dagster instance (when DAGSTER_HOME is set)",
            "responses": {
                "200": _json({"$ref": "#/components/schemas/Readiness"}, "Ready"),
                "503": _json({"$ref": "#/components/schemas/Readiness"}, "A part is failing (named)"),
            },
        }
    },
    "/jobs/peek": {
        "get": {
            "operationId": "peekJobs",
            "summary": "The next pending jobs (claim order) and job counts per status",
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                }
            ],
            "responses": {
                "200": _json(
                    {"type": "object", "required": ["pending", "counts"]}, "Pending jobs and counts"
                ),
                "400": _json(_ERROR, "Bad limit"),
            },
        }
    },
    "/jobs/{job_id}": {
        "get": {
            "operationId": "getJob",
            "summary": "One job: status, attempts, run, error, timings, callback state",
            "parameters": [
                {
                    "name": "job_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1},
                }
            ],
            "responses": {
                "200": _json({"type": "object", "required": ["id", "status"]}, "The job"),
                "400": _json(_ERROR, "Not an integer"),
                "404": _json(_ERROR, "No such job"),
            },
        }
    },
    "/stats": {
        "get": {
            "operationId": "stats",
            "summary": "Jobs processed/failed, success rate, p50/p95 processing time overall and per step, "
            "storage (videos, bytes, rows per table), queue (SQS depth when SQS is a source)",
            "parameters": [
                {
                    "name": "window_hours",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 8784},
                }
            ],
            "responses": {
                "200": _json({"type": "object", "required": ["jobs", "storage", "queue"]}, "Statistics"),
                "400": _json(_ERROR, "Bad window"),
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
}

_COMPONENTS: dict[str, Any] = {
    "schemas": {
        "JobMessage": {
            "type": "object",
            "required": ["source_uri"],
            "additionalProperties": False,
            "properties": {
                "source_uri": {
                    "type": "string",
                    "minLength": 1,
                    "description": "A path, file://, http(s):// or s3:// URI",
                },
                "video_id": {
                    "type": "string",
                    "description": "Partition key; derived from source_uri when absent",
                },
                "options": {
                    "type": "object",
                    "description": 'Run config overrides, e.g. {"max_frames_per_video": 10}',
                },
                "callback_url": {"type": "string", "description": "http(s) URL for the completion callback"},
                "from_stage": {"type": "string", "description": "Re-materialize from this stage on"},
            },
        },
        "Accepted": {
            "type": "object",
            "required": ["job_id", "video_id", "webhook_id", "duplicate"],
            "properties": {
                "job_id": {"type": "integer"},
                "video_id": {"type": "string"},
                "webhook_id": {"type": "string"},
                "duplicate": {"type": "boolean"},
                "status_url": {"type": "string"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["error", "detail"],
            "properties": {
                "error": {"type": "string", "description": "Machine-readable reason"},
                "detail": {"type": "string", "description": "What is wrong and how to fix it"},
            },
        },
        "Readiness": {
            "type": "object",
            "required": ["status", "failing", "checks"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "not ready"]},
                "failing": {"type": "array", "items": {"type": "string"}},
                "checks": {"type": "object"},
            },
        },
    }
}


#: Answers any route may give, decided before or around its handler (see service/guard.py and
#: service/server.py): too many or too large headers, and a server fault (a JSON body, never bare text).
_ANY_ROUTE = {
    "431": _json(
        _ERROR, "More headers than VIDEOQA_HTTP_MAX_HEADERS, or a head over VIDEOQA_HTTP_MAX_HEADER_BYTES"
    ),
    "500": _json(_ERROR, "The service failed on this request (a bug; the reason is in its log)"),
}


def openapi_document(route_groups: Collection[str]) -> dict[str, Any]:
    """The OpenAPI document for the served route groups (``webhook``, ``operations``)."""
    paths: dict[str, Any] = {}
    if "webhook" in route_groups:
        paths.update(_WEBHOOK_PATHS)
    paths.update(_HEALTH_PATH)
    if "operations" in route_groups:
        paths.update(_OPERATIONS_PATHS)
    paths = copy.deepcopy(paths)
    for operations in paths.values():
        for operation in operations.values():
            for status, answer in _ANY_ROUTE.items():
                operation["responses"].setdefault(status, copy.deepcopy(answer))
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "videoqa_pipeline service",
            "version": "1",
            "description": "Signed webhook intake of video jobs and the operations endpoints.",
        },
        "paths": paths,
        "components": copy.deepcopy(_COMPONENTS),
    }
