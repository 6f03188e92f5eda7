"""Dagster IO manager storing table assets in PostgreSQL, one video partition at a time.

An asset that returns a pandas DataFrame is written to the table of its
:data:`~videoqa_pipeline.storage.schema.TABLES` spec with
:func:`~videoqa_pipeline.storage.tables.replace_partition` (one transaction, so re-materializing
never duplicates rows), and its materialization carries the table's column schema and row count
so the Dagster UI shows them. Downstream assets get the same frame back via
:func:`~videoqa_pipeline.storage.tables.read_partition`. Media never pass through here: assets
store them in a blob store and put blob keys in their tables.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dagster as dg
import pandas as pd

from videoqa_pipeline.storage.database import Database, DatabaseSettings, get_database
from videoqa_pipeline.storage.errors import StorageError
from videoqa_pipeline.storage.schema import TABLES, VECTOR_TYPE, TableSpec
from videoqa_pipeline.storage.tables import read_partition, replace_partition

logger = logging.getLogger(__name__)


def table_schema(spec: TableSpec) -> dg.TableSchema:
    """The Dagster column schema of a table (``video_id`` included, as stored)."""
    columns = [
        dg.TableColumn(
            name=column.name,
            type=column.sql_type,
            description=column.description or None,
            constraints=dg.TableColumnConstraints(nullable=column.nullable),
        )
        for column in spec.columns
    ]
    return dg.TableSchema(
        columns=columns,
        constraints=dg.TableConstraints(other=[f"primary key ({', '.join(spec.primary_key)})"]),
    )


def partition_uri(db: Database, spec: TableSpec, video_id: str) -> str:
    """A credential-free URI naming one video's rows: ``postgresql://host:port/db#table?video_id=...``."""
    return f"{db.redacted_url}#{spec.name}?video_id={quote(video_id, safe='')}"


class PostgresTableIOManager(dg.ConfigurableIOManager):
    """Stores DataFrame outputs of the pipeline's partitioned table assets in PostgreSQL.

    With ``database_url`` unset it starts or joins the embedded server under ``home``.
    """

    database_url: str | None = None
    home: str = ".videoqa"
    pool_size: int = 5
    timeout_seconds: float = 10.0

    def database(self) -> Database:
        """The process-wide :class:`Database` for this configuration (connects lazily)."""
        return get_database(
            DatabaseSettings(
                url=self.database_url,
                home=Path(self.home),
                pool_size=self.pool_size,
                timeout_seconds=self.timeout_seconds,
            )
        )

    @staticmethod
    def _spec(asset_key: dg.AssetKey, what: str) -> TableSpec:
        name = asset_key.path[-1]
        spec = TABLES.get(name)
        if spec is None:
            raise StorageError(
                f"{what} asset {asset_key.to_user_string()!r}: PostgresTableIOManager only stores the "
                f"table assets {sorted(TABLES)}. Give this asset another io_manager_key, or return "
                "a MaterializeResult if it only writes blobs."
            )
        return spec

    @staticmethod
    def _video_id(has_partition: bool, partition_key: str | None, asset_key: dg.AssetKey) -> str:
        if not has_partition or not partition_key:
            raise StorageError(
                f"asset {asset_key.to_user_string()!r} is not partitioned: metadata tables are written "
                "per video, so the asset must use the 'videos' DynamicPartitionsDefinition."
            )
        return partition_key

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        """Replace the partition's rows with ``obj`` and record schema, row count and URI."""
        asset_key = context.asset_key
        spec = self._spec(asset_key, "output of")
        if not isinstance(obj, pd.DataFrame):
            raise StorageError(
                f"asset {asset_key.to_user_string()!r} returned {type(obj).__name__}; the table "
                f"{spec.name} expects a pandas DataFrame with columns {list(spec.data_column_names)}."
            )
        partition_key = context.partition_key if context.has_partition_key else None
        video_id = self._video_id(context.has_partition_key, partition_key, asset_key)
        db = self.database()
        rows = replace_partition(db, spec, video_id, obj)
        metadata: dict[str, Any] = {
            "dagster/column_schema": table_schema(spec),
            "dagster/row_count": dg.MetadataValue.int(rows),
            "dagster/partition_row_count": dg.MetadataValue.int(rows),
            "dagster/table_name": spec.name,
            "table": spec.name,
            "storage": "postgres",
            "video_id": video_id,
            "uri": partition_uri(db, spec, video_id),
        }
        if any(column.sql_type == VECTOR_TYPE for column in spec.columns):
            metadata["embedding_column"] = db.embedding_column_type
        context.add_output_metadata(metadata)
        context.log.info(f"Wrote {rows} row(s) of video {video_id} to {spec.name}")

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        """Read the upstream asset's rows for the partition being processed."""
        asset_key = context.asset_key
        spec = self._spec(asset_key, "input from")
        partition_key = context.asset_partition_key if context.has_asset_partitions else None
        video_id = self._video_id(context.has_asset_partitions, partition_key, asset_key)
        frame = read_partition(self.database(), spec, video_id)
        context.log.debug(f"Read {len(frame)} row(s) of video {video_id} from {spec.name}")
        return frame
