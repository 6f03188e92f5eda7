"""The code location as Dagster loads it, and the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from videoqa_pipeline.definitions import VIDEO_PIPELINE_JOB, build_definitions
from videoqa_pipeline.defs.assets import video_assets
from videoqa_pipeline.defs.config import PipelineConfig
from videoqa_pipeline.settings import Settings
from videoqa_pipeline_tests.pipeline.dagster_dev_server import NON_DEFAULT_SETTINGS

ASSETS = {
    "source_video",
    "normalized_video",
    "transcript",
    "scenes",
    "keyframes",
    "frame_analyses",
    "embeddings",
}


def test_code_location_loads_with_every_asset_partitioned_by_video() -> None:
    from videoqa_pipeline.definitions import defs as load_defs

    defs = load_defs()
    repository = defs.get_repository_def()
    graph = repository.asset_graph
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == ASSETS
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert isinstance(node.partitions_def, dg.DynamicPartitionsDefinition)
        assert node.partitions_def.name == "videos"
        assert node.description
    groups = {graph.get(dg.AssetKey(name)).group_name for name in ASSETS}
    assert groups == {"ingest", "analysis", "index"}
    upstream = {key.to_user_string() for key in graph.get(dg.AssetKey("embeddings")).parent_keys}
    assert upstream == {"transcript", "scenes", "frame_analyses"}
    job = defs.resolve_job_def(VIDEO_PIPELINE_JOB)
    assert job.executor_def.name == "in_process"
    assert set(defs.resources or {}) >= {"io_manager", "database", "blob_store", "ai", "pipeline_config"}


def test_the_defs_folder_loads_what_build_definitions_assembles() -> None:
    """One assembly: Dagster's folder loader and the explicit builder see the same definitions."""
    from videoqa_pipeline.definitions import defs as load_defs

    folder = load_defs().get_repository_def()
    built = build_definitions(Settings.from_env()).get_repository_def()
    assert {job.name for job in folder.get_all_jobs()} == {job.name for job in built.get_all_jobs()}
    assert {s.name for s in folder.sensor_defs} == {s.name for s in built.sensor_defs}
    assert {s.name for s in folder.schedule_defs} == {s.name for s in built.schedule_defs}
    assert folder.asset_graph.get_all_asset_keys() == built.asset_graph.get_all_asset_keys()


def test_the_stage_graph_matches_the_assets() -> None:
    from videoqa_pipeline.defs.jobs import STAGE_UPSTREAMS

    graph = build_definitions(Settings.from_env()).get_repository_def().asset_graph
    for stage, upstreams in STAGE_UPSTREAMS.items():
        parents = {key.to_user_string() for key in graph.get(dg.AssetKey(stage)).parent_keys}
        assert parents == set(upstreams), stage


