"""The package layout of CONTRIBUTING.md: every module has a row, and imports run only up the table."""

from __future__ import annotations

import re

from course_utils.cache import _imported_modules
from course_utils.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "course_utils"


def _rows() -> list[list[str]]:
    """The table's rows, top to bottom, as the module files each names (relative to course_utils/)."""
    text = (REPO_ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = text.split("## Package layout", 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("| `"):
            names = re.findall(r"`([\w/]+(?:\.py|/))`", line.split("|")[1])
            rows.append([f for n in names for f in ([n] if n.endswith(".py") else _files_under(n))])
    return rows


def _files_under(folder: str) -> list[str]:
    return sorted(p.relative_to(PACKAGE).as_posix() for p in (PACKAGE / folder).glob("*.py"))


def _module(file: str) -> str:
    """``course_utils.world`` for ``world/__init__.py``, ``course_utils.data`` for ``data.py``."""
    parts = ["course_utils", *file.removesuffix(".py").split("/")]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_every_module_has_one_row_and_imports_only_modules_above_it():
    rows = _rows()
    row_of = {_module(f): i for i, files in enumerate(rows) for f in files}
    modules = {_module(p.relative_to(PACKAGE).as_posix()) for p in PACKAGE.rglob("*.py")} - {"course_utils"}
    assert set(row_of) == modules, "CONTRIBUTING.md's package layout must list every module once"
    for module, row in row_of.items():
        file = PACKAGE.parent / (module.replace(".", "/") + ".py")
        if not file.is_file():
            file = file.with_suffix("") / "__init__.py"
        below = {m for m in _imported_modules(file) if row_of.get(m, -1) > row}
        assert not below, f"{module} imports {sorted(below)}, which the layout places below it"
