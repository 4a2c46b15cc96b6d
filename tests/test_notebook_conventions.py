"""Every notebook follows the course's conventions (CONTRIBUTING.md), checked without running it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from course_utils.course_map import COURSE_MAP
from course_utils.paths import COURSE_REPO_URL, REPO_ROOT, colab_setup_source, colab_url

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


def test_the_colab_setup_cell_comes_from_the_one_repository_address(notebook):
    _, nb = notebook
    assert nb.cells[1].source == colab_setup_source(), "the setup cell must be paths.colab_setup_source()"


def test_the_site_links_the_same_repository():
    config = (REPO_ROOT / "book" / "_config.yml").read_text(encoding="utf-8")
    assert f"url: {COURSE_REPO_URL}" in config


def test_the_setup_cell_clones_and_installs_once_in_colab(tmp_path, monkeypatch):
    """Run the cell as Colab would (``google.colab`` importable) against a local clone of this repository, twice."""
    import subprocess
    import sys
    import types

    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    source = colab_setup_source(f"file://{REPO_ROOT}")
    calls = []
    real_run = subprocess.run

    def run(args, **kwargs):
        calls.append(list(args))
        if args[0] == "git":  # the clone is real; the install would change this environment, so it is recorded
            return real_run(args, **kwargs)
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    folder = REPO_ROOT.name
    exec(compile(source, "setup-cell", "exec"), {})
    assert (tmp_path / folder / "course_utils" / "paths.py").is_file(), "the course was cloned"
    assert calls[1][-2:] == ["-e", folder] and sys.path[0] == folder
    exec(compile(source, "setup-cell", "exec"), {})  # a second run finds the clone and fetches nothing
    assert len(calls) == 2


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


# ------------------------------------------------------------------- recurring text problems

NUMBERS = {int(chapter.notebook[:2]) for chapter in COURSE_MAP}  # the notebooks that exist or are planned


def _exercise_cells(nb: nbformat.NotebookNode) -> list[tuple[int, nbformat.NotebookNode]]:
    """The cells from the '## Exercises' heading up to '## Going further' (or the end)."""
    cells, inside = [], False
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and re.search(r"^## Exercises", cell.source, re.M):
            inside = True
        if cell.cell_type == "markdown" and re.search(r"^## Going further", cell.source, re.M):
            break
        if inside:
            cells.append((index, cell))
    return cells


def _none_assignment(node: ast.stmt) -> list[str]:
    """``answer = None`` (or ``a = b = None``): the names a learner cell leaves for the learner."""
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and node.value.value is None:
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Constant) and node.value.value is None:
        return [node.target.id] if isinstance(node.target, ast.Name) else []
    return []


def _guard(node: ast.stmt) -> str | None:
    """The answer a check is guarded by: ``if answer is not None:`` (possibly ``... and more``)."""
    if not isinstance(node, ast.If):
        return None
    test = node.test.values[0] if isinstance(node.test, ast.BoolOp) and isinstance(node.test.op, ast.And) else node.test
    if (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.IsNot)
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value is None
    ):
        return test.left.id
    return None


def exercise_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Executed exercise code that is neither an ``answer = None`` cell nor a check guarded by it."""
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and re.search(r"the solution;?\s*remove it", cell.source, re.I):
            problems.append(f"cell {index}: pre-fills a solution ('the solution; remove it')")
    answers: set[str] = set()
    for index, cell in _exercise_cells(nb):
        if cell.cell_type != "code":
            continue
        for node in ast.parse(cell.source).body:
            if names := _none_assignment(node):
                answers.update(names)
                continue
            guard = _guard(node)
            if guard is None or guard not in answers:
                line = ast.get_source_segment(cell.source, node).splitlines()[0]
                problems.append(
                    f"cell {index}: {line!r} runs outside a check `if <answer> is not None:` of an answer that an "
                    "earlier `<answer> = None` cell leaves to the learner"
                )
                break  # one message per cell is enough
            assigned = {
                target.id
                for inner in ast.walk(node)
                if isinstance(inner, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.NamedExpr))
                for target in (inner.targets if isinstance(inner, ast.Assign) else [inner.target])
                if isinstance(target, ast.Name)
            }
            if assigned & answers:
                problems.append(f"cell {index}: the check assigns the answer {sorted(assigned & answers)} itself")
    markdown = "\n".join(c.source for _, c in _exercise_cells(nb) if c.cell_type == "markdown")
    if answers and "<details>" not in markdown:
        problems.append("exercises with answers need their solutions in <details> blocks")
    return problems


