"""Exceptions raised by the storage layer.

Every message names what was being stored or read, what was expected and what to do, so an
operator reading a failed Dagster run can act without opening the code.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error raised by :mod:`videoqa_pipeline.storage`."""


class EmbeddedDatabaseError(StorageError):
    """The embedded PostgreSQL server could not be started, joined or stopped."""


class DatabaseUnavailableError(StorageError):
    """No connection to the metadata database could be made within the configured timeout."""


class SchemaMismatchError(StorageError, ValueError):
    """A DataFrame does not match the table it is written to (columns, types, nulls, keys)."""


class InvalidBlobKeyError(StorageError, ValueError):
    """A blob key is empty, absolute, or would escape the blob store's root."""


class BlobNotFoundError(StorageError, FileNotFoundError):
    """A blob was read that was never written (or was deleted)."""
