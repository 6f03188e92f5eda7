"""PostgresTableIOManager inside real Dagster materializations, on every available backend."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from videoqa_pipeline.defs.io_managers.postgres import PostgresTableIOManager
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.schema import TABLES
from videoqa_pipeline.storage.tables import count_partition_rows, read_partition

from .test_tables import sample_frame

videos = dg.DynamicPartitionsDefinition(name="videos")
received: dict[str, pd.DataFrame] = {}


@dg.asset(partitions_def=videos)
def scenes() -> pd.DataFrame:
    return sample_frame("scenes")


@dg.asset(partitions_def=videos)
def keyframes(scenes: pd.DataFrame) -> pd.DataFrame:
    received["scenes"] = scenes
    return sample_frame("keyframes")


@dg.asset(partitions_def=videos)
def frame_analyses() -> pd.DataFrame:
    return sample_frame("frame_analyses").iloc[0:0]  # vision disabled: an empty table


@dg.asset(partitions_def=videos, name="embeddings")
def embeddings_returning_a_list() -> list[int]:
    return [1, 2, 3]


@dg.asset(partitions_def=videos)
def thumbnails() -> pd.DataFrame:
    return pd.DataFrame({"x": [1]})


@dg.asset(name="scenes")
def unpartitioned_scenes() -> pd.DataFrame:
    return sample_frame("scenes")


def _io_manager(database: Database) -> PostgresTableIOManager:
    settings = database.settings
    return PostgresTableIOManager(
        database_url=settings.url,
        home=str(settings.home),
        pool_size=settings.pool_size,
        timeout_seconds=settings.timeout_seconds,
    )


def _materialize(
    assets: list[dg.AssetsDefinition], database: Database, video_id: str | None, raise_on_error: bool = True
) -> dg.ExecuteInProcessResult:
    instance = dg.DagsterInstance.ephemeral()
    if video_id is not None:
        instance.add_dynamic_partitions("videos", [video_id])
    return dg.materialize(
        assets,
        partition_key=video_id,
        instance=instance,
        resources={"io_manager": _io_manager(database)},
        raise_on_error=raise_on_error,
    )


def test_materialization_writes_rows_and_reports_schema(database: Database, video_id: str) -> None:
    result = _materialize([scenes, keyframes], database, video_id)

    assert result.success
    metadata = result.asset_materializations_for_node("scenes")[0].metadata
    assert metadata["dagster/row_count"].value == 3
    schema = metadata["dagster/column_schema"].value
    assert isinstance(schema, dg.TableSchema)
    assert [column.name for column in schema.columns] == list(TABLES["scenes"].column_names)
    assert metadata["table"].value == "videoqa_scenes"
    assert metadata["storage"].value == "postgres"
    uri = str(metadata["uri"].value)
    assert uri.startswith("postgresql://") and f"video_id={video_id}" in uri and "@" not in uri
    assert count_partition_rows(database, TABLES["keyframes"], video_id) == 2


def test_downstream_asset_loads_the_upstream_frame(database: Database, video_id: str) -> None:
    _materialize([scenes, keyframes], database, video_id)

    loaded = received["scenes"]
    pd.testing.assert_frame_equal(loaded, read_partition(database, TABLES["scenes"], video_id))
    assert loaded["scene_index"].tolist() == [0, 1, 2]
    assert "video_id" not in loaded.columns


def test_rematerializing_keeps_row_counts(database: Database, video_id: str) -> None:
    _materialize([scenes, keyframes], database, video_id)
    _materialize([scenes, keyframes], database, video_id)
    result = _materialize([scenes], database, video_id)

    assert result.asset_materializations_for_node("scenes")[0].metadata["dagster/row_count"].value == 3
    assert count_partition_rows(database, TABLES["scenes"], video_id) == 3
    assert count_partition_rows(database, TABLES["keyframes"], video_id) == 2


def test_empty_frame_materializes_zero_rows(database: Database, video_id: str) -> None:
    result = _materialize([frame_analyses], database, video_id)

    assert (
        result.asset_materializations_for_node("frame_analyses")[0].metadata["dagster/row_count"].value == 0
    )
    assert read_partition(database, TABLES["frame_analyses"], video_id).empty


@pytest.mark.parametrize(
    ("asset", "message"),
    [
        (embeddings_returning_a_list, "returned list"),
        (thumbnails, "only stores the table assets"),
    ],
)
def test_wrong_outputs_fail_with_a_clear_error(
    database: Database, video_id: str, asset: dg.AssetsDefinition, message: str
) -> None:
    result = _materialize([asset], database, video_id, raise_on_error=False)

    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    assert message in str(failure.step_failure_data.error)


def test_unpartitioned_asset_is_refused(database: Database) -> None:
    result = _materialize([unpartitioned_scenes], database, None, raise_on_error=False)

    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    assert "not partitioned" in str(failure.step_failure_data.error)
