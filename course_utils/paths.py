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


#: The course's public repository: the one place its address is written. Colab badges, the Colab
#: setup cell of every notebook (``colab_setup_source``) and the site's repository link come from it;
#: the tests check that every notebook and the book's config agree with it.
COURSE_REPO = "lm-domain-course/lm-domain-course"
COURSE_REPO_URL = f"https://github.com/{COURSE_REPO}"


def colab_url(notebook: str) -> str:
    """The 'Open in Colab' address of a notebook file name such as ``01_ngram_language_models.ipynb``."""
    return f"https://colab.research.google.com/github/{COURSE_REPO}/blob/main/notebooks/{notebook}"


def colab_setup_source(repo_url: str = COURSE_REPO_URL) -> str:
    """The first code cell of every notebook: in Colab, clone the course and install its package.

    Elsewhere it does nothing; run again in the same Colab session (or after a restart) it finds the
    clone and does not fetch it twice.
    """
    folder = repo_url.rstrip("/").rsplit("/", 1)[-1]
    return (
        "# In Colab, fetch the course and install its helper package; elsewhere this does nothing.\n"
        "import os, subprocess, sys\n"
        f'if "google.colab" in sys.modules and not os.path.isdir("{folder}"):\n'
        f'    subprocess.run(["git", "clone", "--depth", "1", "{repo_url}"], check=True)\n'
        f'    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "{folder}"], check=True)\n'
        f'    sys.path.insert(0, "{folder}")'
    )
