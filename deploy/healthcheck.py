"""Container health check shared by every role of the image.

One image serves the user-code server, the run workers, the webserver, the daemon and the HTTP
service, so the image's HEALTHCHECK cannot hard-code one probe. ``VIDEOQA_HEALTHCHECK`` names
what to probe in this container:

* ``http://...``: the URL must answer 2xx within 5 s (``videoqa serve``: ``/healthz``;
  the webserver: ``/server_info``);
* ``grpc:PORT``: the Dagster code server on 127.0.0.1:PORT answers its health check;
* ``daemon``: the Dagster daemon has sent heartbeats recently;
* unset: healthy while the process runs (a run worker lives as long as its run).

Exit status 0 is healthy, 1 unhealthy (with the reason on stderr), as Docker expects.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 5


def check(target: str) -> str | None:
    """Probe ``target``; return None when healthy, else why not."""
    if target.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(target, timeout=TIMEOUT_SECONDS) as response:
                status = int(response.status)
        except (urllib.error.URLError, OSError) as error:
            return f"{target} did not answer: {error}"
        return None if 200 <= status < 300 else f"{target} answered {status}"
    if target.startswith("grpc:"):
        port = target.removeprefix("grpc:")
        command = ["dagster", "api", "grpc-health-check", "-p", port]
    elif target == "daemon":
        command = ["dagster-daemon", "liveness-check"]
    else:
        return f"VIDEOQA_HEALTHCHECK={target!r} is not http(s)://..., grpc:PORT or daemon"
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{' '.join(command)} failed: {error}"
    if result.returncode != 0:
        return f"{' '.join(command)} exited {result.returncode}: {(result.stderr or result.stdout)[-300:]}"
    return None


def main() -> int:
    target = os.environ.get("VIDEOQA_HEALTHCHECK", "").strip()
    if not target:
        return 0
    problem = check(target)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
