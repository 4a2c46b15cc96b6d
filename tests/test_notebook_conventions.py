"""Every notebook follows the course's conventions (CONTRIBUTING.md), checked without running it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from course_utils.course_map import COURSE_MAP
from course_utils.paths import REPO_ROOT, colab_url

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks_and_they_are_named_in_order():
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), path.name


def test_every_notebook_is_on_the_course_map():
    mapped = {chapter.notebook for chapter in COURSE_MAP}
    assert {path.name for path in NOTEBOOKS} <= mapped


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def notebook(request) -> tuple[Path, nbformat.NotebookNode]:
    return request.param, nbformat.read(request.param, as_version=4)


def test_valid_and_python3(notebook):
    path, nb = notebook
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_stored_without_outputs(notebook):
    _, nb = notebook
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def test_header_has_title_badge_objectives_prerequisites_and_time(notebook):
    path, nb = notebook
    header = nb.cells[0]
    assert header.cell_type == "markdown"
    assert header.source.startswith(f"# {path.name[:2]} · "), "title must be '# NN · Title'"
    assert colab_url(path.name) in header.source and "colab-badge.svg" in header.source
    for part in ("**Learning objectives**", "**Prerequisites**", "**Time**"):
        assert part in header.source, part


def test_parameters_cell_defines_profile_and_seed(notebook):
    _, nb = notebook
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    names = {
        target.id: node.value
        for node in ast.parse(tagged[0].source).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert {"PROFILE", "SEED"} <= set(names)
    assert ast.literal_eval(names["PROFILE"]) == "auto"
    assert isinstance(ast.literal_eval(names["SEED"]), int)


def test_setup_call_follows_the_parameters(notebook):
    _, nb = notebook
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    following = "\n".join(c.source for c in nb.cells[index + 1 : index + 4] if c.cell_type == "code")
    assert "setup(PROFILE, SEED" in following


def test_ends_with_exercises_solutions_and_going_further(notebook):
    _, nb = notebook
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert re.search(r"^## Exercises", markdown, re.M)
    assert "<details>" in markdown and "Solution" in markdown
    assert re.search(r"^## Going further", markdown, re.M)


def test_no_remote_code_and_no_unpickling(notebook):
    _, nb = notebook
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "trust_remote_code=True" not in code
    assert "torch.load(" not in code and "pickle.load" not in code
