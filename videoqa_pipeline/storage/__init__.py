"""Storage layer: metadata tables in PostgreSQL, media in blob stores, Dagster IO managers.

Importing this package does not import Dagster; the Dagster part, the IO manager, lives in
:mod:`videoqa_pipeline.defs.io_managers.postgres`. Names are resolved lazily, so a process that only
moves blobs (``storage.s3_blobs``) does not load pandas, pyarrow or psycopg.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from videoqa_pipeline.storage.blobs import BlobStore, LocalBlobStore, blob_key, validate_key
    from videoqa_pipeline.storage.database import Database, DatabaseSettings, get_database, redact_url
    from videoqa_pipeline.storage.embedded import (
        embedded_database_url,
        embedded_server_status,
        release_embedded_database,
        stop_embedded_server,
    )
    from videoqa_pipeline.storage.errors import (
        BlobNotFoundError,
        DatabaseUnavailableError,
        EmbeddedDatabaseError,
        InvalidBlobKeyError,
        SchemaMismatchError,
        StorageError,
    )
    from videoqa_pipeline.storage.schema import TABLES, Column, TableSpec, spec_for_asset
    from videoqa_pipeline.storage.tables import (
        count_partition_rows,
        delete_video,
        read_partition,
        replace_partition,
    )

_MODULE_OF = {
    **dict.fromkeys(("BlobStore", "LocalBlobStore", "blob_key", "validate_key"), "blobs"),
    **dict.fromkeys(("Database", "DatabaseSettings", "get_database", "redact_url"), "database"),
    **dict.fromkeys(
        (
            "embedded_database_url",
            "embedded_server_status",
            "release_embedded_database",
            "stop_embedded_server",
        ),
        "embedded",
    ),
    **dict.fromkeys(
        (
            "BlobNotFoundError",
            "DatabaseUnavailableError",
            "EmbeddedDatabaseError",
            "InvalidBlobKeyError",
            "SchemaMismatchError",
            "StorageError",
        ),
        "errors",
    ),
    **dict.fromkeys(("TABLES", "Column", "TableSpec", "spec_for_asset"), "schema"),
    **dict.fromkeys(
        ("count_partition_rows", "delete_video", "read_partition", "replace_partition"), "tables"
    ),
}

__all__ = [  # noqa: RUF022 (kept in the order of _MODULE_OF)
    "BlobStore",
    "LocalBlobStore",
    "blob_key",
    "validate_key",
    "Database",
    "DatabaseSettings",
    "get_database",
    "redact_url",
    "embedded_database_url",
    "embedded_server_status",
    "release_embedded_database",
    "stop_embedded_server",
    "BlobNotFoundError",
    "DatabaseUnavailableError",
    "EmbeddedDatabaseError",
    "InvalidBlobKeyError",
    "SchemaMismatchError",
    "StorageError",
    "TABLES",
    "Column",
    "TableSpec",
    "spec_for_asset",
    "count_partition_rows",
    "delete_video",
    "read_partition",
    "replace_partition",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
