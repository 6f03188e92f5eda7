"""Dagster resources giving assets the storage layer: the metadata database and the blob store.

Assets ask for ``blob_store`` and ``metadata_db`` by key; which store backs them (local disk now,
S3 or hybrid later) is decided where the Definitions are built, so assets never know.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from videoqa_pipeline.storage.blobs import BlobStore, LocalBlobStore
from videoqa_pipeline.storage.database import Database, DatabaseSettings, get_database


class LocalBlobStoreResource(dg.ConfigurableResource):
    """Blobs as files under ``root`` (default ``$VIDEOQA_HOME/blobs``)."""

    root: str = ".videoqa/blobs"

    def get_store(self) -> BlobStore:
        """The :class:`~videoqa_pipeline.storage.blobs.LocalBlobStore` for ``root``."""
        return LocalBlobStore(Path(self.root))


class DatabaseResource(dg.ConfigurableResource):
    """The metadata database, for assets, sensors and checks that query it directly."""

    database_url: str | None = None
    home: str = ".videoqa"
    pool_size: int = 5
    timeout_seconds: float = 10.0

    def get_database(self) -> Database:
        """This process's shared :class:`~videoqa_pipeline.storage.database.Database`, schema ensured."""
        database = get_database(
            DatabaseSettings(
                url=self.database_url,
                home=Path(self.home),
                pool_size=self.pool_size,
                timeout_seconds=self.timeout_seconds,
            )
        )
        database.ensure_schema()
        return database
