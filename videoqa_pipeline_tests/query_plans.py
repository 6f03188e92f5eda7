"""What a code path asks PostgreSQL, and how much of each table the answers read.

Shared by the tests that keep the service's hot paths bounded and by ``benchmarks/bench_scale.py``:
:func:`recorded_statements` records every statement run through a psycopg client cursor while a
block runs (the real code path, not a copy of its SQL), and :func:`explain` replays them under
``EXPLAIN (ANALYZE, BUFFERS)`` in a transaction that is rolled back. A statement's *rows read*
from a table counts every row its scans of that table looked at: the rows they returned plus
those their filters and rechecks threw away, times their loops. Unlike a plan's node types it does
not depend on the planner's mood: a bounded query reads a few rows whatever the table holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from videoqa_pipeline.storage.database import Database


@dataclass(frozen=True)
class Statement:
    """One statement as the code ran it: SQL text and parameters."""

    sql: str
    params: Any


@dataclass(frozen=True)
class ExplainedStatement:
    """One statement's plan and what it read."""

    sql: str
    milliseconds: float
    rows_read: dict[str, int]
    seq_scans: tuple[str, ...]
    plan: dict[str, Any] = field(repr=False)


@contextlib.contextmanager
def recorded_statements() -> Iterator[list[Statement]]:
    """Record every statement run through a client cursor of this process while the block runs."""
    seen: list[Statement] = []
    original = psycopg.Cursor.execute

    def recording(self: psycopg.Cursor[Any], query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = query.as_string(self.connection) if hasattr(query, "as_string") else str(query)
        seen.append(Statement(text, params))
        return original(self, query, params, **kwargs)

    psycopg.Cursor.execute = recording  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        psycopg.Cursor.execute = original  # type: ignore[method-assign]


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A plan node and all nodes below it."""
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def _rows_read(node: dict[str, Any]) -> int:
    looked_at = (
        node.get("Actual Rows", 0)
        + node.get("Rows Removed by Filter", 0)
        + node.get("Rows Removed by Index Recheck", 0)
    )
    return round(looked_at * node.get("Actual Loops", 1))


def explain(db: Database, statements: list[Statement]) -> list[ExplainedStatement]:
    """Replay ``statements`` in one rolled-back transaction: ``SET`` as they are, queries under
    ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)``; other statements are left out."""
    explained: list[ExplainedStatement] = []
    with db.connection() as conn, conn.transaction(force_rollback=True):
        for statement in statements:
            words = statement.sql.split(None, 1)
            head = words[0].upper() if words else ""
            if head == "SET":
                conn.execute(statement.sql, statement.params)
                continue
            if head not in ("SELECT", "WITH"):
                continue
            row = conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement.sql, statement.params
            ).fetchone()
            assert row is not None
            plan = row[0][0]
            read: dict[str, int] = {}
            for node in plan_nodes(plan["Plan"]):
                if "Relation Name" in node:
                    read[node["Relation Name"]] = read.get(node["Relation Name"], 0) + _rows_read(node)
            scans = {
                node["Relation Name"] for node in plan_nodes(plan["Plan"]) if node["Node Type"] == "Seq Scan"
            }
            explained.append(
                ExplainedStatement(
                    " ".join(statement.sql.split()),
                    round(float(plan["Execution Time"]), 2),
                    read,
                    tuple(sorted(scans)),
                    plan,
                )
            )
    return explained
