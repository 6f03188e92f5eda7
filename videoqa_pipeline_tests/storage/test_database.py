"""Database settings, laziness, caching and failure messages."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from videoqa_pipeline.storage.database import Database, DatabaseSettings, get_database, redact_url
from videoqa_pipeline.storage.errors import DatabaseUnavailableError


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once the socket is closed


def test_database_is_lazy_and_cached_per_settings(tmp_path: Path) -> None:
    settings = DatabaseSettings(url=f"postgresql://u:secret@127.0.0.1:{_closed_port()}/db", home=tmp_path)

    database = get_database(settings)  # must not connect: definitions load without a database

    assert get_database(settings) is database
    assert get_database(DatabaseSettings(url=settings.url, home=tmp_path, pool_size=2)) is not database
    assert not (tmp_path / "pgdata").exists()


def test_unreachable_server_fails_with_actionable_message(tmp_path: Path) -> None:
    port = _closed_port()
    database = Database(
        DatabaseSettings(
            url=f"postgresql://u:secret@127.0.0.1:{port}/videos", home=tmp_path, timeout_seconds=1
        )
    )

    with pytest.raises(DatabaseUnavailableError) as caught:
        database.ensure_schema()

    message = str(caught.value)
    assert f"127.0.0.1:{port}/videos" in message and "POSTGRES_TIMEOUT" in message
    assert "secret" not in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://user:pw@db.example:6543/videos?sslmode=require",
            "postgresql://db.example:6543/videos",
        ),
        (
            "postgresql://postgres@/videoqa?host=/tmp/x/pgdata&port=5432",
            "postgresql://%2Ftmp%2Fx%2Fpgdata:5432/videoqa",
        ),
        ("host=h port=1 dbname=d user=u password=pw", "postgresql://h:1/d"),
    ],
)
def test_redacted_url_has_no_credentials(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(("pool_size", "timeout"), [(0, 10.0), (5, 0.0)])
def test_invalid_settings_are_rejected(tmp_path: Path, pool_size: int, timeout: float) -> None:
    with pytest.raises(ValueError, match="POSTGRES_"):
        DatabaseSettings(url=None, home=tmp_path, pool_size=pool_size, timeout_seconds=timeout)
