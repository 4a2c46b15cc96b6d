"""The artifact cache: build a model or tokenizer once, load it everywhere after.

An entry is a folder ``<name>-<key>`` under the cache root. The key is a hash of what
built it: the builder's config, which names the profile fields and seed it reads and a
fingerprint of the source code it runs (``source_files``, ``fingerprint``), so a changed recipe, or a
changed line of the code behind it, gets a new entry instead of loading a stale one.

Why so careful: notebooks run in any order, sometimes two at once (the test suite and a
learner's kernel), and may be interrupted mid-build. So an entry is built in a temporary
folder, described by a ``MANIFEST.json`` with every file's size and SHA-256, and renamed
into place only when complete. A missing, partial or corrupt entry is detected and rebuilt,
never loaded. Only safetensors, JSON and text files are allowed: nothing is ever unpickled.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from filelock import FileLock

from course_utils.paths import REPO_ROOT, artifacts_dir

T = TypeVar("T")

MANIFEST = "MANIFEST.json"
#: Formats an entry may hold: tensors as safetensors, everything else as JSON or text.
ALLOWED_SUFFIXES = frozenset({".safetensors", ".json", ".jsonl", ".txt", ".csv", ".model"})


class CorruptEntryError(RuntimeError):
    """A cache entry that exists but does not match its manifest."""


#: The folder that holds the ``course_utils`` package: module names are read as paths below it.
SOURCE_ROOT = REPO_ROOT


def cache_key(name: str, config: Mapping[str, Any]) -> str:
    """A short, stable hash of the entry's name and its builder's config (which holds the code's fingerprint)."""
    payload = json.dumps({"name": name, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _module_file(module: str, root: Path) -> str | None:
    """``course_utils/training.py`` for ``course_utils.training`` (a package: its ``__init__.py``); None if no file."""
    base = Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if (root / candidate).is_file():
            return candidate.as_posix()
    return None


def _imported_modules(file: Path) -> set[str]:
    """Every ``course_utils`` module a source file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)  # from a package import a module, or a name: try both
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "course_utils"}


def source_files(*modules: str, follow_imports: bool = True, root: Path | None = None) -> set[str]:
    """The source files of ``modules`` (``"course_utils.training"``), with their packages' ``__init__.py``
    and, with ``follow_imports``, those of every ``course_utils`` module they import, directly or not.

    Paths are relative to ``root`` (default ``SOURCE_ROOT``). Imports are read from the source, so
    nothing is run; a module a builder imports can therefore not be forgotten in its key.
    """
    root = SOURCE_ROOT if root is None else root
    unknown = [module for module in modules if _module_file(module, root) is None]
    if unknown:
        raise ValueError(f"No source file for the module(s) {unknown} under {root}.")
    files: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py too
            file = _module_file(".".join(parts[:depth]), root)
            if file is None or file in files:
                continue
            files.add(file)
            if follow_imports:
                todo.extend(_imported_modules(root / file))
    return files


def fingerprint(files: Iterable[str], root: Path | None = None) -> str:
    """A short hash of the names and contents of ``files``: paths relative to ``root`` (default ``SOURCE_ROOT``),
    as ``source_files`` gives them. One changed byte in any of them gives another hash."""
    root = SOURCE_ROOT if root is None else root
    digest = hashlib.sha256()
    for name in sorted(set(files)):
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _describe_files(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and hash of every file the builder wrote; refuses formats that would need unpickling."""
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if path.suffix not in ALLOWED_SUFFIXES:
            raise ValueError(
                f"The builder wrote {relative!r}; cache entries may only hold {sorted(ALLOWED_SUFFIXES)} files. "
                "Save tensors with safetensors (model.save_pretrained(path) does) and other data as JSON."
            )
        files[relative] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    if not files:
        raise ValueError("The builder wrote no files into the folder it was given.")
    return files


@dataclass(frozen=True)
class Entry:
    """A verified, complete cache entry."""

    name: str
    path: Path
    manifest: dict[str, Any]


class ArtifactCache:
    """A folder of verified artifacts (default ``artifacts/``, or ``$COURSE_ARTIFACTS``)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else artifacts_dir()

    def path_for(self, name: str, config: Mapping[str, Any]) -> Path:
        return self.root / f"{name}-{cache_key(name, config)}"

    def verify(self, path: Path) -> dict[str, Any]:
        """The entry's manifest if every file it lists is present with the right size and hash."""
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise CorruptEntryError(f"{path.name} has no {MANIFEST} (the build did not finish)")
        try:
            manifest = json.loads(manifest_path.read_text())
            files = manifest["files"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CorruptEntryError(f"{path.name}/{MANIFEST} is unreadable ({err})") from err
        for relative, expected in files.items():
            file = path / relative
            if not file.is_file():
                raise CorruptEntryError(f"{path.name}/{relative} is missing")
            if file.stat().st_size != expected["bytes"]:
                raise CorruptEntryError(
                    f"{path.name}/{relative} has {file.stat().st_size} bytes, the manifest says {expected['bytes']}"
                )
            if _sha256(file) != expected["sha256"]:
                raise CorruptEntryError(f"{path.name}/{relative} does not match its SHA-256 in the manifest")
        return manifest

    def lookup(self, name: str, config: Mapping[str, Any]) -> Entry | None:
        """The verified entry for ``name``/``config``, or ``None`` if it is absent or damaged."""
        path = self.path_for(name, config)
        try:
            return Entry(name, path, self.verify(path))
        except CorruptEntryError:
            return None

    def get_or_build(
        self,
        name: str,
        build: Callable[[Path], None],
        load: Callable[[Path], T],
        *,
        config: Mapping[str, Any],
        describe: str | None = None,
        verbose: bool = True,
        device: str | torch.device | None = None,
    ) -> T:
        """Load ``name`` built with ``config``, building it first if needed.

        ``build(folder)`` writes the artifact's files into an empty temporary folder (showing its
        own progress bar); ``load(folder)`` reads them back. Prints one line saying which happened.
        ``device`` (where the builder trains) is recorded in the entry's manifest.
        """
        say = print if verbose else (lambda *_args, **_kw: None)
        label = describe or name
        path = self.path_for(name, config)
        self.root.mkdir(parents=True, exist_ok=True)
        # One builder at a time per entry, across processes; the others wait and then load.
        with FileLock(str(self.root / f".{path.name}.lock")):
            try:
                manifest = self.verify(path)
            except CorruptEntryError as problem:
                if path.exists():
                    say(f"Cache entry for {label} is damaged ({problem}); rebuilding it.")
                    shutil.rmtree(path)
                manifest = self._build(name, build, config, path, label, say, device)
            else:
                say(f"Loaded {label} from the cache ({path.name}, built in {manifest['build_seconds']:.0f} s).")
        return load(path)

    def _build(
        self,
        name: str,
        build: Callable[[Path], None],
        config: Mapping[str, Any],
        path: Path,
        label: str,
        say: Callable[..., None],
        device: str | torch.device | None = None,
    ) -> dict[str, Any]:
        say(f"Building {label} (not in the cache yet)…")
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=self.root))
        try:
            start = time.perf_counter()
            build(staging)
            seconds = time.perf_counter() - start
            manifest = {
                "name": name,
                "config": json.loads(json.dumps(config, default=str)),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "build_seconds": round(seconds, 2),
                "device": None if device is None else torch.device(device).type,  # where the builder trained
                "torch": torch.__version__,
                "files": _describe_files(staging),
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
            staging.rename(path)  # atomic on one filesystem: the entry appears complete or not at all
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        say(f"Built {label} in {seconds:.1f} s and saved it to the cache ({path.name}).")
        return manifest

    def entries(self) -> list[Entry]:
        """Every complete entry in the cache, with its manifest."""
        found = []
        for path in sorted(self.root.glob("*")) if self.root.is_dir() else []:
            if path.is_dir() and not path.name.startswith("."):
                try:
                    manifest = self.verify(path)
                except CorruptEntryError:
                    continue
                found.append(Entry(manifest.get("name", path.name), path, manifest))
        return found

    def clear(self, name: str | None = None) -> int:
        """Delete every entry (or every entry called ``name``); returns how many folders went."""
        if not self.root.is_dir():
            return 0
        removed = 0
        for path in self.root.iterdir():
            if path.is_dir() and (name is None or path.name.rsplit("-", 1)[0] == name):
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        return removed


def get_or_build(
    name: str,
    build: Callable[[Path], None],
    load: Callable[[Path], T],
    *,
    config: Mapping[str, Any],
    describe: str | None = None,
    verbose: bool = True,
    device: str | torch.device | None = None,
) -> T:
    """``ArtifactCache().get_or_build(...)`` on the default cache folder."""
    return ArtifactCache().get_or_build(
        name, build, load, config=config, describe=describe, verbose=verbose, device=device
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m course_utils.cache [--clear [NAME]]``: list the cache, or empty it."""
    import argparse

    parser = argparse.ArgumentParser(description="List or clear the course's artifact cache.")
    parser.add_argument("--clear", nargs="?", const="", metavar="NAME", help="delete all entries, or those called NAME")
    args = parser.parse_args(argv)
    cache = ArtifactCache()
    if args.clear is not None:
        count = cache.clear(args.clear or None)
        print(f"Removed {count} cache entr{'y' if count == 1 else 'ies'} from {cache.root}.")
        return
    entries = cache.entries()
    if not entries:
        print(f"The cache at {cache.root} is empty.")
    for entry in entries:
        size = sum(f["bytes"] for f in entry.manifest["files"].values()) / 1e6
        device = entry.manifest.get("device", "?")
        print(f"{entry.path.name:40s} {size:8.1f} MB  built {entry.manifest['built_at']} on {device}")


if __name__ == "__main__":
    main()