def test_no_executed_cell_gives_away_an_exercise_answer(notebook):
    """Exercise code is an ``answer = None`` cell for the learner and a check under ``if answer is not None:``.

    Anything else that runs in the Exercises section (an assignment of the answer, a solution computed
    and asserted at the top level) would hand the learner the solution, which belongs only in a
    collapsed ``<details>`` block. The guard is notebook 01's pattern: the check runs, and so can fail,
    only once the learner has filled the answer in, so CI executes the notebook as stored.
    """
    path, nb = notebook
    problems = exercise_problems(nb)
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)


_NOTEBOOK_REFERENCE = re.compile(
    r"\bnotebooks?\s+(\d{1,2}(?:\s*(?:,|–|-|to|and|or)\s*\d{1,2})*)\b"
    r"|\b(\d{2})_[a-z0-9_]+\.ipynb",
    re.I,
)


def unknown_notebooks(nb: nbformat.NotebookNode) -> list[str]:
    """References in the markdown to notebook numbers that the course map does not have."""
    unknown = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for match in _NOTEBOOK_REFERENCE.finditer(cell.source):
            numbers = [int(n) for n in re.findall(r"\d{1,2}", match.group(1) or match.group(2))]
            unknown += [f"cell {index}: {match.group(0)!r}" for n in numbers if n not in NUMBERS]
    return unknown


def test_notebook_numbers_named_in_the_text_are_on_the_course_map(notebook):
    """'notebook 07' or 'notebooks 06 to 09' must name notebooks that exist or that the course map plans."""
    path, nb = notebook
    unknown = unknown_notebooks(nb)
    assert not unknown, f"{path.name} names notebooks the course map does not have ({sorted(NUMBERS)}): {unknown}"


_MULTIPLIERS = {
    r"\bhalf\b|\bhalve[sd]?\b|\bhalving\b": 2,
    r"\btwice\b|\bdouble[sd]?\b|\bdoubling\b|\btwo times\b": 2,
    r"\bthree times\b|\btriple[sd]?\b|\bthreefold\b": 3,
    r"\bfour times\b|\bquadruple[sd]?\b|\bfourfold\b": 4,
    r"\bfive times\b|\bfivefold\b": 5,
    r"\bten times\b|\btenfold\b": 10,
    r"\ba hundred times\b|\bhundredfold\b": 100,
}
_NUMBER = r"(\d[\d,]*(?:\.\d+)?(?:e-?\d+)?)"
_PAIR = re.compile(
    _NUMBER + r"\s*[A-Za-z%]{0,3}\b[^.;:\d]{0,30}?\b(?:instead of|rather than|compared with|versus|vs\.?)\s*" + _NUMBER
)


def _sentences(nb: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """Each sentence of the markdown and of the code comments, with its cell index."""
    found = []
    for index, cell in enumerate(nb.cells):
        text = cell.source
        if cell.cell_type == "code":
            text = "\n".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line)
        text = re.sub(r"```.*?```", " ", text, flags=re.S)
        found += [(index, s) for s in re.split(r"(?<=[.!?])\s+|\n\s*\n", text) if s.strip()]
    return found


