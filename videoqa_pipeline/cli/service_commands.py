"""`videoqa serve`: the HTTP service (webhook intake, operations endpoints, completion callbacks)."""

from __future__ import annotations

import asyncio
import logging

import click

from videoqa_pipeline.settings import Settings

logger = logging.getLogger(__name__)

_SECRET_PROBLEM = "JOB_SOURCE_TYPE includes webhook but WEBHOOK_SECRET is not set"


def _plan(settings: Settings, port: int | None) -> list[tuple[int, tuple[str, ...]]]:
    """Which route groups listen on which port.

    Webhook intake on WEBHOOK_PORT when JOB_SOURCE_TYPE includes webhook; operations on
    WORKER_HTTP_PORT when WORKER_DEV_HTTP is true; one server when the ports are equal (or
    ``--port`` is given), two in this process when they differ.
    """
    groups: dict[int, list[str]] = {}
    if "webhook" in settings.job_sources:
        groups.setdefault(port or settings.webhook_port, []).append("webhook")
    if settings.worker_dev_http:
        groups.setdefault(port or settings.worker_http_port, []).append("operations")
    return [(number, tuple(names)) for number, names in groups.items()]


async def _serve_all(servers: list[object]) -> None:
    import uvicorn

    typed = [server for server in servers if isinstance(server, uvicorn.Server)]
    tasks = [asyncio.create_task(server.serve()) for server in typed]
    # When one server stops (signal, bind error), stop the others too.
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for server in typed:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)


@click.command("serve")
@click.option("--host", default="0.0.0.0", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve every enabled route group on this one port (default: WEBHOOK_PORT / WORKER_HTTP_PORT).",
)
@click.option(
    "--insecure-dev",
    is_flag=True,
    help="Accept UNSIGNED webhooks when WEBHOOK_SECRET is unset. Local development only.",
)
@click.option(
    "--callbacks/--no-callbacks",
    default=True,
    show_default=True,
    help="Deliver completion callbacks from this process.",
)
def serve(host: str, port: int | None, insecure_dev: bool, callbacks: bool) -> None:
    """Run the HTTP service next to Dagster.

    POST /webhook/jobs (when JOB_SOURCE_TYPE includes webhook) and /healthz, /readyz, /jobs/peek,
    /jobs/{id}, /stats, /metrics, the search page /, /search, /ask and /media (when
    WORKER_DEV_HTTP=true), plus completion callbacks.
    """
    import uvicorn

    from videoqa_pipeline.service.app import ServiceConfigError, ServiceOptions, create_app
    from videoqa_pipeline.service.server import uvicorn_config

    settings = Settings.from_env()
    problems = [
        problem
        for problem in settings.problems()
        if not (insecure_dev and problem.startswith(_SECRET_PROBLEM))
    ]
    if problems:
        raise click.ClickException(
            "cannot start: "
            + "; ".join(problems)
            + "\nRun `videoqa check-config` for the effective settings."
        )
    settings.configure_logging()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    plan = _plan(settings, port)
    if not plan:
        raise click.ClickException(
            "nothing to serve: add webhook to JOB_SOURCE_TYPE (e.g. JOB_SOURCE_TYPE=postgres,webhook) "
            "and/or set WORKER_DEV_HTTP=true"
        )
    servers: list[object] = []
    for index, (number, groups) in enumerate(plan):
        try:
            app = create_app(
                settings,
                ServiceOptions(
                    routes=groups,
                    insecure_dev=insecure_dev,
                    # One deliverer per process is enough; the ledger's row locks make more harmless.
                    deliver_callbacks=callbacks and index == 0,
                ),
            )
        except ServiceConfigError as error:
            raise click.ClickException(str(error)) from error
        click.echo(f"videoqa serve: {', '.join(groups)} on http://{host}:{number}", err=True)
        # HTTP/1.1 with bounded request heads and header timeouts (VIDEOQA_HTTP_*): see service/server.py.
        config = uvicorn_config(app, settings, host=host, port=number, log_level=settings.log_level.lower())
        servers.append(uvicorn.Server(config))
    asyncio.run(_serve_all(servers))


def register(group: click.Group) -> None:
    """Add `serve` to the `videoqa` command group."""
    group.add_command(serve)
