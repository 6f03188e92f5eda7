"""Typed settings read from environment variables.

The variable names and defaults are a public interface that existing deployments rely on
(see DESIGN.md), so parsing is lenient and *collects* problems instead of stopping at the
first one: an operator fixing a broken deployment wants the whole list at once.
Nothing here ever prints a secret; use :meth:`Settings.describe` for display.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

from videoqa_pipeline.ai.config import AIConfig
from videoqa_pipeline.fetch import SourcePolicy

JOB_SOURCES = ("postgres", "sqs", "webhook", "inbox")
STORAGE_TYPES = ("postgres", "s3", "hybrid")
METADATA_STORAGES = ("postgres", "s3")
FILE_STORAGES = ("local", "postgres", "s3")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_AWS_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

T = TypeVar("T")


def load_settings() -> Settings:
    """The deployment's settings, read from this process's environment.

    This is the one place the environment is read: everything else receives these settings (or a
    value derived from them), so a test or a second configuration never leaks in through
    ``os.environ``. Never raises; :meth:`Settings.problems` says what is wrong.
    """
    return Settings.from_env(os.environ)


def environment() -> dict[str, str]:
    """A copy of this process's environment, for the few readers that take variables rather than
    Settings (the answerer's provider switch)."""
    return dict(os.environ)


class SettingsError(ValueError):
    """Raised by :meth:`Settings.validate`; carries every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        bullet_list = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{len(problems)} configuration problem(s):\n{bullet_list}")


class _Reader:
    """Reads typed values from an environment mapping, remembering every parse problem."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.raw(name)
        return default if value is None else value

    def _parse(self, name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError:
            self.problems.append(f"{name}={value!r} is not {expected}")
            return default

    def integer(self, name: str, default: int, low: int | None = None, high: int | None = None) -> int:
        value = self._parse(name, default, int, "an integer")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.problems.append(f"{name}={value} is out of range: must be {bounds}")
            return default
        return value

    def number(self, name: str, default: float, low_exclusive: float = 0.0) -> float:
        value = self._parse(name, default, float, "a number")
        if value <= low_exclusive:
            self.problems.append(f"{name}={value} must be greater than {low_exclusive:g}")
            return default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        def parse(value: str) -> bool:
            lowered = value.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(value)

        return self._parse(name, default, parse, "a boolean (true/false, 1/0, yes/no)")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = (self.raw(name) or default).lower()
        if value not in choices:
            self.problems.append(f"{name}={value!r} is unknown: expected one of {', '.join(choices)}")
            return default
        return value

    def choices(self, name: str, default: str, choices: tuple[str, ...]) -> tuple[str, ...]:
        raw = self.raw(name) or default
        picked: list[str] = []
        for item in (part.strip().lower() for part in raw.split(",")):
            if not item:
                continue
            if item not in choices:
                self.problems.append(
                    f"{name} contains unknown value {item!r}: expected any of {', '.join(choices)}"
                )
            elif item not in picked:
                picked.append(item)
        return tuple(picked) or (default,)


def _paths(value: str) -> tuple[Path, ...]:
    """A PATH-style list (``os.pathsep``-separated) of directories; empty entries are ignored."""
    return tuple(Path(part.strip()).expanduser() for part in value.split(os.pathsep) if part.strip())


_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
#: ``password = value`` in a libpq key=value string: a single-quoted value (backslash escapes,
#: possibly unterminated) or an unquoted one up to the next blank.
_KEYWORD_PASSWORD = re.compile(r"(?:(?<=\s)|^)(password\s*=\s*)('(?:[^'\\]|\\.)*'?|(?:[^\s\\]|\\.)*)", re.S)
_QUOTED_ESCAPE = re.compile(r"\\(.)", re.S)
#: Pieces of a password shorter than this are not masked inside other text (they would garble it).
_MIN_FRAGMENT = 4


def _split_userinfo(rest: str) -> tuple[str, str] | None:
    """``(userinfo, after)`` of a URI without its ``scheme://``, or None when it has no ``@``.

    The userinfo ends at the *last* ``@``: a password holding ``@``, ``/``, ``#`` or ``?`` (unencoded,
    which libpq misreads) is then masked whole rather than shown in part as a host or database.
    """
    at = rest.rfind("@")
    return None if at < 0 else (rest[:at], rest[at + 1 :])


def _mask_query_passwords(query: str) -> str:
    """``password=...`` parameters of a URI query (the name may be percent-encoded) as ``***``."""
    pairs = query.split("&")
    for index, pair in enumerate(pairs):
        name, equals, _value = pair.partition("=")
        if equals and unquote(name).strip() == "password":
            pairs[index] = f"{name}=***"
    return "&".join(pairs)


def mask_url_password(url: str) -> str:
    """``url`` with every password in it shown as ``***``, so it can be printed or logged.

    Every form libpq takes a password in is covered: the userinfo of a ``postgresql://`` URI (also
    when it holds an unencoded ``@``, ``/``, ``#`` or ``?``), a ``password=`` query parameter, and
    ``password=`` in a ``key=value`` connection string (quoted or not).
    """
    match = _URI_SCHEME.match(url)
    if match is None and "=" in url:
        return _KEYWORD_PASSWORD.sub(lambda found: f"{found.group(1)}***", url)
    prefix = match.group(0) if match else ""
    rest = url[len(prefix) :]
    split = _split_userinfo(rest)
    if split is not None:
        userinfo, rest = split
        user, colon, _password = userinfo.partition(":")
        prefix += f"{user}:***@" if colon else f"{user}@"
    base, question, query = rest.partition("?")
    return prefix + base + (question + _mask_query_passwords(query) if question else "")


def password_fragments(url: str) -> list[str]:
    """Every spelling of the password(s) in a connection string, and their longer pieces.

    For masking a password inside a message that was not built from ``url`` but may quote it:
    libpq and the network quote what they parsed, which for a mangled URI is a piece of the
    password (as a host, a port or a database name), percent-encoded or not.

    Returns:
        The strings to hide, longest first.
    """
    found: list[str] = []
    for value in (match.group(2) for match in _KEYWORD_PASSWORD.finditer(url)):
        found.extend((value, _QUOTED_ESCAPE.sub(r"\1", value.strip("'"))))
    match = _URI_SCHEME.match(url)
    rest = url[match.end() :] if match else url
    split = _split_userinfo(rest) if match or "=" not in url else None
    if split is not None and ":" in split[0]:
        found.append(split[0].partition(":")[2])
    query = rest.partition("?")[2] if match else ""
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        if equals and unquote(name).strip() == "password":
            found.append(value)
    forms: set[str] = set()
    for password in found:
        for form in (
            password,
            unquote(password),
            quote(password, safe=""),
            quote(unquote(password), safe=""),
        ):
            if len(form) >= 3:
                forms.add(form)
            forms.update(piece for piece in re.split(r"[@/#?:&%\s'\\]", form) if len(piece) >= _MIN_FRAGMENT)
    return sorted(forms, key=len, reverse=True)


def mask_passwords_in(text: str, url: str | None) -> str:
    """``text`` (e.g. a driver's error message) with the password of ``url`` in any form as ``***``."""
    if not url:
        return text
    for fragment in password_fragments(url):
        text = text.replace(fragment, "***")
    return text


def _mask_secret(value: str | None) -> str:
    if not value:
        return "(unset)"
    return f"*** ({len(value)} chars)"


@dataclass(frozen=True)
class Settings:
    """Every environment variable of the deployment, typed, with DESIGN.md's defaults."""

    job_sources: tuple[str, ...] = ("postgres",)
    storage_type: str = "postgres"
    metadata_storage: str = "postgres"
    file_storage: str = "local"
    database_url: str | None = None
    postgres_pool_size: int = 5
    postgres_timeout: float = 10.0
    aws_sqs_queue_url: str | None = None
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    sqs_max_messages: int = 1
    sqs_wait_time: int = 20
    aws_s3_bucket: str | None = None
    s3_prefix: str = "video-processing/"
    webhook_secret: str | None = None
    webhook_port: int = 8080
    webhook_url: str | None = None
    max_frames_per_video: int = 50
    enable_transcription: bool = True
    enable_vision_analysis: bool = True
    enable_embeddings: bool = True
    worker_poll_ms: int = 1500
    worker_max_attempts: int = 3
    log_level: str = "INFO"
    worker_dev_http: bool = False
    worker_http_port: int = 8000
    home: Path = Path(".videoqa")
    dagster_home: Path | None = None
    inbox_dir: Path | None = None
    inbox_settle_seconds: float = 5.0
    max_queued_runs: int = 10
    jobs_per_tick: int = 50
    partition_working_set: int = 5000
    run_timeout_seconds: float = 6 * 3600.0
    blob_dir: Path | None = None
    allowed_local_roots: tuple[Path, ...] | None = None
    allow_private_network_sources: bool = False
    fetch_timeout_seconds: float = 60.0
    http_max_header_bytes: int = 16 * 1024
    http_max_headers: int = 100
    http_header_timeout: float = 10.0
    http_body_timeout: float = 30.0
    http_max_body_bytes: int = 64 * 1024
    ai: AIConfig = field(default_factory=lambda: AIConfig.from_env({}))
    parse_problems: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Parse ``env`` (default: ``os.environ``). Never raises: problems are kept for :meth:`validate`."""
        env = os.environ if env is None else env
        read = _Reader(env)
        storage_type = read.choice("STORAGE_TYPE", "postgres", STORAGE_TYPES)
        # Hybrid splits metadata and files; the single-backend modes keep metadata where they say
        # and files on local disk unless FILE_STORAGE says otherwise.
        default_metadata = "s3" if storage_type == "s3" else "postgres"
        default_files = "s3" if storage_type in ("s3", "hybrid") else "local"
        home = Path(read.text("VIDEOQA_HOME", ".videoqa") or ".videoqa")
        blob_dir = read.text("VIDEOQA_BLOB_DIR")
        inbox = read.text("VIDEOQA_INBOX")
        local_roots = read.text("VIDEOQA_ALLOWED_LOCAL_ROOTS")
        settings = cls(
            job_sources=read.choices("JOB_SOURCE_TYPE", "postgres", JOB_SOURCES),
            storage_type=storage_type,
            metadata_storage=read.choice("METADATA_STORAGE", default_metadata, METADATA_STORAGES),
            file_storage=read.choice("FILE_STORAGE", default_files, FILE_STORAGES),
            database_url=read.text("DATABASE_URL"),
            postgres_pool_size=read.integer("POSTGRES_POOL_SIZE", 5, low=1, high=100),
            postgres_timeout=read.number("POSTGRES_TIMEOUT", 10.0),
            aws_sqs_queue_url=read.text("AWS_SQS_QUEUE_URL"),
            aws_region=read.text("AWS_REGION", "us-east-1") or "us-east-1",
            aws_endpoint_url=read.text("AWS_ENDPOINT_URL"),
            sqs_max_messages=read.integer("SQS_MAX_MESSAGES", 1, low=1, high=10),
            sqs_wait_time=read.integer("SQS_WAIT_TIME", 20, low=0, high=20),
            aws_s3_bucket=read.text("AWS_S3_BUCKET"),
            s3_prefix=read.text("S3_PREFIX", "video-processing/") or "video-processing/",
            webhook_secret=read.text("WEBHOOK_SECRET"),
            webhook_port=read.integer("WEBHOOK_PORT", 8080, low=1, high=65535),
            webhook_url=read.text("WEBHOOK_URL"),
            max_frames_per_video=read.integer("MAX_FRAMES_PER_VIDEO", 50, low=1, high=10_000),
            enable_transcription=read.boolean("ENABLE_TRANSCRIPTION", True),
            enable_vision_analysis=read.boolean("ENABLE_VISION_ANALYSIS", True),
            enable_embeddings=read.boolean("ENABLE_EMBEDDINGS", True),
            worker_poll_ms=read.integer("WORKER_POLL_MS", 1500, low=100),
            worker_max_attempts=read.integer("WORKER_MAX_ATTEMPTS", 3, low=1, high=20),
            log_level=read.choice("LOG_LEVEL", "INFO", tuple(level.lower() for level in LOG_LEVELS)).upper(),
            worker_dev_http=read.boolean("WORKER_DEV_HTTP", False),
            worker_http_port=read.integer("WORKER_HTTP_PORT", 8000, low=1, high=65535),
            home=home,
            dagster_home=Path(dagster_home) if (dagster_home := read.text("DAGSTER_HOME")) else None,
            inbox_dir=Path(inbox) if inbox else None,
            inbox_settle_seconds=read.number("VIDEOQA_INBOX_SETTLE_SECONDS", 5.0),
            max_queued_runs=read.integer("VIDEOQA_MAX_QUEUED_RUNS", 10, low=1, high=100_000),
            jobs_per_tick=read.integer("VIDEOQA_JOBS_PER_TICK", 50, low=1, high=10_000),
            partition_working_set=read.integer("VIDEOQA_PARTITION_WORKING_SET", 5000, low=0, high=10_000_000),
            run_timeout_seconds=read.number("VIDEOQA_RUN_TIMEOUT", 6 * 3600.0),
            blob_dir=Path(blob_dir) if blob_dir else None,
            allowed_local_roots=_paths(local_roots) if local_roots is not None else None,
            allow_private_network_sources=read.boolean("VIDEOQA_ALLOW_PRIVATE_NETWORK_SOURCES", False),
            fetch_timeout_seconds=read.number("VIDEOQA_FETCH_TIMEOUT", 60.0),
            http_max_header_bytes=read.integer(
                "VIDEOQA_HTTP_MAX_HEADER_BYTES", 16 * 1024, low=1024, high=1 << 20
            ),
            http_max_headers=read.integer("VIDEOQA_HTTP_MAX_HEADERS", 100, low=1, high=10_000),
            http_header_timeout=read.number("VIDEOQA_HTTP_HEADER_TIMEOUT", 10.0),
            http_body_timeout=read.number("VIDEOQA_HTTP_BODY_TIMEOUT", 30.0),
            http_max_body_bytes=read.integer(
                "VIDEOQA_HTTP_MAX_BODY_BYTES", 64 * 1024, low=1024, high=64 << 20
            ),
            ai=AIConfig.from_env(env),
        )
        return dataclasses.replace(settings, parse_problems=tuple(read.problems))

    @property
    def blob_root(self) -> Path:
        """Where the local blob store keeps media: VIDEOQA_BLOB_DIR, else ``$VIDEOQA_HOME/blobs``."""
        return self.blob_dir if self.blob_dir is not None else self.home / "blobs"

    @property
    def dagster_instance_dir(self) -> Path:
        """Where the Dagster instance keeps run history: DAGSTER_HOME, else ``$VIDEOQA_HOME/dagster``
        (what this project's dagster.yaml points `dagster dev` at), so the CLI's runs and the UI's
        are the same history."""
        return self.dagster_home if self.dagster_home is not None else self.home / "dagster"

    @property
    def inbox(self) -> Path:
        """The watched folder: VIDEOQA_INBOX, else ``$VIDEOQA_HOME/inbox``."""
        return self.inbox_dir if self.inbox_dir is not None else self.home / "inbox"

    @property
    def local_roots(self) -> tuple[Path, ...]:
        """Directories whose files webhook and SQS jobs may name: VIDEOQA_ALLOWED_LOCAL_ROOTS, else the inbox."""
        return self.allowed_local_roots if self.allowed_local_roots is not None else (self.inbox,)

    @property
    def source_policy(self) -> SourcePolicy:
        """What job sources may point at (see :class:`videoqa_pipeline.fetch.SourcePolicy`)."""
        return SourcePolicy(
            allowed_local_roots=self.local_roots,
            allow_private_network=self.allow_private_network_sources,
            timeout_seconds=self.fetch_timeout_seconds,
        )

    @property
    def watches_inbox(self) -> bool:
        """Whether the inbox sensor runs: JOB_SOURCE_TYPE lists ``inbox``, or the database is the
        embedded one (the zero-setup default takes jobs from both the ledger and the inbox)."""
        return "inbox" in self.job_sources or self.uses_embedded_database

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None

    def problems(self) -> list[str]:
        """Every problem with these settings, parse errors and cross-field rules alike."""
        problems = list(self.parse_problems)
        uses_s3 = "s3" in (self.metadata_storage, self.file_storage)
        if self.storage_type == "hybrid" and self.metadata_storage == self.file_storage == "postgres":
            problems.append(
                "STORAGE_TYPE=hybrid needs FILE_STORAGE=s3 or local (files and metadata both in postgres is STORAGE_TYPE=postgres)"
            )
        if uses_s3 and not self.aws_s3_bucket:
            problems.append(
                f"STORAGE_TYPE={self.storage_type} stores data in S3 but AWS_S3_BUCKET is not set"
            )
        if "sqs" in self.job_sources and not self.aws_sqs_queue_url:
            problems.append("JOB_SOURCE_TYPE includes sqs but AWS_SQS_QUEUE_URL is not set")
        if (uses_s3 or "sqs" in self.job_sources) and not _AWS_REGION.match(self.aws_region):
            problems.append(
                f"AWS_REGION={self.aws_region!r} does not look like an AWS region (e.g. us-east-1)"
            )
        if "webhook" in self.job_sources and not self.webhook_secret:
            problems.append(
                "JOB_SOURCE_TYPE includes webhook but WEBHOOK_SECRET is not set: unsigned intake is refused"
            )
        if self.database_url is not None and urlsplit(self.database_url).scheme not in (
            "postgres",
            "postgresql",
        ):
            problems.append(
                f"DATABASE_URL={mask_url_password(self.database_url)!r} must start with postgresql:// (psycopg 3 connection URL)"
            )
        for name, url in (("AWS_ENDPOINT_URL", self.aws_endpoint_url), ("WEBHOOK_URL", self.webhook_url)):
            if url is not None and urlsplit(url).scheme not in ("http", "https"):
                problems.append(f"{name}={mask_url_password(url)!r} must be an http(s):// URL")
        relative = [str(root) for root in self.allowed_local_roots or () if not root.is_absolute()]
        if relative:
            problems.append(
                f"VIDEOQA_ALLOWED_LOCAL_ROOTS must list absolute directories (separated by {os.pathsep!r}); "
                f"not absolute: {', '.join(relative)}"
            )
        if self.file_storage == "postgres":
            problems.append(
                "FILE_STORAGE=postgres (blobs inside Postgres) is not available yet: use local or s3"
            )
        problems.extend(self.ai.problems())
        return problems

    def validate(self) -> Settings:
        """Return ``self`` when usable, else raise :class:`SettingsError` listing every problem."""
        problems = self.problems()
        if problems:
            raise SettingsError(problems)
        return self

    def describe(self) -> dict[str, str]:
        """Effective settings for display, secrets masked."""
        shown: dict[str, Any] = {
            "JOB_SOURCE_TYPE": ",".join(self.job_sources),
            "STORAGE_TYPE": self.storage_type,
            "METADATA_STORAGE": self.metadata_storage,
            "FILE_STORAGE": self.file_storage,
            "DATABASE_URL": mask_url_password(self.database_url)
            if self.database_url
            else f"(unset: embedded PostgreSQL under {self.home / 'pgdata'})",
            "POSTGRES_POOL_SIZE": self.postgres_pool_size,
            "POSTGRES_TIMEOUT": self.postgres_timeout,
            "AWS_SQS_QUEUE_URL": self.aws_sqs_queue_url or "(unset)",
            "AWS_REGION": self.aws_region,
            "AWS_ENDPOINT_URL": mask_url_password(self.aws_endpoint_url)
            if self.aws_endpoint_url
            else "(unset)",
            "SQS_MAX_MESSAGES": self.sqs_max_messages,
            "SQS_WAIT_TIME": self.sqs_wait_time,
            "AWS_S3_BUCKET": self.aws_s3_bucket or "(unset)",
            "S3_PREFIX": self.s3_prefix,
            "WEBHOOK_SECRET": _mask_secret(self.webhook_secret),
            "WEBHOOK_PORT": self.webhook_port,
            "WEBHOOK_URL": mask_url_password(self.webhook_url) if self.webhook_url else "(unset)",
            "MAX_FRAMES_PER_VIDEO": self.max_frames_per_video,
            "ENABLE_TRANSCRIPTION": self.enable_transcription,
            "ENABLE_VISION_ANALYSIS": self.enable_vision_analysis,
            "ENABLE_EMBEDDINGS": self.enable_embeddings,
            "WORKER_POLL_MS": self.worker_poll_ms,
            "WORKER_MAX_ATTEMPTS": self.worker_max_attempts,
            "LOG_LEVEL": self.log_level,
            "WORKER_DEV_HTTP": self.worker_dev_http,
            "WORKER_HTTP_PORT": self.worker_http_port,
            "VIDEOQA_HOME": str(self.home),
            "DAGSTER_HOME": str(self.dagster_home)
            if self.dagster_home
            else f"(unset: {self.home / 'dagster'})",
            "VIDEOQA_BLOB_DIR": str(self.blob_root),
            "VIDEOQA_INBOX": f"{self.inbox}" + ("" if self.watches_inbox else " (not watched)"),
            "VIDEOQA_INBOX_SETTLE_SECONDS": self.inbox_settle_seconds,
            "VIDEOQA_MAX_QUEUED_RUNS": self.max_queued_runs,
            "VIDEOQA_JOBS_PER_TICK": self.jobs_per_tick,
            "VIDEOQA_PARTITION_WORKING_SET": self.partition_working_set,
            "VIDEOQA_RUN_TIMEOUT": self.run_timeout_seconds,
            "VIDEOQA_ALLOWED_LOCAL_ROOTS": os.pathsep.join(str(root) for root in self.local_roots)
            or "(none: webhook and SQS jobs cannot name local files)",
            "VIDEOQA_ALLOW_PRIVATE_NETWORK_SOURCES": self.allow_private_network_sources,
            "VIDEOQA_FETCH_TIMEOUT": self.fetch_timeout_seconds,
            "VIDEOQA_HTTP_MAX_HEADER_BYTES": self.http_max_header_bytes,
            "VIDEOQA_HTTP_MAX_HEADERS": self.http_max_headers,
            "VIDEOQA_HTTP_HEADER_TIMEOUT": self.http_header_timeout,
            "VIDEOQA_HTTP_BODY_TIMEOUT": self.http_body_timeout,
            "VIDEOQA_HTTP_MAX_BODY_BYTES": self.http_max_body_bytes,
        }
        shown.update(self.ai.describe())
        return {name: str(value) for name, value in shown.items()}

    def configure_logging(self) -> None:
        logging.getLogger("videoqa_pipeline").setLevel(self.log_level)