def contradicting_number_words(nb: nbformat.NotebookNode) -> list[str]:
    """Sentences whose multiplier word ('twice', 'half', 'ten times') disagrees with the two numbers compared."""
    wrong = []
    for index, sentence in _sentences(nb):
        factors = {f for pattern, f in _MULTIPLIERS.items() if re.search(pattern, sentence, re.I)}
        if not factors:
            continue
        for a, b in _PAIR.findall(sentence.replace("\n", " ")):
            x, y = (float(v.replace(",", "")) for v in (a, b))
            ratio = max(x, y) / min(x, y) if min(x, y) > 0 else float("inf")
            if not any(abs(ratio / f - 1) < 0.15 for f in factors):
                wrong.append(f"cell {index}: {sentence.strip()[:120]!r} ({a} vs {b} is {ratio:.2g}x)")
    return wrong


def test_number_words_agree_with_the_numbers_beside_them(notebook):
    """'twice the memory: 128 MB instead of 64 MB' — a multiplier word must match the two numbers it compares."""
    path, nb = notebook
    wrong = contradicting_number_words(nb)
    assert not wrong, f"{path.name}: " + "; ".join(wrong)


def test_the_text_rules_catch_what_they_are_for():
    """Each rule above, on a small notebook that breaks it and one that follows it."""
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    exercises = new_markdown_cell("## Exercises\n\n1. Halve it.\n\n<details><summary>Solution</summary>x</details>")
    good = new_notebook(
        cells=[
            exercises,
            new_code_cell("answer = None  # yours"),
            new_code_cell("if answer is not None:\n    assert answer == 2"),
        ]
    )
    assert exercise_problems(good) == []
    prefilled = new_notebook(
        cells=[exercises, new_code_cell("answer = None"), new_code_cell("answer = 2\nassert answer == 2")]
    )
    assert len(exercise_problems(prefilled)) == 1
    self_answering = new_notebook(
        cells=[exercises, new_code_cell("answer = None"), new_code_cell("if answer is not None:\n    answer = 2")]
    )
    assert "assigns the answer" in exercise_problems(self_answering)[0]
    tagged = new_notebook(cells=[new_code_cell("x = 2  # the solution; remove it to try your own")])
    assert exercise_problems(tagged)
    assert unknown_notebooks(new_notebook(cells=[new_markdown_cell("See notebooks 06 to 09, and notebook 42.")])) == [
        "cell 0: 'notebook 42'"
    ]
    assert unknown_notebooks(new_notebook(cells=[new_markdown_cell("`43_extra.ipynb` and notebook 3")])) == [
        "cell 0: '43_extra.ipynb'"
    ]
    right = new_markdown_cell("It needs twice the memory: about 128 MB each instead of 64 MB.")
    wrong = new_markdown_cell("It needs twice the memory: about 128 MB each instead of 32 MB.")
    assert contradicting_number_words(new_notebook(cells=[right])) == []
    assert len(contradicting_number_words(new_notebook(cells=[wrong]))) == 1


# ------------------------------------------------------------------- one idea per notebook

MAX_CODE_LINES, MAX_CELL_LINES = 400, 40  # COURSE.md §3: about 400 code lines, no code cell over 40
OVER_THE_RULES = {  # notebooks that still teach several ideas and wait for their split (course map, COURSE.md §3)
    "02_attention_from_scratch.ipynb",
    "11_knowledge_distillation.ipynb",
}


def size_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Where a notebook breaks the rules of thumb for size: too many code lines, or a code cell too long."""
    code = [(index, cell) for index, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    problems = [
        f"cell {index}: {len(cell.source.splitlines())} lines"
        for index, cell in code
        if len(cell.source.splitlines()) > MAX_CELL_LINES
    ]
    total = sum(len(cell.source.splitlines()) for _, cell in code)
    return problems + ([f"{total} code lines"] if total > MAX_CODE_LINES else [])


def test_notebooks_keep_to_the_size_rules(notebook):
    """At most 400 code lines and no code cell over 40 lines, except the notebooks listed as waiting for a split."""
    path, nb = notebook
    problems = size_problems(nb)
    if path.name in OVER_THE_RULES:
        assert problems, f"{path.name} now keeps to the size rules: remove it from OVER_THE_RULES"
    else:
        assert not problems, f"{path.name} breaks the size rules: {problems}"