def test_definitions_load_without_secrets_or_services_whatever_the_sources(tmp_path: Path) -> None:
    """JOB_SOURCE_TYPE=sqs,webhook without a queue or secret, S3 without a bucket: the code location
    still loads (`dg check defs`), with the same sensors, and the problem is named where users look."""
    env = {
        **os.environ,
        "JOB_SOURCE_TYPE": "sqs,webhook",
        "STORAGE_TYPE": "s3",
        "DATABASE_URL": "postgresql://user:pw@db.invalid/videoqa",
    }
    for name in ("AWS_SQS_QUEUE_URL", "WEBHOOK_SECRET", "AWS_S3_BUCKET", "DAGSTER_HOME"):
        env.pop(name, None)
    # The dg next to this interpreter: the project's own environment, whether or not it is on PATH.
    dg_command = Path(sys.executable).with_name("dg")
    checked = subprocess.run(
        [str(dg_command) if dg_command.exists() else "dg", "check", "defs"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr


def test_retry_policy_and_run_config_defaults_come_from_settings() -> None:
    settings = Settings.from_env(
        {"WORKER_MAX_ATTEMPTS": "4", "MAX_FRAMES_PER_VIDEO": "9", "ENABLE_VISION_ANALYSIS": "no"}
    )
    definitions = build_definitions(settings.validate())
    assets = [a for a in definitions.assets or [] if isinstance(a, dg.AssetsDefinition)]
    assert {a.key.to_user_string() for a in assets} == ASSETS
    defaults = build_definitions(Settings.from_env({})).get_repository_def().asset_graph
    pools = {asset.key: asset.op.pool for asset in video_assets()}
    for asset in assets:
        policy = asset.op.retry_policy
        assert policy is not None and policy.max_retries == 3
        assert policy.backoff == dg.Backoff.EXPONENTIAL and policy.jitter == dg.Jitter.PLUS_MINUS
        # Everything else about the asset is the module-level one's.
        default = defaults.get(asset.key)
        assert (default.group_name, default.kinds, default.description, default.parent_keys) == (
            asset.specs_by_key[asset.key].group_name,
            set(asset.specs_by_key[asset.key].kinds),
            asset.specs_by_key[asset.key].description,
            {dep.asset_key for dep in asset.specs_by_key[asset.key].deps},
        )
        assert asset.op.pool == pools[asset.key]
    config = (definitions.resources or {})["pipeline_config"]
    assert isinstance(config, PipelineConfig)
    assert config.max_frames_per_video == 9 and not config.enable_vision_analysis


def test_secrets_stay_out_of_resource_config() -> None:
    url = "postgresql://app:s3cr3tpass@db.internal/videoqa"
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    try:
        definitions = build_definitions(Settings.from_env().validate())
        database = (definitions.resources or {})["database"]
        assert "s3cr3tpass" not in repr(database.model_dump())  # type: ignore[attr-defined]
    finally:
        if previous is None:
            os.environ.pop("DATABASE_URL")
        else:
            os.environ["DATABASE_URL"] = previous


def test_videoqa_demo_runs_end_to_end_from_a_fresh_folder(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "OPENAI_", "DAGSTER_HOME"))
    }
    env["VIDEOQA_HOME"] = str(tmp_path / "home")
    result = subprocess.run(
        [sys.executable, "-m", "videoqa_pipeline.cli", "demo", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["success"] and report["video_id"] == "sample"
    steps = report["steps"]
    assert set(steps) == ASSETS
    assert steps["scenes"]["metadata"]["scenes"] >= 4
    assert steps["keyframes"]["metadata"]["keyframes"] == steps["scenes"]["metadata"]["scenes"]
    assert steps["transcript"]["metadata"]["words"] > 10
    assert steps["embeddings"]["metadata"]["dimension"] == 384
    assert (tmp_path / "home" / "pgdata").is_dir(), "the embedded database lives under VIDEOQA_HOME"
    # The run went to the persistent instance the UI reads, with its partition and materializations.
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path / "home" / "dagster"))) as instance:
        run = instance.get_run_by_id(report["run_id"])
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert instance.has_dynamic_partition("videos", "sample")
        assert instance.get_latest_materialization_event(dg.AssetKey("embeddings")) is not None


def test_dagster_dev_from_this_folder_keeps_history_where_the_cli_writes(tmp_path: Path) -> None:
    """Without DAGSTER_HOME, `dagster dev` in the repo reads dagster.yaml, whose storage is the
    default VIDEOQA_HOME's instance folder: the one `videoqa demo` writes to."""
    repo = Path(__file__).resolve().parents[2]
    ref = InstanceRef.from_dir(str(tmp_path / "temporary"), config_dir=str(repo))
    previous = Path.cwd()
    os.chdir(tmp_path)
    try:
        with dg.DagsterInstance.from_ref(ref) as instance:
            instance.add_dynamic_partitions("videos", ["from-dev"])
        default_home = Settings.from_env({}).dagster_instance_dir
        with dg.DagsterInstance.from_ref(
            InstanceRef.from_dir(str((tmp_path / default_home).resolve()))
        ) as cli:
            assert cli.has_dynamic_partition("videos", "from-dev")
    finally:
        os.chdir(previous)


