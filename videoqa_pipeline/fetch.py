"""Bring a video source (local path, file://, http(s)://, s3://) to a local file, streaming.

Pure: no Dagster. Remote sources are copied to a temporary file in bounded chunks so a
multi-GB original never sits in memory; local files are used in place.

Sources come from people and systems outside the deployment (webhooks, SQS messages), so
reading them follows a :class:`SourcePolicy`: only the schemes listed in
:data:`SUPPORTED_SCHEMES`, and no HTTP fetch from loopback, private, link-local or otherwise
internal addresses unless ``VIDEOQA_ALLOW_PRIVATE_NETWORK_SOURCES`` allows it. The address is
checked where it matters, on the connection actually made, for the first request and for every
redirect, so neither a DNS name resolving to ``127.0.0.1`` nor a redirect to the cloud metadata
endpoint reaches an internal service.

Completion callbacks are the same risk the other way round (a submitter names the URL, the
deployment sends to it), so :func:`checked_post` sends them under the same policy and the same
connection check, and :meth:`SourcePolicy.callback_problem` refuses them at intake.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import ipaddress
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024

#: URI schemes the pipeline reads; plain paths too.
SUPPORTED_SCHEMES = ("file", "http", "https", "s3")

#: Job sources whose submitters are outside the deployment: their local paths must lie under
#: ``VIDEOQA_ALLOWED_LOCAL_ROOTS``. SQL producers, the CLI, the inbox and in-process callers are
#: trusted (they already act with the deployment's own rights).
REMOTE_SOURCE_KINDS = ("webhook", "sqs")


#: What a checked connection is for, as its refusal names it.
SOURCE = "source"
CALLBACK = "callback_url"


class SourceUnavailableError(Exception):
    """The source could not be read. ``permanent`` is False for errors worth retrying (timeouts, 5xx)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclasses.dataclass(frozen=True)
class SourcePolicy:
    """What a source may point at.

    Attributes:
        allowed_local_roots: Directories a remote-submitted job's local path must lie in (after
            resolving symlinks and ``..``); empty means remote jobs cannot name local files.
        allow_private_network: Allow HTTP fetches from loopback, private, link-local, multicast
            and reserved addresses (``VIDEOQA_ALLOW_PRIVATE_NETWORK_SOURCES``).
        timeout_seconds: Socket timeout of HTTP fetches (``VIDEOQA_FETCH_TIMEOUT``).
    """

    allowed_local_roots: tuple[Path, ...] = ()
    allow_private_network: bool = False
    timeout_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SourcePolicy:
        """The policy the settings in ``env`` (default: ``os.environ``) describe."""
        from videoqa_pipeline.settings import Settings  # settings import nothing of ours at module level

        return Settings.from_env(os.environ if env is None else env).source_policy

    def problem(self, source_uri: str, *, remote: bool) -> str | None:
        """Why this policy refuses ``source_uri`` (without touching the file or the network), or None.

        Args:
            source_uri: A path or URI.
            remote: The job was submitted from outside the deployment (webhook, SQS).
        """
        local = local_path_of(source_uri)
        if local is not None:
            if remote and not self.local_path_allowed(local):
                roots = ", ".join(str(root) for root in self.allowed_local_roots) or "(none)"
                return (
                    f"source {source_uri!r} is a local path outside the directories remote jobs may read "
                    f"({roots}): submit an http(s):// or s3:// URI, or add the directory to "
                    "VIDEOQA_ALLOWED_LOCAL_ROOTS"
                )
            return None
        parts = urlsplit(source_uri)
        scheme = parts.scheme.lower()
        if scheme not in SUPPORTED_SCHEMES:
            return f"source {source_uri!r} has unsupported scheme {scheme!r}: use a path, file://, http(s):// or s3://"
        if scheme in ("http", "https"):
            if not parts.hostname:
                return f"source {source_uri!r} has no host name"
            if not self.allow_private_network and _is_internal_name(parts.hostname):
                return _internal_address_message(source_uri, parts.hostname)
        return None

    def local_path_allowed(self, path: Path) -> bool:
        """Whether ``path`` (symlinks and ``..`` resolved) lies inside one of the allowed roots."""
        if "\x00" in str(path):
            return False
        resolved = Path(os.path.realpath(path))
        return any(resolved.is_relative_to(os.path.realpath(root)) for root in self.allowed_local_roots)

    def callback_problem(self, callback_url: str | None) -> str | None:
        """Why this policy refuses sending a completion callback to ``callback_url``, or None.

        The rule of http(s) sources, by name only (no DNS lookup): the delivery checks the address
        it connects to as well.
        """
        if callback_url is None:
            return None
        parts = urlsplit(callback_url)
        if parts.scheme.lower() not in ("http", "https"):
            return f"callback_url must be an http(s):// URL, got {callback_url[:200]!r}"
        try:
            host = parts.hostname
        except ValueError:  # e.g. an unclosed IPv6 bracket
            host = None
        if not host:
            return f"callback_url {callback_url[:200]!r} has no host name"
        if not self.allow_private_network and _is_internal_name(host):
            return _internal_address_message(callback_url, host, kind=CALLBACK)
        return None

    def check_address(self, url: str, address: str, *, kind: str = SOURCE) -> None:
        """Raise unless connecting to ``address`` (an IP) for ``url`` is allowed.

        Args:
            url: What the connection is for (named in the message).
            address: The peer address of the connection.
            kind: :data:`SOURCE` (a fetch) or :data:`CALLBACK` (a completion callback).

        Raises:
            SourceUnavailableError: permanent; the address is internal and the policy forbids it.
        """
        if not self.allow_private_network and is_internal_address(address):
            raise SourceUnavailableError(_internal_address_message(url, address, kind=kind), permanent=True)


