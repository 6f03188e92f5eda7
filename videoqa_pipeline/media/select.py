"""Which scenes get a keyframe when a video has more scenes than the frame budget.

Pure arithmetic, no media: the rule is part of the project's contract (see DESIGN.md,
"Smart selection") and is covered by property-based tests.
"""

from __future__ import annotations

import numpy as np


def select_scene_indices(scene_count: int, max_frames: int) -> list[int]:
    """Pick at most ``max_frames`` scene indices, spread evenly, always keeping first and last.

    The rule is ``numpy.round(numpy.linspace(0, scene_count - 1, max_frames))``, which for ``max_frames >= 2`` always contains scene 0 and the last scene
    and never repeats an index because the step is at least 1.

    Args:
        scene_count: Number of scenes in the video (0 or more).
        max_frames: The frame budget (1 or more).

    Returns:
        Sorted, distinct scene indices: all of them when ``max_frames >= scene_count``,
        ``[0]`` when ``max_frames == 1``, ``[]`` when there are no scenes.

    Raises:
        ValueError: ``max_frames < 1`` or ``scene_count < 0``.

    Example:
        >>> select_scene_indices(100, 10)
        [0, 11, 22, 33, 44, 55, 66, 77, 88, 99]
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    if scene_count < 0:
        raise ValueError(f"scene_count must be 0 or more, got {scene_count}")
    if scene_count == 0:
        return []
    if max_frames >= scene_count:
        return list(range(scene_count))
    if max_frames == 1:
        return [0]
    # numpy's linspace and round (half to even) exactly, including its floating-point
    # behaviour at .5 ties, so that every consumer of the rule gets the same indices.
    return [int(i) for i in np.round(np.linspace(0, scene_count - 1, max_frames))]
