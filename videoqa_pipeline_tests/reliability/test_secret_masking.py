"""Database passwords never reach a message, in any form libpq accepts.

libpq takes a password from the URI's userinfo (percent-encoded or not, and a ``#``, ``/`` or
``@`` in it changes how the rest of the URI is read), from a ``password=`` query parameter, or
from a ``key=value`` connection string (quoted or not). ``videoqa check-config`` shows
``DATABASE_URL`` and every problem with it, and a database that cannot be reached is reported in
exceptions and logs: none of them may print the password, its percent-encoded form, or a piece
of it that a misparsed URI turned into a host or database name.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from videoqa_pipeline.cli import main as cli_main
from videoqa_pipeline.settings import mask_url_password
from videoqa_pipeline.storage.database import Database, DatabaseSettings, redact_url

#: ``DATABASE_URL`` -> the fragments of its password that must never be printed.
CONFIGURED = {
    "postgresql://app@db.internal/videoqa?password=QueryParamSecret42": ["QueryParamSecret42"],
    "postgresql://app@db.internal/videoqa?sslmode=require&password=Amp%26Secret42q": [
        "Amp%26Secret42q",
        "Amp&Secret42q",
        "Secret42q",
    ],
    "postgresql://app:Hash#Secret42x@db.internal/videoqa": ["Hash#Secret42x", "Secret42x"],
    "postgresql://app:Slash/Secret42y@db.internal/videoqa": ["Slash/Secret42y", "Secret42y"],
    "postgresql://app:At@Secret42z@db.internal/videoqa": ["At@Secret42z", "Secret42z"],
    "postgresql://app:Enc%2FSecret%2342e@db.internal/videoqa": [
        "Enc%2FSecret%2342e",
        "Enc/Secret#42e",
        "Secret%2342e",
        "Secret#42e",
    ],
    "postgres://app:PlainSecret42p@db.internal:5432/videoqa?sslmode=require": ["PlainSecret42p"],
    "host=db.internal user=app password=KeyValueSecret42 dbname=videoqa": ["KeyValueSecret42"],
    "host=db.internal user=app password='Quoted Secret42k' dbname=videoqa": ["Quoted Secret42k", "Secret42k"],
    r"host=db.internal password='It\'sSecret42s' dbname=videoqa": ["It\\'sSecret42s", "sSecret42s"],
    "dbname=videoqa password = SpacedSecret42t host=db.internal": ["SpacedSecret42t"],
}


def _leaks(text: str, fragments: list[str]) -> list[str]:
    forms = {form for fragment in fragments for form in (fragment, quote(fragment, safe=""))}
    return sorted(form for form in forms if form in text)


@pytest.mark.parametrize("url", list(CONFIGURED))
def test_mask_url_password_hides_every_form(url: str) -> None:
    masked = mask_url_password(url)
    assert not _leaks(masked, CONFIGURED[url]), masked
    assert "***" in masked and "db.internal" in masked


@pytest.mark.parametrize("url", list(CONFIGURED))
def test_check_config_never_prints_the_password(url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli_main, ["check-config"], env={"DATABASE_URL": url, "VIDEOQA_HOME": str(tmp_path)}
    )
    printed = result.output + (result.stderr or "")
    assert "DATABASE_URL" in printed
    assert not _leaks(printed, CONFIGURED[url]), printed
    as_json = CliRunner().invoke(
        cli_main, ["check-config", "--json"], env={"DATABASE_URL": url, "VIDEOQA_HOME": str(tmp_path)}
    )
    assert not _leaks(as_json.output, CONFIGURED[url]), as_json.output


#: URLs of servers that cannot be reached (port 1 refuses at once), each mangled in its own way.
UNREACHABLE = {
    "postgresql://app:Bad%zzSecret42b@127.0.0.1:1/videoqa": ["Bad%zzSecret42b", "zzSecret42b"],
    "postgresql://app:At@Secret42w@127.0.0.1:1/videoqa": ["At@Secret42w", "Secret42w"],
    "postgresql://app:Slash/Secret42v@127.0.0.1:1/videoqa": ["Slash/Secret42v", "Secret42v"],
    "postgresql://app:Enc%40Secret42u@127.0.0.1:1/videoqa": ["Enc%40Secret42u", "Enc@Secret42u", "Secret42u"],
    "postgresql://app:V6Secret42i@[::1/videoqa": ["V6Secret42i"],
    "host=127.0.0.1 port=1 password='Unclosed Secret42c dbname=videoqa": ["Unclosed Secret42c", "Secret42c"],
}


@pytest.mark.parametrize("url", list(UNREACHABLE))
def test_connection_errors_never_print_the_password(
    url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fragments = UNREACHABLE[url]
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="psycopg.pool")  # the CLI quiets it; Dagster processes do not
    database = Database(DatabaseSettings(url=url, home=tmp_path, pool_size=1, timeout_seconds=1))
    try:
        with pytest.raises(Exception) as raised:
            database.ensure_schema()
    finally:
        database.close()
    chain = []
    error: BaseException | None = raised.value
    while error is not None:
        chain.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    messages = "\n".join(chain) + "\n" + "\n".join(record.getMessage() for record in caplog.records)
    assert not _leaks(str(raised.value), fragments), str(raised.value)
    assert not _leaks(messages, fragments), messages
    assert not _leaks(redact_url(url), fragments), redact_url(url)
    assert not _leaks(database.redacted_url, fragments), database.redacted_url
