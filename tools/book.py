"""Build the course site (Jupyter Book 1) from the notebooks the runner executed.

The book never executes a notebook: ``assemble`` copies the runner's executed copies from
``build/notebooks/`` into ``book/notebooks/``, refuses to go on if any notebook failed or was not
run, replaces live widgets with nothing (each widget has a static figure beside it, which is what
the site shows), writes the report page and the table of contents, and ``build_book`` runs
Jupyter Book with warnings as errors, so a broken reference or a missing image fails the build.

The pages need nothing from outside the site: the *Open in Colab* badge image is the site's own
copy (``book/_static/colab-badge.svg``; the link still goes to Colab), and MathJax is served from
the site (``book/_config.yml``). The papermill parameters cells are left out of the pages (the
setup line each notebook prints says which profile and seed ran), and each figure gets its title
as alternative text, for readers who cannot see it.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from course_utils.course_map import COURSE_MAP
from course_utils.paths import REPO_ROOT, build_dir

BOOK_DIR = REPO_ROOT / "book"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
IMAGE_MIMES = ("image/png", "image/svg+xml", "image/jpeg")
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_BADGE = "../_static/colab-badge.svg"  # relative to book/notebooks/, where the pages are
PARAMETER_TAGS = ("parameters", "injected-parameters")  # papermill's: the defaults and what it injected
FIGURE_TITLES = "course_figure_titles"  # cell metadata: one alt text per figure (book/_ext/course_site.py)
SHOWN_TITLE = "course_figure_title"  # output metadata: the title a figure had when shown (course_utils.env)


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


def _local_badge(nb: nbformat.NotebookNode) -> int:
    """Point the Colab badge's image at the site's own copy (the link still opens Colab); returns how many."""
    changed = 0
    for cell in nb.cells:
        if cell.cell_type == "markdown" and COLAB_BADGE in cell.source:
            cell.source = cell.source.replace(COLAB_BADGE, LOCAL_BADGE)
            changed += 1
    return changed


def _without_parameter_cells(nb: nbformat.NotebookNode) -> int:
    """Tag papermill's parameters and injected-parameters cells ``remove-cell``; returns how many."""
    hidden = 0
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if any(tag in tags for tag in PARAMETER_TAGS) and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
            hidden += 1
    return hidden


def _text(node: ast.expr) -> str | None:
    """A string literal's text; an f-string's with each ``{...}`` shown as "…" (its value is not in the source)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "…" for v in node.values)
    return None


def figure_titles(source: str) -> list[str]:
    """The title of each figure a code cell draws, in order, read from its matplotlib calls.

    A figure's title is its ``suptitle`` if it has one, else its axes' titles (``set_title``,
    ``plt.title``, ``ax.set(title=...)``) joined by "; ". Each ``show()`` call closes a figure. A cell
    that cannot be parsed (IPython magics) or names no title gives an empty list.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    events: list[tuple[int, int, str, str]] = []  # (line, column, "title" | "suptitle" | "show", text)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name, text = node.func.attr, None
        if name in ("set_title", "suptitle", "title"):
            argument = (
                node.args[0] if node.args else next((k.value for k in node.keywords if k.arg in ("label", "t")), None)
            )
            text = _text(argument) if argument is not None else None
        elif name == "set":
            text = next((_text(k.value) for k in node.keywords if k.arg == "title"), None)
        elif name == "show":
            events.append((node.lineno, node.col_offset, "show", ""))
            continue
        if text:
            events.append((node.lineno, node.col_offset, "suptitle" if name == "suptitle" else "title", text))
    figures, suptitle, titles = [], None, []
    for _, _, kind, text in sorted(events):
        if kind == "suptitle":
            suptitle = text
        elif kind == "title":
            titles.append(text)
        elif suptitle or titles:
            figures.append(suptitle or "; ".join(dict.fromkeys(titles)))
            suptitle, titles = None, []
    if suptitle or titles:  # the inline backend shows a figure left open at the end of the cell
        figures.append(suptitle or "; ".join(dict.fromkeys(titles)))
    return figures


def _title_figures(nb: nbformat.NotebookNode) -> int:
    """Store an alt text for each figure of each cell; returns how many.

    The title the figure had when the notebook ran (``course_utils.env`` puts it in the output's
    metadata) comes first; else the title its cell's source gives it; else the section it is in.
    """
    titled, section = 0, notebook_title(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            fenced = False  # a "# comment" inside a ``` code block is not a heading
            for line in cell.source.splitlines():
                fenced ^= line.lstrip().startswith("```")
                if not fenced and re.match(r"#{1,6} ", line):
                    section = line.lstrip("#").strip()
            continue
        images = [o for o in cell.get("outputs", []) if any(m in o.get("data", {}) for m in IMAGE_MIMES)]
        if cell.cell_type != "code" or not images:
            continue
        titles = figure_titles(cell.source)
        if len(titles) != len(images):  # a loop drew several figures, or no title is a literal: share what there is
            titles = ["; ".join(titles)] * len(images)
        cell.metadata[FIGURE_TITLES] = [
            output.get("metadata", {}).get(SHOWN_TITLE) or title or f"A figure of the section “{section}”"
            for output, title in zip(images, titles, strict=True)
        ]
        titled += len(images)
    return titled


def prepare_page(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Turn an executed notebook into a site page (in place): no widgets, no parameter cells, local badge, alt texts."""
    _without_widgets(nb)
    _without_parameter_cells(nb)
    _local_badge(nb)
    _title_figures(nb)
    return nb


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
        nb = prepare_page(nbformat.read(executed / "notebooks" / source.name, as_version=4))
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
    """``python -m tools.book``: assemble and build the site from ``build/``."""
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
