"""The course site: assembled from executed notebooks, built strictly, and checked in a browser."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from course_utils.book import BOOK_DIR, WIDGET_MIME, BookError, _without_widgets, assemble, build_book
from course_utils.paths import REPO_ROOT, build_dir
from course_utils.runner import find_notebooks

BOOK_SOURCES = ["_config.yml", "intro.md", "glossary.md", "references.md", "references.bib", "_ext"]


def copy_book_sources(target: Path) -> Path:
    target.mkdir(parents=True)
    for name in BOOK_SOURCES:
        source = BOOK_DIR / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target / name)
    return target


def test_a_missing_report_says_how_to_make_one(tmp_path):
    with pytest.raises(BookError, match="make notebooks"):
        assemble(tmp_path / "nothing", copy_book_sources(tmp_path / "book"))


def test_a_failed_or_missing_notebook_fails_the_build(tmp_path):
    executed = tmp_path / "build"
    executed.mkdir()
    names = [p.name for p in find_notebooks()]
    runs = [{"notebook": names[0], "status": "failed", "error": "AssertionError: KN should win"}]
    (executed / "report.json").write_text(json.dumps({"meta": {}, "notebooks": runs}))
    with pytest.raises(BookError) as info:
        assemble(executed, copy_book_sources(tmp_path / "book"))
    assert "KN should win" in str(info.value)
    for name in names[1:]:
        assert f"{name}: not executed" in str(info.value)


def test_widget_outputs_are_dropped_and_static_figures_kept():
    nb = new_notebook()
    cell = new_code_cell("slider")
    cell.outputs = [
        new_output("display_data", data={WIDGET_MIME: {"model_id": "x"}, "text/plain": "IntSlider()"}),
        new_output("display_data", data={"image/png": "iVBORw0KGgo="}),
    ]
    nb.cells = [new_markdown_cell("# 99 · Demo"), cell]
    assert _without_widgets(nb) == 1
    assert [list(o.data) for o in nb.cells[1].outputs] == [["image/png"]]


@pytest.mark.notebooks
def test_the_site_builds_from_executed_notebooks_and_reads_well_in_a_browser(tmp_path):
    """Run every notebook (fast), build the site with warnings as errors, open every page in Chromium."""
    from course_utils.runner import run_course
    from course_utils.site_check import check_site, find_chromium

    executed = build_dir()  # kept after the run: the executed notebooks and report.md are CI's artifacts
    runs = run_course(profile="fast", seed=0, out_dir=executed)
    assert all(run.status == "ok" for run in runs), [(r.notebook, r.error) for r in runs if r.error]

    book = copy_book_sources(tmp_path / "book")
    pages = assemble(executed, book)
    assert len(pages) == len(find_notebooks())
    html = build_book(book)
    for page in pages:
        assert (html / f"{page}.html").is_file()

    try:
        find_chromium()
    except FileNotFoundError:
        if os.environ.get("CI"):
            raise
        pytest.skip("Chromium is not installed (apt-get install chromium); CI always runs this check")
    screenshots = build_dir() / "screenshots"
    results = check_site(html, book, screenshots)
    problems = {r.page: r.problems for r in results if r.problems}
    assert not problems, problems
    notebook_pages = [r for r in results if r.page.startswith("notebooks/")]
    assert len(notebook_pages) == len(pages)
    assert (screenshots / "intro.png").stat().st_size > 10_000
    assert REPO_ROOT in screenshots.parents
