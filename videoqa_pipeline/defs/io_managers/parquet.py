"""Dagster IO manager storing table assets as Parquet objects on S3, one per table and video.

``STORAGE_TYPE=s3`` (``METADATA_STORAGE=s3``) uses it instead of the PostgreSQL IO manager: an
asset's DataFrame becomes ``s3://AWS_S3_BUCKET/S3_PREFIX<video_id>/tables/<table>.parquet``
(:mod:`videoqa_pipeline.storage.parquet_tables`), and the materialization carries the same
metadata as the PostgreSQL one (column schema, row count, table name, URI), so the UI looks the
same whatever the backend. S3 failures that no retry can fix (missing bucket, access denied)
become ``Failure(allow_retries=False)`` with a readable message; transient ones are re-raised for
the step's retry policy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd

from videoqa_pipeline.aws import AwsConfig
from videoqa_pipeline.defs.io_managers.postgres import table_schema
from videoqa_pipeline.storage.errors import StorageError
from videoqa_pipeline.storage.parquet_tables import read_partition, write_partition
from videoqa_pipeline.storage.s3_blobs import S3BlobStore, S3StorageError
from videoqa_pipeline.storage.schema import TABLES, VECTOR_TYPE, TableSpec


def _spec(asset_key: dg.AssetKey, what: str) -> TableSpec:
    spec = TABLES.get(asset_key.path[-1])
    if spec is None:
        raise StorageError(
            f"{what} asset {asset_key.to_user_string()!r}: ParquetTableIOManager only stores the table "
            f"assets {sorted(TABLES)}. Give this asset another io_manager_key, or return a "
            "MaterializeResult if it only writes blobs."
        )
    return spec


def _video_id(partition_key: str | None, asset_key: dg.AssetKey) -> str:
    if not partition_key:
        raise StorageError(
            f"asset {asset_key.to_user_string()!r} is not partitioned: metadata tables are written per "
            "video, so the asset must use the 'videos' DynamicPartitionsDefinition."
        )
    return partition_key


@contextlib.contextmanager
def _s3_failures(action: str, asset_key: dg.AssetKey, video_id: str) -> Iterator[None]:
    try:
        yield
    except S3StorageError as error:
        if not error.permanent:
            raise
        raise dg.Failure(
            description=f"{action} the table of {asset_key.to_user_string()} for video {video_id!r} failed: {error}",
            metadata={"video_id": video_id, "error_type": type(error).__name__},
            allow_retries=False,
        ) from error


class ParquetTableIOManager(dg.ConfigurableIOManager):
    """Stores DataFrame outputs of the pipeline's partitioned table assets as Parquet on S3."""

    bucket: str
    prefix: str = "video-processing/"
    region: str = "us-east-1"
    endpoint_url: str | None = None

    def store(self) -> S3BlobStore:
        """The S3 blob store holding the Parquet objects."""
        return S3BlobStore(
            self.bucket, self.prefix, AwsConfig(region=self.region, endpoint_url=self.endpoint_url)
        )

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        """Replace the partition's Parquet object with ``obj``; record schema, row count and URI."""
        asset_key = context.asset_key
        spec = _spec(asset_key, "output of")
        if not isinstance(obj, pd.DataFrame):
            raise StorageError(
                f"asset {asset_key.to_user_string()!r} returned {type(obj).__name__}; the table "
                f"{spec.name} expects a pandas DataFrame with columns {list(spec.data_column_names)}."
            )
        video_id = _video_id(context.partition_key if context.has_partition_key else None, asset_key)
        with _s3_failures("writing", asset_key, video_id):
            rows, uri = write_partition(self.store(), spec, video_id, obj)
        metadata: dict[str, Any] = {
            "dagster/column_schema": table_schema(spec),
            "dagster/row_count": dg.MetadataValue.int(rows),
            "dagster/partition_row_count": dg.MetadataValue.int(rows),
            "dagster/table_name": spec.name,
            "dagster/uri": uri,
            "table": spec.name,
            "storage": "s3",
            "video_id": video_id,
            "uri": dg.MetadataValue.path(uri),
        }
        if any(column.sql_type == VECTOR_TYPE for column in spec.columns):
            metadata["embedding_column"] = "list<float32>"
        context.add_output_metadata(metadata)
        context.log.info(f"Wrote {rows} row(s) of video {video_id} to {uri}")

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        """Read the upstream asset's rows for the partition being processed."""
        asset_key = context.asset_key
        spec = _spec(asset_key, "input from")
        video_id = _video_id(context.asset_partition_key if context.has_asset_partitions else None, asset_key)
        with _s3_failures("reading", asset_key, video_id):
            frame = read_partition(self.store(), spec, video_id)
        context.log.debug(f"Read {len(frame)} row(s) of video {video_id} from {spec.name} on S3")
        return frame
