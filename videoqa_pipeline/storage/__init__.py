"""Storage layer: metadata tables in PostgreSQL, media in blob stores, Dagster IO managers.

Importing this package does not import Dagster; the Dagster part, the IO manager, lives in
:mod:`videoqa_pipeline.storage.io_managers`.
"""

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

__all__ = [
    "TABLES",
    "BlobNotFoundError",
    "BlobStore",
    "Column",
    "Database",
    "DatabaseSettings",
    "DatabaseUnavailableError",
    "EmbeddedDatabaseError",
    "InvalidBlobKeyError",
    "LocalBlobStore",
    "SchemaMismatchError",
    "StorageError",
    "TableSpec",
    "blob_key",
    "count_partition_rows",
    "delete_video",
    "embedded_database_url",
    "embedded_server_status",
    "get_database",
    "read_partition",
    "redact_url",
    "release_embedded_database",
    "replace_partition",
    "spec_for_asset",
    "stop_embedded_server",
    "validate_key",
]
