"""Metadata tables as Parquet: one object per table and video, in any blob store (S3 for STORAGE_TYPE=s3).

The same :data:`~videoqa_pipeline.storage.schema.TABLES` specs as the PostgreSQL tables define the
columns, the checks made before writing and the dtypes read back, so an asset cannot tell which
backend stored its input. One video's rows of one table are the blob
``<video_id>/tables/<table>.parquet``: rewriting a partition replaces that single object (an S3 PUT
is atomic), so re-materializing never leaves old rows behind.

Column types: ``text`` → string, ``integer`` → int32, ``bigint`` → int64, ``double precision`` →
float64, ``boolean`` → bool, ``jsonb`` → JSON text, ``text[]`` → list<string>, ``vector`` →
list<float32>. ``video_id`` is stored too, so the files can be queried across videos (DuckDB,
Athena) without knowing the key layout. No Dagster import here.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from videoqa_pipeline.storage.blobs import BlobStore, blob_key
from videoqa_pipeline.storage.errors import BlobNotFoundError, SchemaMismatchError
from videoqa_pipeline.storage.schema import VECTOR_TYPE, VIDEO_ID_COLUMN, Column, TableSpec
from videoqa_pipeline.storage.tables import (
    _CONVERTERS,
    _check_columns,
    _check_primary_key,
    _float_vector,
    _is_missing,
    _series,
)

logger = logging.getLogger(__name__)

TABLES_STAGE = "tables"

_ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "double precision": pa.float64(),
    "boolean": pa.bool_(),
    "jsonb": pa.string(),
    "text[]": pa.list_(pa.string()),
    VECTOR_TYPE: pa.list_(pa.float32()),
}


def arrow_schema(spec: TableSpec) -> pa.Schema:
    """The Parquet schema of ``spec``'s table, ``video_id`` included, nullability from the spec."""
    return pa.schema(
        [
            pa.field(column.name, _ARROW_TYPES[column.sql_type], nullable=column.nullable)
            for column in spec.columns
        ]
    )


def table_blob_key(spec: TableSpec, video_id: str) -> str:
    """``<video_id>/tables/<table name>.parquet``: where one video's rows of ``spec`` live."""
    return blob_key(video_id, TABLES_STAGE, f"{spec.name}.parquet")


def _json_text(value: Any, column: Column) -> str:
    return json.dumps(_CONVERTERS["jsonb"](value, column).obj, separators=(",", ":"))


def _converter(column: Column) -> Callable[[Any, Column], Any]:
    if column.sql_type == "jsonb":
        return _json_text
    if column.sql_type == VECTOR_TYPE:
        return lambda value, _column: _float_vector(value)
    return _CONVERTERS[column.sql_type]


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    return bool(np.isscalar(value) and _is_missing(value))


def frame_to_arrow(spec: TableSpec, video_id: str, frame: pd.DataFrame) -> pa.Table:
    """Check ``frame`` against ``spec`` exactly as a PostgreSQL write does and convert it to Arrow.

    Args:
        spec: The table.
        video_id: The partition key, stored in ``video_id``.
        frame: One row per table row, columns = ``spec.data_column_names`` (any order).

    Returns:
        An Arrow table with :func:`arrow_schema` (``video_id`` first).

    Raises:
        SchemaMismatchError: missing/unexpected columns, a wrong value type, a null in a NOT NULL
            column, a vector whose length differs from ``dimension``, or a duplicate key.
    """
    if not video_id:
        raise SchemaMismatchError(f"{spec.name}: an empty video ID is not a valid partition key")
    frame = _check_columns(spec, video_id, frame)
    _check_primary_key(spec, video_id, frame)
    arrays: dict[str, list[Any]] = {VIDEO_ID_COLUMN: [video_id] * len(frame)}
    for column in spec.data_columns:
        convert = _converter(column)
        converted: list[Any] = []
        for position, value in enumerate(frame[column.name].tolist()):
            try:
                if _is_null(value):
                    if not column.nullable:
                        raise TypeError("is null but the column is NOT NULL")
                    converted.append(None)
                else:
                    converted.append(convert(value, column))
            except (TypeError, ValueError, OverflowError) as error:
                raise SchemaMismatchError(
                    f"{spec.name} (video {video_id!r}), row {position} (index {frame.index[position]!r}), "
                    f"column {column.name!r} ({column.sql_type}): {error}"
                ) from error
        arrays[column.name] = converted
    if "dimension" in arrays and "embedding" in arrays:
        for position, (declared, vector) in enumerate(
            zip(arrays["dimension"], arrays["embedding"], strict=True)
        ):
            if declared is not None and vector is not None and int(declared) != vector.size:
                raise SchemaMismatchError(
                    f"{spec.name} (video {video_id!r}), row {position}, column 'embedding': "
                    f"has {vector.size} values but dimension says {declared}"
                )
    return pa.Table.from_pydict(arrays, schema=arrow_schema(spec))


