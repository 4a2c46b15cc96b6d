"""Where the course keeps its files: the repository, its data definitions, the artifact cache."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository that holds this package (``course_utils/`` lives at its root).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Environment variable that moves the artifact cache somewhere else.
ARTIFACTS_ENV = "COURSE_ARTIFACTS"


def data_dir() -> Path:
    """The ``data/`` folder with the domain world's definitions.

    The package is meant to be installed from a checkout (``pip install -e .``), so the
    definitions sit next to it; a clear error says how to fix an install without them.
    """
    path = REPO_ROOT / "data"
    if not path.is_dir():
        raise FileNotFoundError(
            f"The course's data definitions were not found at {path}. Install the course from a "
            "clone of its repository with `pip install -e .` so that data/ sits next to course_utils/."
        )
    return path


def artifacts_dir() -> Path:
    """The artifact cache: ``$COURSE_ARTIFACTS`` if set, else ``artifacts/`` at the repository root."""
    override = os.environ.get(ARTIFACTS_ENV)
    return Path(override).expanduser().resolve() if override else REPO_ROOT / "artifacts"


def build_dir() -> Path:
    """Where the notebook runner writes executed notebooks and its report."""
    return REPO_ROOT / "build"


#: The course's public repository: Colab badges and the Colab setup cell point here.
COURSE_REPO = "lm-domain-course/lm-domain-course"
COURSE_REPO_URL = f"https://github.com/{COURSE_REPO}"


def colab_url(notebook: str) -> str:
    """The 'Open in Colab' address of a notebook file name such as ``01_ngram_language_models.ipynb``."""
    return f"https://colab.research.google.com/github/{COURSE_REPO}/blob/main/notebooks/{notebook}"