def test_process_reports_bad_input_as_one_readable_line(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "OPENAI_", "DAGSTER_HOME"))
    }
    env["VIDEOQA_HOME"] = str(tmp_path / "home")
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n")
    result = subprocess.run(
        [sys.executable, "-m", "videoqa_pipeline.cli", "process", str(notes)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "notes" in result.stderr and "source_video" in result.stderr


def test_a_run_with_unworkable_settings_fails_its_first_step_naming_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from videoqa_pipeline.defs.assets.common import check_settings

    check_settings()  # the test environment's settings work
    monkeypatch.setenv("STORAGE_TYPE", "s3")
    monkeypatch.delenv("AWS_S3_BUCKET", raising=False)
    with pytest.raises(dg.Failure) as failed:
        check_settings()
    assert not failed.value.allow_retries
    assert "AWS_S3_BUCKET" in str(failed.value.description)


def test_pipeline_config_declares_exactly_the_processing_options() -> None:
    """The launchpad's schema (PipelineConfig) and the intake's (ProcessingOptions) cannot drift."""
    from videoqa_pipeline.options import ProcessingOptions

    ours = ProcessingOptions.model_fields
    dagster_side = PipelineConfig.model_fields
    assert list(dagster_side) == list(ours)
    for name, field in ours.items():
        mirrored = dagster_side[name]
        assert (mirrored.annotation, mirrored.default, mirrored.metadata) == (
            field.annotation,
            field.default,
            field.metadata,
        ), name


def test_the_ai_resource_carries_every_ai_setting_and_references_the_key() -> None:
    """A run's AI providers are exactly the settings', and the key never appears in the config."""
    import dataclasses

    from videoqa_pipeline.defs.resources import AIResource

    env = {
        "OPENAI_API_KEY": "sk-test-secret-0123456789",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "VIDEOQA_VISION_PROVIDER": "local",
        "VIDEOQA_OPENAI_TIMEOUT": "7",
    }
    settings = Settings.from_env(env)
    resource = AIResource.from_settings(settings)
    assert "sk-test-secret" not in repr(resource.model_dump())
    plain = AIResource.from_settings(settings, secret_as_env_var=False).config()
    for field in dataclasses.fields(settings.ai):
        if field.compare:
            assert getattr(plain, field.name) == getattr(settings.ai, field.name), field.name


def test_process_names_the_servers_error_after_the_last_retry(tmp_path: Path) -> None:
    """A vision server that fails every request (here: llama.cpp's answer when a text-only model is
    sent images): after the step's retries, the one line names the server's own error, not only
    Dagster's "Exceeded max_retries"."""
    from videoqa_pipeline import media
    from videoqa_pipeline_tests.ai.openai_test_server import OpenAITestServer, error_reply

    clip = media.make_sample_video(tmp_path / "clip.mp4", scene_seconds=(1.0,), audio=False).path
    env = {k: v for k, v in os.environ.items() if k not in NON_DEFAULT_SETTINGS and k != "DAGSTER_HOME"}
    with OpenAITestServer("llama.cpp") as server:
        server.script(
            "/v1/chat/completions",
            *[error_reply(500, 'can only concatenate str (not "list") to str') for _ in range(10)],
        )
        env.update(
            {
                "VIDEOQA_HOME": str(tmp_path / "home"),
                "VIDEOQA_VISION_BASE_URL": server.base_url,
                "VIDEOQA_VISION_MODEL": "smollm2",
                "VIDEOQA_OPENAI_MAX_RETRIES": "0",
                "WORKER_MAX_ATTEMPTS": "2",
                "ENABLE_TRANSCRIPTION": "false",
            }
        )
        result = subprocess.run(
            [sys.executable, "-m", "videoqa_pipeline.cli", "process", str(clip)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "OpenAI API error 500" in result.stderr and 'concatenate str (not "list")' in result.stderr
    assert "text-only model" in result.stderr
