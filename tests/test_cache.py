"""The artifact cache: atomic builds, corruption detection, concurrent builders, safe formats."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from course_utils.cache import MANIFEST, ArtifactCache, cache_key, fingerprint, source_files

CONFIG = {"size": 16, "seed": 0, "profile": "fast"}


def build_weights(folder: Path) -> None:
    torch.manual_seed(CONFIG["seed"])
    save_file({"w": torch.randn(CONFIG["size"], CONFIG["size"])}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(CONFIG))


def load_weights(folder: Path) -> torch.Tensor:
    return load_file(str(folder / "model.safetensors"))["w"]


class CountingBuilder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, folder: Path) -> None:
        self.calls += 1
        build_weights(folder)


@pytest.fixture
def cache(tmp_path: Path) -> ArtifactCache:
    return ArtifactCache(tmp_path / "artifacts")


def test_builds_once_then_loads(cache, capsys):
    builder = CountingBuilder()
    first = cache.get_or_build("weights", builder, load_weights, config=CONFIG)
    assert "Building weights" in capsys.readouterr().out
    second = cache.get_or_build("weights", builder, load_weights, config=CONFIG)
    assert "Loaded weights" in capsys.readouterr().out
    assert builder.calls == 1
    torch.testing.assert_close(first, second)


def test_the_key_depends_on_config_and_name():
    assert cache_key("a", CONFIG) == cache_key("a", dict(reversed(list(CONFIG.items()))))
    assert cache_key("a", CONFIG) != cache_key("a", {**CONFIG, "seed": 1})
    assert cache_key("a", CONFIG) != cache_key("b", CONFIG)


def test_source_files_follow_imports_from_the_source_without_running_it(package_copy):
    files = source_files("course_utils.mlm", root=package_copy)
    assert {"course_utils/training.py", "course_utils/mlm.py", "course_utils/profiles.py"} <= files
    assert "course_utils/__init__.py" in files  # importing course_utils.mlm runs it too
    assert "course_utils/ngram.py" not in files and "course_utils/data.py" not in files
    world = source_files("course_utils.world", root=package_copy)
    assert {"course_utils/world/__init__.py", "course_utils/world/tasks.py", "course_utils/paths.py"} <= world
    assert source_files("course_utils.mlm", follow_imports=False, root=package_copy) == {
        "course_utils/__init__.py",
        "course_utils/mlm.py",
    }
    with pytest.raises(ValueError, match="course_utils.nothing"):
        source_files("course_utils.nothing", root=package_copy)


def test_editing_a_fingerprinted_module_changes_the_fingerprint(package_copy):
    def training_code() -> str:
        return fingerprint(source_files("course_utils.mlm", root=package_copy), package_copy)

    before = training_code()
    assert training_code() == before, "the same source gives the same fingerprint"
    ngram = package_copy / "course_utils" / "ngram.py"
    ngram.write_text(ngram.read_text() + "\n# a module mlm.py does not import\n")
    assert training_code() == before
    core = package_copy / "course_utils" / "training.py"  # imported by mlm.py
    core.write_text(core.read_text().replace("LOG_EVERY = 10", "LOG_EVERY = 5"))
    assert training_code() != before


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), id="truncated"),
        pytest.param(lambda p: p.write_bytes(b"\0" * len(p.read_bytes())), id="same-size-garbage"),
        pytest.param(lambda p: p.unlink(), id="missing"),
        pytest.param(lambda p: (p.parent / MANIFEST).unlink(), id="no-manifest"),
        pytest.param(lambda p: (p.parent / MANIFEST).write_text("{not json"), id="bad-manifest"),
    ],
)
def test_a_damaged_entry_is_rebuilt_not_loaded(cache, capsys, damage):
    builder = CountingBuilder()
    good = cache.get_or_build("weights", builder, load_weights, config=CONFIG).clone()  # safetensors maps the file
    entry = cache.lookup("weights", CONFIG)
    assert entry is not None
    damage(entry.path / "model.safetensors")
    assert cache.lookup("weights", CONFIG) is None
    capsys.readouterr()

    loaded_from: list[Path] = []

    def load_checked(folder: Path) -> torch.Tensor:
        cache.verify(folder)  # whatever is loaded must be complete and sound
        loaded_from.append(folder)
        return load_weights(folder)

    again = cache.get_or_build("weights", builder, load_checked, config=CONFIG)
    out = capsys.readouterr().out
    assert builder.calls == 2
    assert "rebuilding" in out or "Building" in out
    torch.testing.assert_close(good, again)


def test_an_interrupted_build_leaves_nothing_behind(cache):
    def crash(folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_build("weights", crash, load_weights, config=CONFIG)
    assert cache.lookup("weights", CONFIG) is None
    assert [p for p in cache.root.iterdir() if p.is_dir()] == []  # no staging folder left over
    builder = CountingBuilder()
    cache.get_or_build("weights", builder, load_weights, config=CONFIG)
    assert builder.calls == 1


@pytest.mark.parametrize("name", ["weights.pt", "model.bin", "data.pkl"])
def test_pickle_based_files_are_refused(cache, name):
    def pickler(folder: Path) -> None:
        (folder / name).write_bytes(b"\x80\x04N.")

    with pytest.raises(ValueError, match="safetensors"):
        cache.get_or_build("bad", pickler, load_weights, config=CONFIG)
    assert cache.lookup("bad", CONFIG) is None


def test_a_builder_that_writes_nothing_is_an_error(cache):
    with pytest.raises(ValueError, match="no files"):
        cache.get_or_build("empty", lambda folder: None, load_weights, config=CONFIG)


def test_clear_and_entries(cache):
    cache.get_or_build("one", build_weights, load_weights, config=CONFIG)
    cache.get_or_build("two", build_weights, load_weights, config=CONFIG)
    cache.get_or_build("two", build_weights, load_weights, config={**CONFIG, "seed": 5})
    assert sorted(e.name for e in cache.entries()) == ["one", "two", "two"]
    assert cache.clear("two") == 2
    assert [e.name for e in cache.entries()] == ["one"]
    assert cache.clear() == 1
    assert cache.entries() == []


def test_environment_variable_moves_the_default_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_ARTIFACTS", str(tmp_path / "elsewhere"))
    assert ArtifactCache().root == (tmp_path / "elsewhere").resolve()


def test_command_line_lists_and_clears(tmp_path):
    env = {"COURSE_ARTIFACTS": str(tmp_path / "cli"), "PATH": ""}
    ArtifactCache(tmp_path / "cli").get_or_build("weights", build_weights, load_weights, config=CONFIG)
    listing = subprocess.run(
        [sys.executable, "-m", "course_utils.cache"], env=env, capture_output=True, text=True, check=True
    )
    assert "weights-" in listing.stdout
    cleared = subprocess.run(
        [sys.executable, "-m", "course_utils.cache", "--clear"], env=env, capture_output=True, text=True, check=True
    )
    assert "Removed 1 cache entry" in cleared.stdout


# --- two processes building the same entry --------------------------------------------------


def _slow_builder(folder: Path) -> None:
    log = Path(folder).parent / "build-log.txt"
    with log.open("a") as handle:
        handle.write("start\n")
    time.sleep(1.0)  # long enough for the other process to arrive mid-build
    build_weights(folder)


def _worker(root: str, queue: multiprocessing.Queue) -> None:
    tensor = ArtifactCache(root).get_or_build("weights", _slow_builder, load_weights, config=CONFIG, verbose=False)
    queue.put(tensor.sum().item())


def test_two_processes_building_the_same_entry_do_not_corrupt_it(tmp_path):
    root = tmp_path / "artifacts"
    root.mkdir()
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_worker, args=(str(root), queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    sums = [queue.get(timeout=5) for _ in workers]
    assert sums[0] == sums[1]
    assert (root / "build-log.txt").read_text().count("start") == 1  # the second process waited and loaded
    cache = ArtifactCache(root)
    entry = cache.lookup("weights", CONFIG)
    assert entry is not None and len(cache.entries()) == 1
