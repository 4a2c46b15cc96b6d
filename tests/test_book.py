"""The course site: assembled from executed notebooks, built strictly, and checked in a browser."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from course_utils.env import FIGURE_TITLE_KEY
from course_utils.paths import REPO_ROOT, build_dir
from course_utils.runner import find_notebooks
from tools.book import (
    BOOK_DIR,
    COLAB_BADGE,
    FIGURE_TITLES,
    LOCAL_BADGE,
    SHOWN_TITLE,
    WIDGET_MIME,
    BookError,
    _without_widgets,
    assemble,
    build_book,
    figure_titles,
    prepare_page,
)

BOOK_SOURCES = ["_config.yml", "intro.md", "glossary.md", "references.md", "references.bib", "_ext", "_static"]


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


def _png_output():
    return new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})


def test_a_page_has_a_local_badge_no_parameter_cells_and_titled_figures():
    header = new_markdown_cell(f"# 99 · Demo\n\n[![Open In Colab]({COLAB_BADGE})](https://colab.research.google.com/x)")
    params = new_code_cell('PROFILE = "auto"')
    params.metadata["tags"] = ["parameters"]
    injected = new_code_cell('PROFILE = "fast"')
    injected.metadata["tags"] = ["injected-parameters"]
    plot = new_code_cell('fig, ax = plt.subplots()\nax.set(xlabel="x", title=f"Loss of {name}")\nplt.show()')
    plot.outputs = [_png_output()]
    untitled = new_code_cell("plt.plot([1, 2])")
    untitled.outputs = [_png_output()]
    shown = new_code_cell('ax.set_title(f"Loss after {steps} steps")')
    shown.outputs = [_png_output()]
    shown.outputs[0].metadata = {SHOWN_TITLE: "Loss after 300 steps"}  # what course_utils.env records when shown
    cells = [header, params, injected, new_markdown_cell("## 2. Training"), plot, untitled, shown]
    nb = new_notebook(cells=cells)
    prepare_page(nb)
    assert LOCAL_BADGE in nb.cells[0].source and COLAB_BADGE not in nb.cells[0].source
    assert "https://colab.research.google.com/x" in nb.cells[0].source  # the link still opens Colab
    assert all("remove-cell" in nb.cells[i].metadata["tags"] for i in (1, 2))
    assert nb.cells[4].metadata[FIGURE_TITLES] == ["Loss of …"]
    assert nb.cells[5].metadata[FIGURE_TITLES] == ["A figure of the section “2. Training”"]
    assert nb.cells[6].metadata[FIGURE_TITLES] == ["Loss after 300 steps"]
    assert SHOWN_TITLE == FIGURE_TITLE_KEY


def test_figure_titles_follow_the_figures_a_cell_shows():
    source = """
fig, (a, b) = plt.subplots(1, 2)
a.set_title("left")
b.set_title("right")
plt.show()
fig, ax = plt.subplots()
ax.set_title("first")
fig.suptitle("The whole figure")
plt.show()
plt.title("shown at the end of the cell")
"""
    assert figure_titles(source) == ["left; right", "The whole figure", "shown at the end of the cell"]
    assert figure_titles("%matplotlib inline") == [] and figure_titles("x = 1") == []


def test_the_site_check_fails_on_outside_requests_and_untypeset_maths(tmp_path):
    """A tiny site: one page asks for an outside image and has TeX but no MathJax, one typesets with local MathJax."""
    from importlib import import_module

    from tools.site_check import check_site, find_chromium, has_formulas

    assert has_formulas("the floor $H = -\\log p$ here") and has_formulas("$$x^2$$")
    assert not has_formulas("costs $5 and $10") and not has_formulas("`$x$` is code")
    try:
        find_chromium()
    except FileNotFoundError:
        if os.environ.get("CI"):
            raise
        pytest.skip("Chromium is not installed (apt-get install chromium); CI always runs this check")
    html, book = tmp_path / "html", tmp_path / "book"
    (book / "notebooks").mkdir(parents=True)
    (book / "intro.md").write_text("# Adapting language models to a domain\n\nThe floor $H$.\n")
    mathjax = Path(import_module("sphinx-mathjax-offline").__file__).parent / "static" / "mathjax"
    shutil.copytree(mathjax, html / "mathjax")
    page = "<html><head><title>{}</title>{}</head><body><main>{}</main></body></html>"
    (html / "intro.html").write_text(
        page.format(
            "Adapting language models to a domain",
            "",
            '<p>The floor <span class="math">\\(H\\)</span>.</p><img src="https://example.org/badge.svg">',
        )
    )
    typeset = '<script defer src="mathjax/tex-chtml.js"></script>'
    for name, title in (("report", "The course report"), ("glossary", "Glossary"), ("references", "References")):
        (html / f"{name}.html").write_text(page.format(title, typeset, '<p><span class="math">\\(x^2\\)</span></p>'))
    results = {r.page: r for r in check_site(html, book, tmp_path / "shots")}
    intro = " ".join(results["intro.html"].problems)
    assert "requested https://example.org/badge.svg from outside the site (blocked)" in intro
    assert "MathJax did not load" in intro
    assert "https://example.org/badge.svg" in results["intro.html"].requests  # every request is recorded
    assert not results["glossary.html"].problems and results["glossary.html"].formulas == 1
    assert (tmp_path / "shots" / "formula.png").is_file()


@pytest.mark.notebooks
def test_the_site_builds_from_executed_notebooks_and_reads_well_in_a_browser(tmp_path):
    """Run every notebook (fast), build the site with warnings as errors, open every page in Chromium."""
    from course_utils.runner import run_course
    from tools.site_check import check_site, find_chromium

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
