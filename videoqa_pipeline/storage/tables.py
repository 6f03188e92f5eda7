"""Write and read one video's rows of a metadata table as a pandas DataFrame.

A partition write is ``DELETE`` of the video's rows then ``COPY`` of the new ones, in one
transaction: a re-materialization or backfill replaces rows instead of duplicating them, and a
failed write leaves the previous rows untouched. Frames are checked against the
:class:`~videoqa_pipeline.storage.schema.TableSpec` before anything is sent, so a wrong column,
a null in a NOT NULL column or a duplicate key fails with a message naming the table, the column
and the row, not a server error.

DataFrame conventions (both directions): no ``video_id`` column (it is the partition key; a
``video_id`` column on write is accepted only when every value equals the partition key); columns
in spec order on read, rows ordered by primary key; missing values are None/NaN/pd.NA on write.
Read dtypes: ``int64`` / ``float64`` / ``bool`` for NOT NULL numbers and booleans, ``Int64`` /
``float64`` / ``boolean`` when nullable, ``object`` for text (None when NULL), ``jsonb`` (Python
lists/dicts), ``text[]`` (lists of str) and vectors (one ``numpy.float32`` array per row).
No Dagster import here.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.errors import SchemaMismatchError
from videoqa_pipeline.storage.schema import TABLES, VECTOR_TYPE, VIDEO_ID_COLUMN, Column, TableSpec

logger = logging.getLogger(__name__)

_INT_LIMITS = {"integer": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    return False


def _to_int(value: Any, column: Column) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("a boolean is not an integer")
    if isinstance(value, (float, np.floating)) and not float(value).is_integer():
        raise TypeError(f"{value!r} is not a whole number")
    result = int(value)
    low, high = _INT_LIMITS[column.sql_type]
    if not low <= result <= high:
        raise TypeError(f"{result} does not fit in {column.sql_type}")
    return result


def _to_bool(value: Any, column: Column) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{value!r} is not a boolean")


def _to_text(value: Any, column: Column) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{type(value).__name__} {value!r} is not a string")
    if "\x00" in value:
        raise TypeError("PostgreSQL text cannot contain NUL characters")
    return value


def _to_jsonb(value: Any, column: Column) -> Jsonb:
    if isinstance(value, str):
        value = json.loads(value)  # already-encoded JSON: validate it here rather than in the server
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return Jsonb(value)


def _to_text_array(value: Any, column: Column) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        raise TypeError(f"{type(value).__name__} is not a list of strings")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"element {item!r} is not a string")
    return items


def _float_vector(value: Any) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    if array.ndim != 1 or array.size == 0:
        raise TypeError(f"expected a non-empty 1-D vector, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise TypeError("the vector contains NaN or infinity")
    return array


def _to_float(value: Any, column: Column) -> float:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("a boolean is not a number")
    return float(value)


_CONVERTERS: dict[str, Callable[[Any, Column], Any]] = {
    "text": _to_text,
    "integer": _to_int,
    "bigint": _to_int,
    "double precision": _to_float,
    "boolean": _to_bool,
    "jsonb": _to_jsonb,
    "text[]": _to_text_array,
}


@functools.lru_cache(maxsize=16)
def _vector_format(dimension: int) -> str:
    # 9 significant digits round-trip every float32 exactly; one %-format per vector is ~3x faster
    # than joining repr() of each element, and vectors dominate the cost of an embeddings write.
    return ",".join(["%.9g"] * dimension)


def _format_vector(array: np.ndarray, as_pgvector: bool) -> str:
    body = _vector_format(array.size) % tuple(array.tolist())
    return f"[{body}]" if as_pgvector else f"{{{body}}}"


def _check_columns(spec: TableSpec, video_id: str, frame: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise SchemaMismatchError(
            f"{spec.name} (video {video_id!r}): expected a pandas DataFrame, got {type(frame).__name__}"
        )
    if VIDEO_ID_COLUMN in frame.columns:
        foreign = {str(value) for value in frame[VIDEO_ID_COLUMN].tolist()} - {video_id}
        if foreign:
            raise SchemaMismatchError(
                f"{spec.name} (video {video_id!r}): the DataFrame's {VIDEO_ID_COLUMN} column holds other "
                f"video IDs {sorted(foreign)[:5]}; leave the column out (it is set from the partition key)."
            )
        frame = frame.drop(columns=[VIDEO_ID_COLUMN])
    names = [str(name) for name in frame.columns]
    expected = list(spec.data_column_names)
    missing = [name for name in expected if name not in names]
    extra = [name for name in names if name not in expected]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if missing or extra or duplicated:
        raise SchemaMismatchError(
            f"{spec.name} (video {video_id!r}): DataFrame columns do not match the table. "
            f"Missing: {missing or 'none'}. Unexpected: {extra or 'none'}. Duplicated: {duplicated or 'none'}. "
            f"Expected exactly: {expected}."
        )
    return frame


def _check_primary_key(spec: TableSpec, video_id: str, frame: pd.DataFrame) -> None:
    key_columns = [name for name in spec.primary_key if name != VIDEO_ID_COLUMN]
    if not key_columns:
        if len(frame) > 1:
            raise SchemaMismatchError(
                f"{spec.name} (video {video_id!r}): holds one row per video, got {len(frame)} rows."
            )
        return
    duplicates = frame[frame.duplicated(subset=key_columns, keep=False)]
    if not duplicates.empty:
        values = duplicates[key_columns].drop_duplicates().head(5).to_dict("records")
        raise SchemaMismatchError(
            f"{spec.name} (video {video_id!r}): primary key {key_columns} must be unique; "
            f"duplicated values: {values}."
        )


def _rows(spec: TableSpec, video_id: str, frame: pd.DataFrame, as_pgvector: bool) -> list[tuple[Any, ...]]:
    """Convert the frame to Python rows (video_id first), checking types and nulls cell by cell."""
    columns = spec.data_columns
    dimension_position = (
        spec.data_column_names.index("dimension") if "dimension" in spec.data_column_names else None
    )
    rows: list[tuple[Any, ...]] = []
    values_by_column = [frame[column.name].tolist() for column in columns]
    for position in range(len(frame)):
        row: list[Any] = [video_id]
        for column, values in zip(columns, values_by_column, strict=True):
            value = values[position]
            try:
                if column.sql_type != VECTOR_TYPE and _is_missing(value):
                    if not column.nullable:
                        raise TypeError("is null but the column is NOT NULL")
                    row.append(None)
                elif column.sql_type == VECTOR_TYPE:
                    if value is None or (np.isscalar(value) and _is_missing(value)):
                        if not column.nullable:
                            raise TypeError("is null but the column is NOT NULL")
                        row.append(None)
                        continue
                    vector = _float_vector(value)
                    if dimension_position is not None:
                        declared = values_by_column[dimension_position][position]
                        if not _is_missing(declared) and int(declared) != vector.size:
                            raise TypeError(f"has {vector.size} values but dimension says {declared}")
                    row.append(_format_vector(vector, as_pgvector))
                else:
                    row.append(_CONVERTERS[column.sql_type](value, column))
            except (TypeError, ValueError, OverflowError) as error:
                raise SchemaMismatchError(
                    f"{spec.name} (video {video_id!r}), row {position} (index {frame.index[position]!r}), "
                    f"column {column.name!r} ({column.sql_type}): {error}"
                ) from error
        rows.append(tuple(row))
    return rows


def replace_partition(db: Database, spec: TableSpec, video_id: str, frame: pd.DataFrame) -> int:
    """Replace every row of ``video_id`` in ``spec``'s table with the rows of ``frame``.

    One transaction: ``DELETE`` the video's rows, then ``COPY`` the new ones. Readers see either
    the old rows or the new ones; re-running never duplicates. An empty frame (right columns,
    0 rows) leaves the video with no rows in this table.

    Args:
        db: The metadata database (its schema is created on first use).
        spec: The table to write.
        video_id: The partition key; stored in ``video_id``.
        frame: One row per table row, columns = ``spec.data_column_names`` (any order).

    Returns:
        Number of rows written.

    Raises:
        SchemaMismatchError: missing/unexpected columns, a wrong value type, a null in a NOT NULL
            column, a vector whose length differs from ``dimension``, or a duplicate key.
        DatabaseUnavailableError: the database cannot be reached.
    """
    if not video_id:
        raise SchemaMismatchError(f"{spec.name}: an empty video ID is not a valid partition key")
    frame = _check_columns(spec, video_id, frame)
    _check_primary_key(spec, video_id, frame)
    db.ensure_schema()
    as_pgvector = db.has_pgvector if any(c.sql_type == VECTOR_TYPE for c in spec.columns) else False
    rows = _rows(spec, video_id, frame, as_pgvector)
    table = sql.Identifier(spec.name)
    copy_statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        table, sql.SQL(", ").join(sql.Identifier(name) for name in spec.column_names)
    )
    try:
        with db.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.execute(
                sql.SQL("DELETE FROM {} WHERE {} = %s").format(table, sql.Identifier(VIDEO_ID_COLUMN)),
                (video_id,),
            )
            deleted = cursor.rowcount
            if rows:
                with cursor.copy(copy_statement) as copy:
                    for row in rows:
                        copy.write_row(row)
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as error:
        raise SchemaMismatchError(
            f"{spec.name} (video {video_id!r}): the database rejected the rows: {error}"
        ) from error
    logger.debug("%s: replaced %d row(s) of video %s with %d", spec.name, deleted, video_id, len(rows))
    return len(rows)


def _column_expression(column: Column) -> sql.Composable:
    if column.sql_type == VECTOR_TYPE:  # pgvector casts to real[] too, so both backends read alike
        return sql.SQL("{}::real[]").format(sql.Identifier(column.name))
    return sql.Identifier(column.name)


def _series(column: Column, values: Sequence[Any]) -> pd.Series:
    sql_type = column.sql_type
    if sql_type in ("integer", "bigint"):
        return pd.Series(values, dtype="Int64" if column.nullable else "int64")
    if sql_type == "double precision":
        return pd.Series([np.nan if value is None else value for value in values], dtype="float64")
    if sql_type == "boolean":
        return pd.Series(values, dtype="boolean" if column.nullable else "bool")
    if sql_type == VECTOR_TYPE:
        arrays = [None if value is None else np.asarray(value, dtype=np.float32) for value in values]
        series = pd.Series([None] * len(arrays), dtype="object")
        for position, array in enumerate(arrays):
            series.iat[position] = array  # element-wise: a list of equal-length arrays would become 2-D
        return series
    return pd.Series(list(values), dtype="object")


def read_partition(db: Database, spec: TableSpec, video_id: str) -> pd.DataFrame:
    """Read every row of ``video_id`` from ``spec``'s table.

    Args:
        db: The metadata database.
        spec: The table to read.
        video_id: The partition key.

    Returns:
        A DataFrame with ``spec.data_column_names`` as columns (no ``video_id``), ordered by
        primary key, dtypes as described in the module docstring; 0 rows when nothing was written.

    Raises:
        DatabaseUnavailableError: the database cannot be reached.
    """
    db.ensure_schema()
    columns = spec.data_columns
    query = sql.SQL("SELECT {} FROM {} WHERE {} = %s ORDER BY {}").format(
        sql.SQL(", ").join(_column_expression(column) for column in columns),
        sql.Identifier(spec.name),
        sql.Identifier(VIDEO_ID_COLUMN),
        sql.SQL(", ").join(sql.Identifier(name) for name in spec.primary_key),
    )
    with db.connection() as conn:
        records = conn.execute(query, (video_id,)).fetchall()
    data = {
        column.name: _series(column, [record[position] for record in records])
        for position, column in enumerate(columns)
    }
    return pd.DataFrame(data, columns=list(spec.data_column_names))


def count_partition_rows(db: Database, spec: TableSpec, video_id: str) -> int:
    """Number of rows ``video_id`` has in ``spec``'s table."""
    db.ensure_schema()
    with db.connection() as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
                sql.Identifier(spec.name), sql.Identifier(VIDEO_ID_COLUMN)
            ),
            (video_id,),
        ).fetchone()
    return int(row[0]) if row is not None else 0


def delete_video(db: Database, video_id: str) -> None:
    """Delete every row of ``video_id`` from every metadata table, in one transaction.

    Blobs are not touched: delete them with ``BlobStore.delete_prefix(video_id + "/")``.

    Args:
        db: The metadata database.
        video_id: The video to forget.
    """
    db.ensure_schema()
    with db.connection() as conn, conn.transaction():
        for spec in reversed(list(TABLES.values())):
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE {} = %s").format(
                    sql.Identifier(spec.name), sql.Identifier(VIDEO_ID_COLUMN)
                ),
                (video_id,),
            )
    logger.info("Deleted the metadata rows of video %s", video_id)