def arrow_to_frame(spec: TableSpec, table: pa.Table) -> pd.DataFrame:
    """The DataFrame a PostgreSQL read would give: no ``video_id``, primary-key order, same dtypes.

    Raises:
        SchemaMismatchError: the Parquet data lacks a column of the spec (written by another version).
    """
    missing = [name for name in spec.data_column_names if name not in table.column_names]
    if missing:
        raise SchemaMismatchError(
            f"{spec.name}: the stored Parquet data has no column(s) {missing}; re-materialize the asset "
            "to rewrite it with the current schema"
        )
    key_columns = [name for name in spec.primary_key if name != VIDEO_ID_COLUMN]
    if key_columns and table.num_rows:
        table = table.sort_by([(name, "ascending") for name in key_columns])
    data: dict[str, pd.Series] = {}
    for column in spec.data_columns:
        values = table.column(column.name).to_pylist()
        if column.sql_type == "jsonb":
            values = [None if value is None else json.loads(value) for value in values]
        data[column.name] = _series(column, values)
    return pd.DataFrame(data, columns=list(spec.data_column_names))


def empty_frame(spec: TableSpec) -> pd.DataFrame:
    """A 0-row frame with the spec's columns and read dtypes."""
    return pd.DataFrame(
        {column.name: _series(column, []) for column in spec.data_columns},
        columns=list(spec.data_column_names),
    )


def write_partition(store: BlobStore, spec: TableSpec, video_id: str, frame: pd.DataFrame) -> tuple[int, str]:
    """Replace ``video_id``'s rows of ``spec`` with ``frame``: one Parquet object, written atomically.

    Args:
        store: Where the object goes (an :class:`~videoqa_pipeline.storage.s3_blobs.S3BlobStore` for S3).
        spec: The table.
        video_id: The partition key.
        frame: The rows (see :func:`frame_to_arrow`).

    Returns:
        ``(rows written, URI of the object)``.

    Raises:
        SchemaMismatchError: the frame does not match the table.
        StorageError: the store failed (e.g. ``S3StorageError``).
    """
    table = frame_to_arrow(spec, video_id, frame)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    uri = store.put_bytes(table_blob_key(spec, video_id), buffer.getvalue())
    logger.debug("%s: wrote %d row(s) of video %s to %s", spec.name, table.num_rows, video_id, uri)
    return table.num_rows, uri


def read_partition(store: BlobStore, spec: TableSpec, video_id: str) -> pd.DataFrame:
    """Read ``video_id``'s rows of ``spec``; a 0-row frame when the partition was never written.

    Raises:
        SchemaMismatchError: the stored data lacks a column of the spec.
        StorageError: the store failed.
    """
    try:
        data = store.get_bytes(table_blob_key(spec, video_id))
    except BlobNotFoundError:
        return empty_frame(spec)
    return arrow_to_frame(spec, pq.read_table(io.BytesIO(data)))
