"""What a stage hands back: its table rows, the blobs it wrote and the facts a person reads.

Facts are plain Python values so that anything can show them: the Dagster layer turns them into
materialization metadata (:mod:`videoqa_pipeline.defs.assets.common`), a benchmark or a CLI can
print them. Two wrappers say how a string is meant to be read; everything else is a number, a
bool, plain text, ``None`` or a JSON-able list or dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

import pandas as pd

from videoqa_pipeline.storage.schema import TABLES


@dataclass(frozen=True)
class Markdown:
    """Text meant to be rendered as Markdown (previews, tables, thumbnails)."""

    text: str


@dataclass(frozen=True)
class Location:
    """A path or URI a person may copy (the source, a stored blob)."""

    value: str


#: The fact that says a stage succeeded with less than all of its input (a damaged stream): the
#: run copies it to its job row, so the job says it succeeded with warnings.
WARNING_FACT = "warning"

#: One metadata fact. Lists and dicts hold JSON values only.
Fact: TypeAlias = int | float | bool | str | list[Any] | dict[str, Any] | Markdown | Location | None


@dataclass(frozen=True)
class StageResult:
    """The outcome of one stage for one video.

    Attributes:
        table: The stage's table (a key of :data:`videoqa_pipeline.storage.schema.TABLES`).
        rows: Its rows, without ``video_id`` (the storage layer adds the partition key).
        facts: What a person wants to know about this run of the stage, in display order.
        blobs: Keys of the blobs the stage wrote, in the order it wrote them.
    """

    table: str
    rows: list[dict[str, Any]]
    facts: dict[str, Fact] = field(default_factory=dict)
    blobs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.table not in TABLES:
            raise ValueError(f"unknown table {self.table!r}: expected one of {', '.join(TABLES)}")

    def frame(self) -> pd.DataFrame:
        """The rows as a frame with exactly the table's data columns, in table order.

        This is what the IO managers store; an empty result still has every column.
        """
        return pd.DataFrame(self.rows, columns=columns(self.table))

    @property
    def warning(self) -> str | None:
        """What the stage could not process although it succeeded, or None."""
        text = self.facts.get(WARNING_FACT)
        return text if isinstance(text, str) else None

    @property
    def skipped(self) -> str | None:
        """Why the stage did no work (disabled, nothing to do), or None when it ran."""
        reason = self.facts.get("skipped")
        return reason if isinstance(reason, str) else None


def columns(table: str) -> list[str]:
    """The data columns of ``table`` (everything but the partition key), in table order."""
    return list(TABLES[table].data_column_names)
