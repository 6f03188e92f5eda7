"""Layers that hold: the libraries never load Dagster, and only one module reads the environment."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "videoqa_pipeline"

#: Modules that must work (and start fast) without Dagster: the media, AI, search and storage
#: libraries, the pure stage functions, and the HTTP service.
DAGSTER_FREE = [
    "videoqa_pipeline.media",
    "videoqa_pipeline.ai",
    "videoqa_pipeline.search",
    "videoqa_pipeline.storage",
    "videoqa_pipeline.storage.ledger",
    "videoqa_pipeline.storage.tables",
    "videoqa_pipeline.service",
    "videoqa_pipeline.service.app",
    "videoqa_pipeline.steps",
    "videoqa_pipeline.settings",
    "videoqa_pipeline.video_ids",
    "videoqa_pipeline.run_tags",
]


@pytest.mark.parametrize("module", DAGSTER_FREE)
def test_library_module_does_not_load_dagster(module: str) -> None:
    """Imported in a fresh interpreter, the module leaves ``dagster`` out of ``sys.modules``."""
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"{module} loads Dagster: {result.stdout[:300]}"


def _imports_dagster(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(
            alias.name.split(".")[0] == "dagster" for alias in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "dagster":
            return True
    return False


def test_only_defs_and_the_run_starting_entry_points_import_dagster() -> None:
    # runner.py starts runs for the CLI; service/health.py opens the Dagster instance only when
    # DAGSTER_HOME is set, inside the readiness check (a lazy import).
    allowed = {"definitions.py", "runner.py", "service/health.py"}
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if _imports_dagster(path)
        and path.relative_to(PACKAGE).parts[0] != "defs"
        and str(path.relative_to(PACKAGE)) not in allowed
    ]
    assert not offenders, f"modules outside defs/ that import dagster: {offenders}"


def test_the_environment_is_read_in_one_place() -> None:
    """Only settings.py reads ``os.environ``; the rest receive Settings (or a value derived from it)."""
    readers = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "getenv")
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            for node in ast.walk(tree)
        ):
            readers.append(str(path.relative_to(PACKAGE)))
    # Read where no Settings exist: the ffmpeg override (a bare library call) and the embedded
    # server's watchdog grace period (its child process). aws.py and fetch.py keep an environment
    # default for library callers that pass no config.
    expected = [
        "aws.py",
        "fetch.py",
        "media/tools.py",
        "settings.py",
        "storage/embedded.py",
    ]
    assert sorted(readers) == expected, readers


def test_no_function_in_the_package_is_longer_than_80_lines() -> None:
    too_long = [
        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > 80
    ]
    assert not too_long, too_long
