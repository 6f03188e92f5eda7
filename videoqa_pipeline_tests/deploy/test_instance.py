"""deploy/dagster.yaml proven as a real instance, not just parsed.

The production instance file is loaded by a real ``dagster-daemon`` and a real gRPC code server
(``dagster code-server start``, as the compose stack and the Helm chart run it) with its
environment variables pointing at a throwaway PostgreSQL server: Dagster's runs, event logs and
concurrency slots in one database, the pipeline's job ledger in another. Only the run launcher
is swapped for the default one (DockerRunLauncher needs a Docker engine). A job inserted into
the ledger then goes the whole production way: job sensor → QueuedRunCoordinator → daemon
dequeue within the run and pool limits → run worker → every asset materialized.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml

from videoqa_pipeline import media
from videoqa_pipeline.storage.database import Database, DatabaseSettings
from videoqa_pipeline_tests.deploy.conftest import DEPLOY
from videoqa_pipeline_tests.jobs.conftest import QUIET
from videoqa_pipeline_tests.jobs.daemon import wait_until_final
from videoqa_pipeline_tests.pipeline.dagster_dev_server import (
    LOOPBACK,
    REPO_ROOT,
    DagsterDev,
    dagster_dev_environment,
    free_port,
)
from videoqa_pipeline_tests.storage.conftest import (
    create_scratch_database,
    system_postgres_or_skip,
)

ASSETS = (
    "source_video",
    "normalized_video",
    "transcript",
    "scenes",
    "keyframes",
    "frame_analyses",
    "embeddings",
)
POOLS = ("videoqa_ai", "videoqa_transcode")
RUN_TIMEOUT_SECONDS = 240.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres_admin_url() -> Iterator[str]:
    """A throwaway system PostgreSQL server on 127.0.0.1 (Debian's binaries)."""
    yield from system_postgres_or_skip("the production instance cannot be proven here")


def instance_env(dagster_url: str) -> dict[str, str]:
    """The DAGSTER_PG_* variables deploy/dagster.yaml reads, for the database of ``dagster_url``."""
    info = psycopg.conninfo.conninfo_to_dict(dagster_url)
    return {
        "DAGSTER_PG_USERNAME": str(info["user"]),
        "DAGSTER_PG_PASSWORD": str(info.get("password") or ""),
        "DAGSTER_PG_HOST": str(info["host"]),
        "DAGSTER_PG_DB": str(info["dbname"]),
        "DAGSTER_PG_PORT": str(info["port"]),
    }


def database_url(conninfo: str) -> str:
    """The ``postgresql://`` URL the settings require (DATABASE_URL) for a libpq conninfo string."""
    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    password = f":{info['password']}" if info.get("password") else ""
    return f"postgresql://{info['user']}{password}@{info['host']}:{info['port']}/{info['dbname']}"


def write_instance(dagster_home: Path) -> dict[str, object]:
    """deploy/dagster.yaml as this DAGSTER_HOME's instance, with the default run launcher."""
    config: dict[str, object] = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert config.pop("run_launcher")["class"] == "DockerRunLauncher"  # type: ignore[index]
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return config


def write_workspace(path: Path, port: int) -> None:
    """deploy/workspace.yaml with the code server's address on this machine."""
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    server = workspace["load_from"][0]["grpc_server"]
    server.update({"host": LOOPBACK, "port": port})
    path.write_text(yaml.safe_dump(workspace))


def start(
    command: list[str], env: dict[str, str], log_path: Path, dagster_home: Path, videoqa_home: Path
) -> DagsterDev:
    """Start a Dagster process in its own session, so DagsterDev.stop ends its whole tree."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return DagsterDev(process, 0, dagster_home, videoqa_home, log_path)


def test_production_instance_runs_a_ledger_job_through_the_queue(
    postgres_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(tempfile.mkdtemp(prefix="videoqa-deploy-"))
    root.chmod(0o755)
    dagster_home, videoqa_home = root / "dagster_home", root / "videoqa_home"
    dagster_home.mkdir()
    videoqa_home.mkdir()
    processes: list[DagsterDev] = []
    try:
        dagster_url = create_scratch_database(postgres_admin_url)
        videoqa_url = database_url(create_scratch_database(postgres_admin_url))
        config = write_instance(dagster_home)
        video = media.make_sample_video(root / "deploy-clip.mp4", scene_seconds=(1.0, 1.0), audio=False).path
        ledger = Database(
            DatabaseSettings(url=videoqa_url, home=videoqa_home, pool_size=2, timeout_seconds=10)
        )
        ledger.ensure_schema()
        ledger.close()

        env = dagster_dev_environment(
            dagster_home,
            videoqa_home,
            {**QUIET, **instance_env(dagster_url), "DATABASE_URL": videoqa_url, "WORKER_POLL_MS": "1000"},
        )
        port = free_port()
        write_workspace(root / "workspace.yaml", port)
        code_server = [
            sys.executable, "-m", "dagster", "code-server", "start", "-h", LOOPBACK, "-p", str(port),
            "-m", "videoqa_pipeline.definitions", "--location-name", "videoqa_pipeline",
        ]  # fmt: skip
        processes.append(start(code_server, env, root / "code-server.log", dagster_home, videoqa_home))
        daemon = [sys.executable, "-m", "dagster._daemon", "run", "-w", str(root / "workspace.yaml")]
        processes.append(start(daemon, env, root / "daemon.log", dagster_home, videoqa_home))

        with psycopg.connect(videoqa_url, autocommit=True) as conn:
            row = conn.execute(
                "INSERT INTO videoqa_jobs (source_uri) VALUES (%s) RETURNING id, video_id", (str(video),)
            ).fetchone()
            assert row is not None
            job_id = int(row[0])
            final = wait_until_final(conn, [job_id], RUN_TIMEOUT_SECONDS, processes[1])
            assert final[job_id][0] == "succeeded", (final, processes[0].log_tail(), processes[1].log_tail())
            run_id, video_id = conn.execute(
                "SELECT run_id, video_id FROM videoqa_jobs WHERE id = %s", (job_id,)
            ).fetchone() or (None, None)

        for name, value in instance_env(dagster_url).items():
            monkeypatch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            # The instance really is the production one: Postgres storage, queue, limits, retries.
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            runs_config = config["concurrency"]["runs"]  # type: ignore[index]
            queue = instance.get_concurrency_config().run_queue_config
            assert queue is not None and queue.max_concurrent_runs == runs_config["max_concurrent_runs"]
            assert instance.run_retries_enabled
            run = instance.get_run_by_id(str(run_id))
            assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
            # It went through the queue: enqueued by the coordinator, then launched by the daemon.
            event_types = {
                record.event_log_entry.dagster_event.event_type
                for record in instance.get_records_for_run(run.run_id).records
                if record.event_log_entry.dagster_event is not None
            }
            assert {
                dg.DagsterEventType.RUN_ENQUEUED,
                dg.DagsterEventType.RUN_STARTING,
                dg.DagsterEventType.RUN_SUCCESS,
            } <= event_types
            for asset in ASSETS:
                event = instance.get_latest_materialization_event(dg.AssetKey(asset))
                assert event is not None, f"{asset} was not materialized"
                assert event.run_id == run.run_id
                assert event.dagster_event is not None and event.dagster_event.partition == video_id
            # The steps claimed slots of the assets' pools, created with the file's default limit.
            pool_limit = config["concurrency"]["pools"]["default_limit"]  # type: ignore[index]
            for pool in POOLS:
                info = instance.event_log_storage.get_concurrency_info(pool)
                assert info.slot_count == pool_limit, (pool, info)
                assert info.active_slot_count == 0, f"{pool} slots still held after the run"
    finally:
        lingering = [line for process in reversed(processes) for line in process.stop()]
        shutil.rmtree(root, ignore_errors=True)
    assert not lingering, f"processes outlived the test: {lingering}"
