"""Models shipped in parts across wheels: joined once, checked by size and sha256, refused when altered."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

import pytest

from videoqa_pipeline.ai.errors import AIProviderError
from videoqa_pipeline.ai.packaged_models import SplitModel, joined_model_dir, model_cache_dir


def _wheel_like_packages(root: Path, content: bytes) -> SplitModel:
    """Two importable packages holding the halves of ``content`` (and the small files in the second)."""
    first, second = root / "videoqa_test_part_a", root / "videoqa_test_part_b"
    for package in (first, second):
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
    half = len(content) // 2
    (first / "data" / "model.bin.part1").write_bytes(content[:half])
    (second / "data" / "model.bin.part2").write_bytes(content[half:])
    (second / "data" / "config.json").write_text("{}")
    return SplitModel(
        name="test-model",
        dists=("part-a", "part-b"),
        parts=(
            ("videoqa_test_part_a", "data/model.bin.part1"),
            ("videoqa_test_part_b", "data/model.bin.part2"),
        ),
        files=("config.json",),
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
    )


def test_parts_are_joined_once_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    content = os.urandom(3 * (1 << 20) + 17)  # spans several copy blocks
    model = _wheel_like_packages(tmp_path / "site", content)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    joined = joined_model_dir(model, tmp_path / "cache")
    assert (joined / "model.bin").read_bytes() == content
    assert (joined / "config.json").read_text() == "{}"
    assert oct((joined / "model.bin").stat().st_mode & 0o777) == oct(0o644)
    assert not list(joined.glob("*.partial"))
    stamp = (joined / "model.bin").stat().st_mtime_ns
    assert joined_model_dir(model, tmp_path / "cache") == joined
    assert (joined / "model.bin").stat().st_mtime_ns == stamp, "a good copy is reused, not rewritten"
    # A damaged copy in the cache is replaced by a fresh join.
    (joined / "model.bin").write_bytes(b"x" * len(content))
    joined_model_dir(model, tmp_path / "cache")
    assert (joined / "model.bin").read_bytes() == content


def test_altered_parts_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _wheel_like_packages(tmp_path / "site", b"0123456789" * 1000)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    (tmp_path / "site" / "videoqa_test_part_b" / "data" / "model.bin.part2").write_bytes(b"tampered" * 625)
    with pytest.raises(AIProviderError) as info:
        joined_model_dir(model, tmp_path / "cache")
    assert (
        info.value.permanent
        and "sha256" in str(info.value)
        and "--force-reinstall part-a part-b" in str(info.value)
    )
    assert not (tmp_path / "cache" / f"test-model-{model.sha256[:12]}" / "model.bin").exists()


def test_missing_part_names_the_packages_to_install(tmp_path: Path) -> None:
    model = SplitModel(
        "absent", ("absent-1==1.0.0", "absent-2==1.0.0"), (("videoqa_absent_part", "x"),), (), 1, "0" * 64
    )
    with pytest.raises(AIProviderError, match=re.escape("pip install absent-1==1.0.0 absent-2==1.0.0")):
        joined_model_dir(model, tmp_path)


def test_cache_directory_setting_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert model_cache_dir(str(tmp_path / "x")) == tmp_path / "x"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert model_cache_dir() == tmp_path / "home" / ".cache" / "videoqa" / "models"
    assert model_cache_dir().is_dir()
    (tmp_path / "home" / ".cache" / "videoqa" / "models").chmod(0o500)  # a read-only home
    if os.access(tmp_path / "home" / ".cache" / "videoqa" / "models", os.W_OK):
        return  # root writes anyway: the fallback cannot be seen here
    assert model_cache_dir().parent == Path(tempfile.gettempdir())
