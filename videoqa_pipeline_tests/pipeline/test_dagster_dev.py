"""The Dagster spine the way a user meets it: ``dagster dev``, a backfill from the UI, the UI itself.

One ``dagster dev`` (webserver, daemon, code server; the repo's ``dagster.yaml`` with its
QueuedRunCoordinator) is started for the whole module, with a private ``DAGSTER_HOME`` and
``VIDEOQA_HOME`` and none of the optional settings, so it runs on the embedded PostgreSQL and
the offline models exactly as after ``pip install``. Tests drive it through its GraphQL API
(what the UI sends) and a headless Chromium, and the last test stops it and checks that no
process of its group, and no embedded database server, is left behind.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from videoqa_pipeline import media
from videoqa_pipeline.defs.resources import DatabaseResource
from videoqa_pipeline.storage.database import Database, DatabaseSettings, get_database
from videoqa_pipeline.storage.embedded import embedded_server_status, release_embedded_database
from videoqa_pipeline.storage.ledger import register_source
from videoqa_pipeline.storage.schema import TABLES
from videoqa_pipeline.storage.tables import read_partition
from videoqa_pipeline_tests.pipeline.dagster_dev_server import (
    REPO_ROOT,
    TERMINAL_BACKFILL_STATUSES,
    TERMINAL_RUN_STATUSES,
    DagsterDev,
    start_dagster_dev,
)

pytestmark = pytest.mark.slow

ASSETS = tuple(TABLES)  # one table per asset
GROUPS = {
    "source_video": "ingest",
    "normalized_video": "ingest",
    "transcript": "analysis",
    "scenes": "analysis",
    "keyframes": "analysis",
    "frame_analyses": "analysis",
    "embeddings": "index",
}
VIDEO_IDS = ("clip-a", "clip-b", "clip-c")
SCENES_PER_CLIP = 4
MAX_FRAMES = 2
BACKFILL_TIMEOUT_SECONDS = 360.0
BACKFILL_TITLE = "three generated clips"
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

ASSET_NODES_QUERY = """
{
  assetNodes {
    assetKey { path }
    groupName
    isPartitioned
    partitionDefinition { type name }
    jobNames
  }
}
"""
REPOSITORIES_QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }
"""
ADD_PARTITION_MUTATION = """
mutation AddPartition($repositorySelector: RepositorySelector!, $partitionKey: String!) {
  addDynamicPartition(repositorySelector: $repositorySelector, partitionsDefName: "videos", partitionKey: $partitionKey) {
    __typename
    ... on AddDynamicPartitionSuccess { partitionKey }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
    ... on DuplicateDynamicPartitionError { partitionName }
  }
}
"""
LAUNCH_BACKFILL_MUTATION = """
mutation LaunchBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
BACKFILL_STATUS_QUERY = """
query BackfillStatus($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill {
      status
      numPartitions
      error { message }
      runs(limit: 100) { runId status tags { key value } }
    }
    ... on PythonError { message }
  }
}
"""
RUN_FAILURES_QUERY = """
query RunFailures($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run {
      eventConnection(afterCursor: null) {
        events {
          __typename
          ... on ExecutionStepFailureEvent { stepKey error { message } failureMetadata { description } }
          ... on RunFailureEvent { message }
        }
      }
    }
  }
}
"""
LATEST_KEYFRAMES_QUERY = """
query LatestKeyframes($partitions: [String!]) {
  assetOrError(assetKey: {path: ["keyframes"]}) {
    ... on Asset {
      assetMaterializations(partitions: $partitions) {
        partition
        runId
        metadataEntries { label ... on IntMetadataEntry { intValue } }
      }
    }
  }
}
"""


@dataclass(frozen=True)
class Backfill:
    """A backfill launched through GraphQL and watched until its runs finished."""

    backfill_id: str
    status: str
    runs: list[dict[str, Any]]
    sources: dict[str, Path]
    seconds: float


def _database(server: DagsterDev) -> Database:
    """The same embedded PostgreSQL the server's runs write to (joined, or started, by this process)."""
    return DatabaseResource(home=str(server.videoqa_home)).get()