def is_internal_address(address: str) -> bool:
    """Loopback, private, link-local, multicast, reserved or unspecified (IPv4-mapped IPv6 included)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True  # not an IP literal we understand: refuse rather than guess
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def _is_internal_name(host: str) -> bool:
    """Internal by name alone (an IP literal or ``localhost``), no DNS lookup: for intake checks."""
    lowered = host.lower().rstrip(".")
    if lowered == "localhost" or lowered.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(lowered.split("%", 1)[0])
    except ValueError:
        return False
    return is_internal_address(lowered)


def _internal_address_message(url: str, address: str, *, kind: str = SOURCE) -> str:
    what = "fetching from" if kind == SOURCE else "sending callbacks to"
    return (
        f"{kind} {url[:300]!r} points at the internal address {address}: {what} loopback, private or "
        "link-local networks is disabled (set VIDEOQA_ALLOW_PRIVATE_NETWORK_SOURCES=true to allow it)"
    )


def local_path_of(source_uri: str) -> Path | None:
    """The local file a URI names (plain path or file://), or None for remote URIs."""
    parts = urlsplit(source_uri)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if len(parts.scheme) <= 1:  # plain paths, including Windows drive letters
        return Path(source_uri).expanduser()
    return None


@contextlib.contextmanager
def fetched_source(
    source_uri: str,
    *,
    timeout_seconds: float | None = None,
    aws_endpoint_url: str | None = None,
    policy: SourcePolicy | None = None,
) -> Iterator[Path]:
    """Yield a local path holding the source's bytes; temporary copies are removed afterwards.

    A local file is used in place, and checked again when the block ends: if it changed while
    the caller read it (size, modification time or inode), whatever the caller made of it may mix
    two versions, so the block fails with a transient error and a retry reads the file anew.

    Args:
        source_uri: A path, ``file://``, ``http(s)://`` or ``s3://`` URI.
        timeout_seconds: Socket timeout of HTTP reads (default: the policy's).
        aws_endpoint_url: S3 endpoint override (MinIO, LocalStack, moto).
        policy: What the source may point at (default: from the environment's settings).

    Raises:
        SourceUnavailableError: the URI scheme is unsupported, the address is internal and not
            allowed, the remote read failed, or a local file changed while it was read.
    """
    policy = policy if policy is not None else SourcePolicy.from_env()
    local = local_path_of(source_uri)
    if local is not None:
        before = _file_state(local)
        yield local  # existence and format are the media layer's checks, with its precise messages
        if before is not None and _file_state(local) != before:
            raise SourceUnavailableError(
                f"source {source_uri} changed while it was being read (size or modification time differ): "
                "write the file elsewhere and move it into place when complete; it will be read again",
                permanent=False,
            )
        return
    scheme = urlsplit(source_uri).scheme
    suffix = Path(unquote(urlsplit(source_uri).path)).suffix[:10]
    with tempfile.TemporaryDirectory(prefix="videoqa-fetch-") as tmp:
        target = Path(tmp) / f"source{suffix}"
        if scheme in ("http", "https"):
            timeout = policy.timeout_seconds if timeout_seconds is None else timeout_seconds
            _download_http(source_uri, target, timeout, policy)
        elif scheme == "s3":
            _download_s3(source_uri, target, aws_endpoint_url)
        else:
            raise SourceUnavailableError(
                f"cannot read {source_uri!r}: unsupported scheme {scheme!r} (use a path, file://, http(s):// or s3://)",
                permanent=True,
            )
        yield target


def _file_state(path: Path) -> tuple[int, int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev)


def _checked_connection(
    base: type[http.client.HTTPConnection], policy: SourcePolicy, url: str, kind: str
) -> Any:
    """A connection class that refuses to talk to an address the policy forbids.

    The check runs on the socket's peer address after connecting and before a byte is sent, so
    what is checked is what is used: a name that resolves differently on a second lookup (DNS
    rebinding) gains nothing.
    """

    class CheckedConnection(base):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            super().connect()
            peer = self.sock.getpeername()[0]
            try:
                if kind == SOURCE:
                    policy.check_address(f"{url} (host {self.host})", str(peer))
                else:
                    policy.check_address(f"{url} (host {self.host})", str(peer), kind=kind)
            except SourceUnavailableError:
                self.sock.close()
                raise

    return CheckedConnection


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Follow no redirect: the 3xx answer is the result (an ``HTTPError``)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s) URLs the policy allows by name (the connection re-checks the address)."""

    def __init__(self, policy: SourcePolicy) -> None:
        self.policy = policy

    def _check(self, req: urllib.request.Request, headers: Any) -> None:
        location = headers.get("location") or headers.get("uri")
        if not location:
            return
        target = urllib.parse.urljoin(req.full_url, location)
        problem = self.policy.problem(target, remote=True)
        if problem is None and urlsplit(target).scheme.lower() not in ("http", "https"):
            problem = "redirects may only lead to http(s) URLs"
        if problem is not None:
            raise SourceUnavailableError(
                f"downloading {req.full_url} was redirected to {target!r}, which is refused: {problem}",
                permanent=True,
            )

    def http_error_302(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any) -> Any:
        self._check(req, headers)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _opener(
    policy: SourcePolicy, url: str, *, kind: str = SOURCE, follow_redirects: bool = True
) -> urllib.request.OpenerDirector:
    redirects: urllib.request.HTTPRedirectHandler = (
        _CheckedRedirects(policy) if follow_redirects else _NoRedirects()
    )
    if policy.allow_private_network:
        return urllib.request.build_opener(redirects)
    proxied = urllib.request.getproxies()
    host = urlsplit(url).hostname or ""
    if proxied and not urllib.request.proxy_bypass(host):
        # Through a proxy the peer is the proxy, not the source: refuse internal names up front and
        # let the proxy's own rules apply beyond that.
        return urllib.request.build_opener(redirects)

    class CheckedHTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(_checked_connection(http.client.HTTPConnection, policy, url, kind), req)

    class CheckedHTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(
                _checked_connection(http.client.HTTPSConnection, policy, url, kind),
                req,
                context=self._context,  # type: ignore[attr-defined]
            )

    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), CheckedHTTPHandler(), CheckedHTTPSHandler(), redirects
    )


def checked_post(
    url: str, body: bytes, headers: Mapping[str, str], *, policy: SourcePolicy, timeout_seconds: float
) -> int:
    """POST ``body`` to a callback ``url`` under ``policy``; return the receiver's HTTP status.

    The URL is checked by name first (:meth:`SourcePolicy.callback_problem`), then the address of
    the connection actually made, as for sources. Redirects are not followed: a 3xx is returned
    as the status. The receiver's answer body is read (at most 64 KiB, so the connection closes
    cleanly) and dropped: it is the receiver's business and never shown to anyone.

    Raises:
        SourceUnavailableError: refused by the policy (``permanent``), or the request failed
            (connection refused, timeout, TLS or protocol error; not permanent).
    """
    problem = policy.callback_problem(url)
    if problem is not None:
        raise SourceUnavailableError(problem, permanent=True)
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    opener = _opener(policy, url, kind=CALLBACK, follow_redirects=False)
    try:
        with opener.open(request, timeout=timeout_seconds) as response:
            response.read(64 * 1024)
            return int(response.status)
    except SourceUnavailableError:
        raise
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)
    except urllib.error.URLError as error:
        if isinstance(error.reason, SourceUnavailableError):
            raise error.reason from None
        reason = error.reason
        raise SourceUnavailableError(f"POST {url} failed: {reason}", permanent=False) from error
    except TimeoutError as error:
        raise SourceUnavailableError(
            f"POST {url} failed: no answer within {timeout_seconds:g} s", permanent=False
        ) from error
    except (OSError, http.client.HTTPException) as error:
        raise SourceUnavailableError(
            f"POST {url} failed: {type(error).__name__}: {error}", permanent=False
        ) from error


def _download_http(url: str, target: Path, timeout_seconds: float, policy: SourcePolicy) -> None:
    problem = policy.problem(url, remote=True)
    if problem is not None:
        raise SourceUnavailableError(problem, permanent=True)
    request = urllib.request.Request(url, headers={"User-Agent": "videoqa-pipeline"})
    try:
        with (
            _opener(policy, url).open(request, timeout=timeout_seconds) as response,
            target.open("wb") as out,
        ):
            shutil.copyfileobj(response, out, CHUNK_BYTES)
    except SourceUnavailableError:
        raise
    except urllib.error.HTTPError as error:
        permanent = 400 <= error.code < 500 and error.code not in (408, 429)
        raise SourceUnavailableError(
            f"downloading {url} failed: HTTP {error.code} {error.reason}", permanent=permanent
        ) from error
    except urllib.error.URLError as error:
        if isinstance(error.reason, SourceUnavailableError):
            raise error.reason from error
        raise SourceUnavailableError(f"downloading {url} failed: {error.reason}", permanent=False) from error
    except TimeoutError as error:
        raise SourceUnavailableError(
            f"downloading {url} failed: no data for {timeout_seconds:g} s, timed out (VIDEOQA_FETCH_TIMEOUT); "
            "it is tried again while attempts remain",
            permanent=False,
        ) from error
    except (OSError, http.client.HTTPException) as error:
        raise SourceUnavailableError(f"downloading {url} failed: {error}", permanent=False) from error
    logger.info("downloaded %s (%d bytes)", url, target.stat().st_size)


def _download_s3(uri: str, target: Path, endpoint_url: str | None) -> None:
    # Same client configuration as the S3 blob store (region, endpoint, retries) and the same
    # bounded-memory multipart transfer, so a multi-GB original streams to disk.
    from botocore.exceptions import BotoCoreError, ClientError

    from videoqa_pipeline import aws
    from videoqa_pipeline.storage.s3_blobs import transfer_config

    parts = urlsplit(uri)
    bucket, key = parts.netloc, unquote(parts.path.lstrip("/"))
    if not bucket or not key:
        raise SourceUnavailableError(f"cannot read {uri!r}: expected s3://<bucket>/<key>", permanent=True)
    config = aws.AwsConfig.from_env()
    if endpoint_url:
        config = dataclasses.replace(config, endpoint_url=endpoint_url)
    client = aws.client("s3", config)
    try:
        client.download_file(bucket, key, str(target), Config=transfer_config())
    except (ClientError, BotoCoreError) as error:
        raise SourceUnavailableError(
            f"reading {uri} failed: {aws.describe_error(error)}", permanent=aws.is_permanent(error)
        ) from error
    logger.info("downloaded %s (%d bytes)", uri, target.stat().st_size)


def file_sha256(path: Path) -> str:
    """Content hash of a file, read in chunks: identifies re-submitted originals."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_source_uri(source: str) -> str:
    """Local paths become absolute, so a run started later, elsewhere, still finds them."""
    local = local_path_of(source)
    if local is not None and "://" not in source:
        return str(local.resolve())
    return source
