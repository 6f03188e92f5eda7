"""Print the image's pip requirements, read from pyproject.toml, for the Dockerfile's build stage.

The dependency layer is built from this list before the code is copied in, so editing the code
does not reinstall every dependency. The package itself needs no torch; ``--torch=cpu`` (the
Dockerfile's TORCH build argument) adds the ``sentence-transformers`` extra (torch,
sentence-transformers and the float32 embedding weights).

Usage: python image_requirements.py PYPROJECT [--torch=none|cpu]
"""

from __future__ import annotations

import re
import sys

import tomllib

#: The extra that brings torch in, added by --torch=cpu.
TORCH_EXTRA = "sentence-transformers"


def requirement_name(requirement: str) -> str:
    """The distribution name of a PEP 508 requirement, normalized (``Torch>=2`` → ``torch``)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def image_requirements(pyproject: str, with_torch: bool) -> list[str]:
    """The package's dependencies plus its ``deploy`` extra, and the torch extra when asked.

    Raises:
        KeyError: pyproject.toml has no ``deploy`` (or ``sentence-transformers``) extra.
    """
    with open(pyproject, "rb") as handle:
        project = tomllib.load(handle)["project"]
    extras = project["optional-dependencies"]
    requirements = list(project["dependencies"]) + list(extras["deploy"])
    if with_torch:
        requirements += list(extras[TORCH_EXTRA])
    return requirements


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    print("\n".join(image_requirements(argv[0], "--torch=cpu" in argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