def _release_database(server: DagsterDev) -> None:
    """Close this process's pool and deregister, so the embedded server stops with its last user."""
    # get_database is lazy and per process: this closes the pool the helpers above opened, if any,
    # without starting a server just to stop it.
    get_database(DatabaseSettings(url=None, home=server.videoqa_home)).close()
    release_embedded_database(server.videoqa_home)


@pytest.fixture(scope="module")
def dagster_dev() -> Iterator[DagsterDev]:
    """One ``dagster dev`` for the module, in its own process group, on a free loopback port."""
    if shutil.which("dagster") is None:
        pytest.skip("the dagster CLI is not installed (pip install dagster dagster-webserver)")
    # Not under pytest's basetemp: every pytest session that starts resets /tmp/pytest-of-<user> to
    # mode 0700, and the embedded PostgreSQL (run as the `pgserver` user when we are root) could then
    # no longer reach its data directory.
    root = Path(tempfile.mkdtemp(prefix="videoqa-dagster-dev-"))
    server = start_dagster_dev(root / "dagster_home", root / "videoqa_home", root / "dagster-dev.log")
    try:
        yield server
    finally:
        server.stop()
        _release_database(server)
        with contextlib.suppress(OSError):
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copy(server.log_path, ARTIFACTS / "dagster-dev.log")
        shutil.rmtree(root, ignore_errors=True)


def _repository_selector(server: DagsterDev) -> dict[str, str]:
    nodes = server.graphql(REPOSITORIES_QUERY)["repositoriesOrError"]["nodes"]
    assert len(nodes) == 1, f"expected one repository in the workspace, got {nodes}"
    return {"repositoryLocationName": nodes[0]["location"]["name"], "repositoryName": nodes[0]["name"]}


def _run_failures(server: DagsterDev, run_id: str) -> list[str]:
    """Readable failure messages of one run, to explain a failed backfill."""
    run = server.graphql(RUN_FAILURES_QUERY, {"runId": run_id})["runOrError"]
    messages = []
    for event in (run or {}).get("eventConnection", {}).get("events", []):
        if event["__typename"] == "ExecutionStepFailureEvent":
            description = (event.get("failureMetadata") or {}).get("description")
            messages.append(f"{event['stepKey']}: {description or (event.get('error') or {}).get('message')}")
        elif event["__typename"] == "RunFailureEvent":
            messages.append(f"run: {event.get('message')}")
    return messages


