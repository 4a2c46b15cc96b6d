"""Build the course site (Jupyter Book 1) from the notebooks the runner executed.

The book never executes a notebook: ``assemble`` copies the runner's executed copies from
``build/notebooks/`` into ``book/notebooks/``, refuses to go on if any notebook failed or was not
run, replaces live widgets with nothing (each widget has a static figure beside it, which is what
the site shows), writes the report page and the table of contents, and ``build_book`` runs
Jupyter Book with warnings as errors, so a broken reference or a missing image fails the build.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from course_utils.course_map import COURSE_MAP
from course_utils.paths import REPO_ROOT, build_dir

BOOK_DIR = REPO_ROOT / "book"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class BookError(RuntimeError):
    """The site cannot be built from what the runner produced."""


def notebook_title(nb: nbformat.NotebookNode) -> str:
    """The notebook's title: the text of its first '# ' heading."""
    for line in nb.cells[0].source.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    raise BookError("the notebook's first cell has no '# ' title")


def _without_widgets(nb: nbformat.NotebookNode) -> int:
    """Drop live-widget outputs (they need a kernel); returns how many were dropped."""
    dropped = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = [o for o in cell.get("outputs", []) if WIDGET_MIME not in o.get("data", {})]
        dropped += len(cell.outputs) - len(kept)
        cell.outputs = kept
    nb.metadata.get("widgets", {}).clear()
    return dropped


def assemble(executed: Path | None = None, book: Path = BOOK_DIR) -> list[str]:
    """Copy the executed notebooks and the report into ``book``; returns the pages in course order."""
    executed = executed or build_dir()
    report_path = executed / "report.json"
    if not report_path.is_file():
        raise BookError(f"No runner report at {report_path}. Execute the notebooks first: make notebooks.")
    report = json.loads(report_path.read_text())
    status = {run["notebook"]: run for run in report["notebooks"]}
    sources = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    problems = [
        f"{nb.name}: {status[nb.name]['error']}" if nb.name in status else f"{nb.name}: not executed"
        for nb in sources
        if status.get(nb.name, {}).get("status") != "ok"
    ]
    if problems:
        raise BookError("Every notebook must execute before the book is built:\n  " + "\n  ".join(problems))

    pages_dir = book / "notebooks"
    shutil.rmtree(pages_dir, ignore_errors=True)
    pages_dir.mkdir(parents=True)
    order = {chapter.notebook: i for i, chapter in enumerate(COURSE_MAP)}
    pages = []
    for source in sorted(sources, key=lambda p: order.get(p.name, len(order))):
        nb = nbformat.read(executed / "notebooks" / source.name, as_version=4)
        _without_widgets(nb)
        nbformat.write(nb, pages_dir / source.name)
        pages.append(f"notebooks/{source.stem}")

    report_md = (executed / "report.md").read_text()
    (book / "report.md").write_text(
        report_md.replace("# Course report", "# The course report", 1)
        + "\nWall time and peak memory are those of each notebook's kernel, as the course runner measured them.\n"
    )
    toc = ["format: jb-book", "root: intro", "parts:", "  - caption: The course", "    chapters:"]
    toc += [f"      - file: {page}" for page in pages]
    toc += [
        "  - caption: Reference",
        "    chapters:",
        "      - file: report",
        "      - file: glossary",
        "      - file: references",
    ]
    (book / "_toc.yml").write_text("\n".join(toc) + "\n")
    return pages


def build_book(book: Path = BOOK_DIR, *, strict: bool = True) -> Path:
    """Run Jupyter Book on ``book``; with ``strict``, any Sphinx warning fails the build."""
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book), "build", str(book), "--path-output", str(book), "--all"]
    if strict:
        command += ["--warningiserror", "--keep-going"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BookError(f"Jupyter Book failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return book / "_build" / "html"


def main(argv: list[str] | None = None) -> int:
    """``python -m course_utils.book``: assemble and build the site from ``build/``."""
    import argparse

    parser = argparse.ArgumentParser(description="Build the course site from the executed notebooks.")
    parser.add_argument("--executed", type=Path, default=None, help="the runner's output folder (default: build/)")
    args = parser.parse_args(argv)
    try:
        pages = assemble(args.executed)
        html = build_book()
    except BookError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"Built {len(pages)} notebook pages into {html.relative_to(REPO_ROOT)}/ (open index.html).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
