"""The notebook runner: papermill with injected parameters, the report, and failures."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from course_utils.runner import NotebookRun, find_notebooks, run_notebook, write_report


def test_selection_by_prefix_and_a_clear_error_for_unknown_names():
    assert [p.name for p in find_notebooks(["00"])] == ["00_setup_and_course_map.ipynb"]
    with pytest.raises(ValueError, match="No notebook matches"):
        find_notebooks(["99_nothing"])


def _notebook(tmp_path: Path, body: str) -> Path:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    params = new_code_cell('PROFILE = "auto"\nSEED = 0')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, new_code_cell(body)]
    path = tmp_path / "90_probe.ipynb"
    nbformat.write(nb, path)
    return path


def test_parameters_are_injected_and_records_collected(tmp_path):
    path = _notebook(
        tmp_path,
        "from course_utils.records import record\nassert PROFILE == 'fast'\nrecord('seed_seen', SEED)\nrecord('x', 1.5)",
    )
    run = run_notebook(path, tmp_path / "out", "fast", 11)
    assert run.status == "ok", run.error
    assert run.records == {"seed_seen": 11, "x": 1.5}
    assert run.seconds > 0 and run.peak_rss_mb > 10  # the kernel's memory was seen
    executed = nbformat.read(tmp_path / "out" / path.name, as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)


def test_a_failing_notebook_is_reported_not_raised(tmp_path):
    path = _notebook(tmp_path, "raise RuntimeError('the experiment did not converge')")
    run = run_notebook(path, tmp_path / "out", "fast", 0)
    assert run.status == "failed"
    assert "did not converge" in run.error or "RuntimeError" in run.error
    json_path, md_path = write_report([run], tmp_path, "fast", 0)
    report = json.loads(json_path.read_text())
    assert report["notebooks"][0]["status"] == "failed"
    assert "failed" in md_path.read_text()


def test_the_report_rounds_numbers_and_shows_nested_values_as_small_tables(tmp_path):
    records = {
        "speed_tokens_per_s": 1234567.891,
        "accuracy": 0.2800000011920929,
        "tiny": 0.0000123,
        "device": "cpu",
        "domain_shift_ppl": {
            "general->general": 12.3456,
            "general->clinical": 2345.678,
            "clinical->general": 55.5,
            "clinical->clinical": 3.2109,
        },
        "per_class": {
            "cardiology": {"precision": 0.91234, "recall": 0.5},
            "neurology": {"precision": 1.0, "recall": 0.25},
        },
    }
    runs = [NotebookRun("01_ngram_language_models.ipynb", "ok", 20.34, 512.4, records)]
    _, md_path = write_report(runs, tmp_path, "fast", 0)
    text = md_path.read_text()
    assert "| 01_ngram_language_models.ipynb | ok | 20.3 | 512 |" in text
    assert "## 01 · N-gram language models" in text  # one section per notebook, under its title
    for shown in ("| `speed_tokens_per_s` | 1,234,568 |", "| `accuracy` | 0.28 |", "| `tiny` | 1.23e-05 |"):
        assert shown in text
    assert "| | general | clinical |" in text and "| general | 12.35 | 2,346 |" in text  # a->b keys: a matrix
    assert "| cardiology | 0.9123 | 0.5 |" in text  # a dict of dicts: one row per key
    assert "0.2800000011920929" not in text and "{" not in text


def test_the_report_includes_the_transfer_benchmark_when_it_was_run(tmp_path):
    runs = [NotebookRun("00_setup_and_course_map.ipynb", "ok", 1.0, 100.0, {})]
    _, md_path = write_report(runs, tmp_path, "fast", 0)
    assert "Transfer benchmark" not in md_path.read_text()
    rows = [
        {
            "init": "dapt",
            "head": "full",
            "labeled_per_class": None,
            "split": "test",
            "seed": seed,
            "accuracy": accuracy,
            "macro_f1": 0.5,
            "lr": 1e-3,
            "seconds": 1.0,
        }
        for seed, accuracy in ((0, 0.8), (1, 0.9))
    ]
    (tmp_path / "transfer.json").write_text(json.dumps(rows))
    json_path, md_path = write_report(runs, tmp_path, "fast", 0)
    assert "## Transfer benchmark" in md_path.read_text() and "0.850 ± 0.071" in md_path.read_text()
    assert json.loads(json_path.read_text())["transfer"] == rows


@pytest.mark.notebooks
def test_notebook_00_with_another_seed_through_the_runner(tmp_path):
    """papermill injects a non-default seed; the notebook's setup line shows it was used."""
    from course_utils.runner import run_course

    runs = run_course(["00"], profile="fast", seed=3, out_dir=tmp_path)
    assert [r.status for r in runs] == ["ok"], runs[0].error
    executed = nbformat.read(tmp_path / "notebooks" / "00_setup_and_course_map.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "seed 3" in printed
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["meta"]["seed"] == 3 and report["notebooks"][0]["records"]["profile"] == "fast"
    assert "| 00_setup_and_course_map.ipynb | ok |" in (tmp_path / "report.md").read_text()