@pytest.fixture(scope="module")
def backfill(dagster_dev: DagsterDev) -> Backfill:
    """Three short videos registered, added as partitions and backfilled as the UI does it.

    The daemon of ``dagster dev`` dequeues the runs (QueuedRunCoordinator, two at a time) and
    launches each in a fresh run worker, exactly as for a backfill launched from the UI.
    """
    folder = dagster_dev.videoqa_home.parent / "media"
    database = _database(dagster_dev)
    sources: dict[str, Path] = {}
    for video_id in VIDEO_IDS:
        video = media.make_sample_video(
            folder / f"{video_id}.mp4", scene_seconds=(2.0,) * SCENES_PER_CLIP, audio=True, preset="ultrafast"
        )
        register_source(database, video_id, str(video.path))
        sources[video_id] = video.path

    selector = _repository_selector(dagster_dev)
    for video_id in VIDEO_IDS:
        added = dagster_dev.graphql(
            ADD_PARTITION_MUTATION, {"repositorySelector": selector, "partitionKey": video_id}
        )
        assert added["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess", added

    launched = dagster_dev.graphql(
        LAUNCH_BACKFILL_MUTATION,
        {
            "backfillParams": {
                "assetSelection": [{"path": [name]} for name in ASSETS],
                "partitionNames": list(VIDEO_IDS),
                "runConfigData": {
                    "resources": {"pipeline_config": {"config": {"max_frames_per_video": MAX_FRAMES}}}
                },
                "title": BACKFILL_TITLE,
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    started = time.monotonic()
    state: dict[str, Any] = {}
    while time.monotonic() - started < BACKFILL_TIMEOUT_SECONDS:
        state = dagster_dev.graphql(BACKFILL_STATUS_QUERY, {"backfillId": backfill_id})[
            "partitionBackfillOrError"
        ]
        assert state["__typename"] == "PartitionBackfill", state
        runs = state["runs"]
        if (
            state["status"] in TERMINAL_BACKFILL_STATUSES
            and len(runs) >= len(VIDEO_IDS)
            and all(run["status"] in TERMINAL_RUN_STATUSES for run in runs)
        ):
            break
        time.sleep(2.0)
    else:
        pytest.fail(
            f"backfill {backfill_id} not finished after {BACKFILL_TIMEOUT_SECONDS:.0f} s: {state}\n"
            f"dagster dev log:\n{dagster_dev.log_tail()}"
        )
    return Backfill(backfill_id, state["status"], state["runs"], sources, time.monotonic() - started)


def test_dagster_dev_serves_the_seven_partitioned_assets(dagster_dev: DagsterDev) -> None:
    info = dagster_dev.get("/server_info")
    assert b"dagster_webserver_version" in info

    nodes = dagster_dev.graphql(ASSET_NODES_QUERY)["assetNodes"]
    by_name = {"/".join(node["assetKey"]["path"]): node for node in nodes}
    assert sorted(by_name) == sorted(ASSETS)
    for name, node in by_name.items():
        assert node["groupName"] == GROUPS[name], (name, node["groupName"])
        assert node["isPartitioned"], name
        assert node["partitionDefinition"] == {"type": "DYNAMIC", "name": "videos"}, (name, node)
        assert "video_pipeline" in node["jobNames"], (name, node["jobNames"])
    assert _repository_selector(dagster_dev)["repositoryLocationName"] == "videoqa_pipeline"


@pytest.mark.timeout(600)
def test_backfill_from_graphql_processes_every_video_with_its_run_config(
    dagster_dev: DagsterDev, backfill: Backfill
) -> None:
    failures = {
        run["runId"]: _run_failures(dagster_dev, run["runId"])
        for run in backfill.runs
        if run["status"] != "SUCCESS"
    }
    assert not failures, (
        f"backfill {backfill.status}; failed runs: {failures}\nlog:\n{dagster_dev.log_tail()}"
    )
    assert backfill.status == "COMPLETED_SUCCESS"
    partitions = sorted(
        tag["value"] for run in backfill.runs for tag in run["tags"] if tag["key"] == "dagster/partition"
    )
    assert partitions == sorted(VIDEO_IDS), "one run per video, as the asset backfill groups them"

    database = _database(dagster_dev)
    for video_id, path in backfill.sources.items():
        source = read_partition(database, TABLES["source_video"], video_id)
        assert list(source["source_uri"]) == [str(path)], "the run found the registered source"
        scenes = read_partition(database, TABLES["scenes"], video_id)
        keyframes = read_partition(database, TABLES["keyframes"], video_id)
        assert len(scenes) >= 3, f"{video_id}: {len(scenes)} scenes, so max_frames_per_video would not matter"
        assert len(keyframes) == MAX_FRAMES, f"{video_id}: the backfill's run config was not applied"
        assert list(keyframes["scene_index"]) == [0, len(scenes) - 1], "first and last scene are kept"
        assert len(read_partition(database, TABLES["frame_analyses"], video_id)) == MAX_FRAMES
        assert len(read_partition(database, TABLES["embeddings"], video_id)) > 0

    materializations = dagster_dev.graphql(LATEST_KEYFRAMES_QUERY, {"partitions": list(VIDEO_IDS)})
    events = materializations["assetOrError"]["assetMaterializations"]
    assert sorted(event["partition"] for event in events) == sorted(VIDEO_IDS)
    for event in events:
        values = {entry["label"]: entry.get("intValue") for entry in event["metadataEntries"]}
        assert values["max_frames_per_video"] == MAX_FRAMES and values["keyframes"] == MAX_FRAMES, values


def _browser_or_skip() -> Any:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium to run the UI test")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is missing (pip install playwright; the system chromium is used)")
    return sync_playwright


def _dismiss_first_visit_dialog(page: Any) -> None:
    """A fresh instance greets its first visitor with a newsletter dialog; skip it as a user would."""
    skip = page.get_by_role("button", name="Skip")
    with contextlib.suppress(Exception):
        skip.wait_for(state="visible", timeout=5000)
        skip.click()
        skip.wait_for(state="hidden", timeout=5000)


def _expand_asset_groups(page: Any) -> None:
    """The global lineage shows groups collapsed; open each (the choice persists across reloads)."""
    for _ in range(len(set(GROUPS.values())) + 2):
        collapsed = page.locator("[class*=collapsedGroupNodeBox]")
        if collapsed.count() == 0:
            return
        collapsed.first.locator("[data-tooltip]").first.click()
        page.wait_for_timeout(500)


@pytest.mark.timeout(600)
def test_ui_shows_the_asset_graph_and_keyframe_thumbnails(
    dagster_dev: DagsterDev, backfill: Backfill
) -> None:
    sync_playwright = _browser_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    video_id = VIDEO_IDS[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(30_000)

            page.goto(f"{dagster_dev.base_url}/runs/b/{backfill.backfill_id}", wait_until="networkidle")
            _dismiss_first_visit_dialog(page)
            page.get_by_text("Succeeded", exact=True).first.wait_for(state="visible")
            for video_id_chip in VIDEO_IDS:
                page.get_by_text(video_id_chip, exact=True).first.wait_for(state="visible")
            completed_assets = page.get_by_text("100% completed").count()
            page.screenshot(path=str(ARTIFACTS / "dagster-backfill.png"))

            page.goto(f"{dagster_dev.base_url}/asset-groups", wait_until="networkidle")
            _expand_asset_groups(page)
            page.reload(wait_until="networkidle")  # lays the expanded graph out to fit the window
            graph = page.locator("foreignObject")
            for name in ASSETS:
                graph.get_by_text(name, exact=True).first.wait_for(state="visible")
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "dagster-asset-graph.png"))
            assert page.locator("[class*=collapsedGroupNodeBox]").count() == 0, "every group is expanded"

            page.goto(
                f"{dagster_dev.base_url}/assets/keyframes?view=partitions&partition={video_id}",
                wait_until="networkidle",
            )
            _dismiss_first_visit_dialog(page)
            page.get_by_text(video_id, exact=True).first.wait_for(state="visible")
            thumbnails_row = page.locator("tr", has_text="thumbnails").first
            thumbnails_row.get_by_text("Show Markdown").click()
            dialog = page.get_by_role("dialog")
            dialog.locator("img").first.wait_for(state="visible")
            page.wait_for_function(
                "() => [...document.querySelectorAll('[role=dialog] img')].every(i => i.complete)"
            )
            images = dialog.locator("img").evaluate_all(
                "images => images.map(i => ({src: i.src.slice(0, 32), width: i.naturalWidth, height: i.naturalHeight}))"
            )
            page.screenshot(path=str(ARTIFACTS / f"dagster-keyframes-{video_id}.png"))
            body = dialog.inner_text()
        finally:
            browser.close()

    assert completed_assets == len(ASSETS), "the backfill page shows every asset 100% completed"
    assert len(images) == MAX_FRAMES, images
    for image in images:
        assert image["src"].startswith("data:image/jpeg;base64,"), image
        assert image["width"] > 0 and image["height"] > 0, f"the thumbnail did not decode: {image}"
    assert re.search(rf"{MAX_FRAMES} of {MAX_FRAMES} keyframes", body), body


ADD_VIDEO_ID = "ui-added"
ADD_VIDEOS_TIMEOUT_SECONDS = 300.0


def _wait_for_job(database: Database, video_id: str, timeout: float) -> tuple[str, str | None]:
    """The final (status, error) of the newest ledger job for ``video_id``."""
    deadline = time.monotonic() + timeout
    state: tuple[str, str | None] = ("missing", None)
    while time.monotonic() < deadline:
        with database.connection() as conn:
            row = conn.execute(
                "SELECT status, error FROM videoqa_jobs WHERE video_id = %s ORDER BY id DESC LIMIT 1",
                (video_id,),
            ).fetchone()
        if row is not None:
            state = (str(row[0]), row[1])
            if state[0] in ("succeeded", "failed", "cancelled"):
                return state
        time.sleep(1.0)
    return state


def _type_launchpad_config(page: Any, config: str) -> None:
    """Replace the Launchpad's run config with ``config``, as a user pasting it would."""
    editor = page.locator(".CodeMirror").first
    editor.wait_for(state="visible")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(config)


@pytest.mark.timeout(900)
def test_ui_adds_a_video_with_add_videos_then_backfills_it_with_other_run_config(
    dagster_dev: DagsterDev, backfill: Backfill
) -> None:
    """The README's UI path, click by click: Launchpad of add_videos, the job sensor's run, the
    keyframes of the new partition, then a backfill of it with another max_frames_per_video."""
    sync_playwright = _browser_or_skip()
    clip = media.make_sample_video(
        dagster_dev.videoqa_home.parent / "media" / "ui-added.mp4",
        scene_seconds=(2.0,) * SCENES_PER_CLIP,
        audio=True,
        preset="ultrafast",
    ).path
    config = (
        f'ops:\n  add_videos:\n    config:\n      sources: ["{clip}"]\n'
        f'      video_ids: ["{ADD_VIDEO_ID}"]\n      max_frames_per_video: {MAX_FRAMES}\n'
    )
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(
                f"{dagster_dev.base_url}/locations/videoqa_pipeline/jobs/add_videos/playground",
                wait_until="networkidle",
            )
            _dismiss_first_visit_dialog(page)
            _type_launchpad_config(page, config)
            page.screenshot(path=str(ARTIFACTS / "dagster-add-videos-launchpad.png"))
            page.get_by_role("button", name="Launch Run").click()
            page.wait_for_url(re.compile(r".*/runs/[0-9a-f-]+.*"), timeout=60_000)
            status, error = _wait_for_job(_database(dagster_dev), ADD_VIDEO_ID, ADD_VIDEOS_TIMEOUT_SECONDS)
            assert status == "succeeded", (
                f"job for {ADD_VIDEO_ID}: {status} {error}\n{dagster_dev.log_tail()}"
            )
            page.goto(
                f"{dagster_dev.base_url}/assets/keyframes?view=partitions&partition={ADD_VIDEO_ID}",
                wait_until="networkidle",
            )
            page.get_by_text(ADD_VIDEO_ID, exact=True).first.wait_for(state="visible")
            page.get_by_text("thumbnails").first.wait_for(state="visible")
            page.screenshot(path=str(ARTIFACTS / "dagster-add-videos-keyframes.png"))
        finally:
            browser.close()

    rows = read_partition(_database(dagster_dev), TABLES["keyframes"], ADD_VIDEO_ID)
    assert len(rows) == MAX_FRAMES
    # The partition remembers its source: a backfill with other run config finds it again.
    launched = dagster_dev.graphql(
        LAUNCH_BACKFILL_MUTATION,
        {
            "backfillParams": {
                "assetSelection": [{"path": [name]} for name in ASSETS],
                "partitionNames": [ADD_VIDEO_ID],
                "runConfigData": {"resources": {"pipeline_config": {"config": {"max_frames_per_video": 1}}}},
                "title": "re-run with one keyframe",
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    deadline = time.monotonic() + BACKFILL_TIMEOUT_SECONDS
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = dagster_dev.graphql(BACKFILL_STATUS_QUERY, {"backfillId": launched["backfillId"]})[
            "partitionBackfillOrError"
        ]
        if (
            state["status"] in TERMINAL_BACKFILL_STATUSES
            and all(run["status"] in TERMINAL_RUN_STATUSES for run in state["runs"])
            and state["runs"]
        ):
            break
        time.sleep(2.0)
    statuses = [run["status"] for run in state.get("runs", [])]
    failures = {run["runId"]: _run_failures(dagster_dev, run["runId"]) for run in state.get("runs", [])}
    assert statuses and all(status == "SUCCESS" for status in statuses), failures
    assert len(read_partition(_database(dagster_dev), TABLES["keyframes"], ADD_VIDEO_ID)) == 1


@pytest.mark.timeout(120)
def test_stopping_dagster_dev_ends_its_whole_process_group(dagster_dev: DagsterDev) -> None:
    assert dagster_dev.group_processes(), "dagster dev should be running before it is stopped"
    lingering = dagster_dev.stop()
    assert lingering == [], f"processes of the dagster dev group outlived SIGTERM/SIGKILL: {lingering}"
    assert dagster_dev.process.returncode is not None

    # The embedded PostgreSQL runs in its own session; it stops when its last live user leaves.
    _release_database(dagster_dev)
    status = embedded_server_status(dagster_dev.videoqa_home)
    assert not status.running, (
        f"the embedded PostgreSQL under {dagster_dev.videoqa_home} is still up: {status}"
    )
