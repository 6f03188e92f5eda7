"""Shared paths and helpers for the deployment tests: the files under test live at the repo root
and in ``deploy/``; the tools that check them (docker-compose, hadolint, kubernetes-validate) are
optional and their tests skip, with the install line, when a tool is missing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"


def load_yaml(path: Path) -> Any:
    """Parse one YAML document."""
    return yaml.safe_load(path.read_text())


def require_tool(name: str, install: str) -> str:
    """The path of the executable ``name``, or skip the test saying how to install it."""
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed ({install})")
    return found
