"""The keyframe budget rule: first and last scene, the rest evenly spread, no duplicates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from videoqa_pipeline.media import select_scene_indices


def test_issue_example() -> None:
    assert select_scene_indices(100, 10) == [0, 11, 22, 33, 44, 55, 66, 77, 88, 99]


@pytest.mark.parametrize(
    ("scenes", "budget", "expected"),
    [
        (0, 5, []),
        (1, 1, [0]),
        (5, 1, [0]),
        (3, 10, [0, 1, 2]),
        (3, 3, [0, 1, 2]),
        (5, 2, [0, 4]),
        (5, 3, [0, 2, 4]),
    ],
)
def test_edge_cases(scenes: int, budget: int, expected: list[int]) -> None:
    assert select_scene_indices(scenes, budget) == expected


@pytest.mark.parametrize(("scenes", "budget"), [(5, 0), (5, -1), (-1, 3)])
def test_rejects_bad_arguments(scenes: int, budget: int) -> None:
    with pytest.raises(ValueError):
        select_scene_indices(scenes, budget)


@given(st.integers(min_value=0, max_value=5000), st.integers(min_value=1, max_value=500))
def test_properties(scenes: int, budget: int) -> None:
    picked = select_scene_indices(scenes, budget)
    assert len(picked) == min(scenes, budget)
    assert picked == sorted(set(picked)), "ordered, no duplicates"
    assert all(0 <= i < scenes for i in picked)
    if scenes and budget >= 2:
        assert picked[0] == 0
        assert picked[-1] == scenes - 1
    if scenes and budget == 1:
        assert picked == [0]


@given(st.integers(min_value=2, max_value=3000), st.integers(min_value=2, max_value=300))
def test_matches_rounded_linspace(scenes: int, budget: int) -> None:
    if budget >= scenes:
        assert select_scene_indices(scenes, budget) == list(range(scenes))
    else:
        expected = [int(x) for x in np.round(np.linspace(0, scenes - 1, budget))]
        assert select_scene_indices(scenes, budget) == expected


@given(st.integers(min_value=2, max_value=3000), st.integers(min_value=2, max_value=300))
def test_evenly_spread(scenes: int, budget: int) -> None:
    picked = select_scene_indices(scenes, budget)
    if budget < scenes:
        gaps = np.diff(picked)
        step = (scenes - 1) / (budget - 1)
        # Rounding moves each index by at most half a step either way.
        assert gaps.min() >= np.floor(step) and gaps.max() <= np.ceil(step)
