"""Shared test set-up: nothing may reach the network, and the artifact cache is a temporary folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from course_utils.paths import REPO_ROOT

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread; several threads only add synchronisation."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An empty artifact cache for one test, on one thread (tiny models run fastest on one)."""
    monkeypatch.setenv("COURSE_ARTIFACTS", str(tmp_path))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(before)


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of the course_utils sources that a test may edit: the folder that holds it."""
    shutil.copytree(REPO_ROOT / "course_utils", tmp_path / "course_utils", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path
