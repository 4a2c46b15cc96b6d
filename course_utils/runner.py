"""Execute the course's notebooks with papermill and write a report of what they did.

``python -m course_utils.runner --profile fast`` runs every notebook in ``notebooks/`` (or the
ones named) with the given ``PROFILE`` and ``SEED`` injected, writes the executed copies to
``build/notebooks/`` (the book is built from them), and writes ``build/report.json`` and
``build/report.md``: each notebook's status, wall time, peak memory and the headline numbers
it recorded with ``course_utils.records.record``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from course_utils.measure import PeakMemorySampler
from course_utils.paths import REPO_ROOT, build_dir
from course_utils.profiles import resolve_profile_name
from course_utils.records import RECORDS_ENV

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


@dataclass
class NotebookRun:
    """The outcome of executing one notebook."""

    notebook: str
    status: str  # "ok" or "failed"
    seconds: float
    peak_rss_mb: float  # highest resident memory of the notebook's kernel
    records: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def find_notebooks(selection: list[str] | None = None) -> list[Path]:
    """The notebooks to run: all ``NN_*.ipynb`` in order, or those whose name starts with a selection item."""
    everything = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return everything
    chosen = [nb for nb in everything if any(nb.name.startswith(item.removesuffix(".ipynb")) for item in selection)]
    missing = [
        item for item in selection if not any(nb.name.startswith(item.removesuffix(".ipynb")) for nb in everything)
    ]
    if missing:
        raise ValueError(f"No notebook matches {missing}; the notebooks are: {[nb.name for nb in everything]}.")
    return chosen


def run_notebook(notebook: Path, out_dir: Path, profile: str, seed: int, timeout: int = 900) -> NotebookRun:
    """Execute one notebook in a fresh kernel with ``PROFILE``/``SEED`` injected; never raises on its failure."""
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    records_path = out_dir / f"{notebook.stem}.records.json"
    records_path.unlink(missing_ok=True)
    os.environ[RECORDS_ENV] = str(records_path)  # the kernel inherits it; record() writes there
    sampler = PeakMemorySampler(0.1, children=True)
    sampler.start()
    start = time.perf_counter()
    error = None
    try:
        papermill.execute_notebook(
            str(notebook),
            str(out_dir / notebook.name),
            parameters={"PROFILE": profile, "SEED": seed},
            kernel_name="python3",
            cwd=str(notebook.parent),
            progress_bar=False,
            execution_timeout=timeout,
            # The kernel's own log (not the notebook's output) would warn on every start that its local
            # TCP sockets are unencrypted; the runner's output should be only what the course says.
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    except Exception as err:  # papermill raises PapermillExecutionError with the failing cell
        error = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else err!r}"
    finally:
        seconds = time.perf_counter() - start
        peak = sampler.stop() / 2**20
        os.environ.pop(RECORDS_ENV, None)
    records = json.loads(records_path.read_text()) if records_path.exists() else {}
    return NotebookRun(notebook.name, "failed" if error else "ok", round(seconds, 1), round(peak, 1), records, error)


def _format_value(value: Any) -> str:
    """A number as a reader wants it: about four significant digits, thousands separated, no float noise."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        size = abs(value)
        if not math.isfinite(value) or size == 0:
            return str(value) if size else "0"
        if size >= 1000:
            return f"{value:,.0f}"
        return f"{value:.4g}" if size >= 1e-3 else f"{value:.2e}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_value(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _records_markdown(records: dict[str, Any]) -> list[str]:
    """A notebook's headline numbers: plain values in one table, each dict in a small table of its own.

    A dict keyed ``"a->b"`` (such as a train-domain -> test-domain matrix) becomes a matrix with
    rows ``a`` and columns ``b``; a dict of dicts becomes a table with one row per outer key.
    """
    if not records:
        return ["No headline numbers recorded."]
    plain = {k: v for k, v in records.items() if not isinstance(v, dict)}
    lines: list[str] = []
    if plain:
        lines += ["| headline number | value |", "|---|---:|"]
        lines += [f"| `{name}` | {_format_value(value)} |" for name, value in plain.items()]
    for name, table in records.items():
        if not isinstance(table, dict):
            continue
        caption = f"`{name}`:"
        arrows = [key.split("->") for key in table]
        if len(table) > 1 and all(len(pair) == 2 for pair in arrows):
            table = {a: {b: table[f"{a}->{b}"] for a_, b in arrows if a_ == a} for a, _ in arrows}
            caption = f"`{name}` (rows → columns):"
        lines += [""] if lines else []
        lines += [caption, ""]
        if table and all(isinstance(v, dict) for v in table.values()):
            columns = list(dict.fromkeys(k for row in table.values() for k in row))
            lines += ["| | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
            lines += [
                f"| {row} | " + " | ".join(_format_value(values.get(c, "")) for c in columns) + " |"
                for row, values in table.items()
            ]
        else:
            lines += ["| key | value |", "|---|---:|"]
            lines += [f"| {key} | {_format_value(value)} |" for key, value in table.items()]
    return lines


def _notebook_heading(name: str) -> str:
    """The notebook's own title (``NN · Title``) if it is one of the course's, else its file name."""
    path = NOTEBOOKS_DIR / name
    try:
        first = json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"]
        text = "".join(first) if isinstance(first, list) else first
        return next(line[2:].strip() for line in text.splitlines() if line.startswith("# "))
    except (OSError, ValueError, KeyError, IndexError, StopIteration):
        return name


#: The transfer benchmark's output (``python -m course_utils.transfer --out build/transfer.json``):
#: when it is in the output folder, the report includes its table.
TRANSFER_FILE = "transfer.json"


def _transfer_rows(out_dir: Path) -> list[dict[str, Any]]:
    """The benchmark's rows from ``out_dir/transfer.json``, or none if it was not run (or is not a list)."""
    path = out_dir / TRANSFER_FILE
    if not path.is_file():
        return []
    rows = json.loads(path.read_text())
    if not isinstance(rows, list):
        raise ValueError(f"{path} should hold the benchmark's list of rows; rerun python -m course_utils.transfer.")
    return rows


def write_report(runs: list[NotebookRun], out_dir: Path, profile: str, seed: int) -> tuple[Path, Path]:
    """``report.json`` (everything) and ``report.md`` (what a person reads: a summary, then a table per notebook)."""
    import platform

    import torch

    meta = {
        "profile": profile,
        "seed": seed,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "cpu_count": os.cpu_count(),
        "total_seconds": round(sum(r.seconds for r in runs), 1),
    }
    transfer = _transfer_rows(out_dir)
    json_path = out_dir / "report.json"
    report: dict[str, Any] = {"meta": meta, "notebooks": [asdict(r) for r in runs]}
    if transfer:
        report["transfer"] = transfer
    json_path.write_text(json.dumps(report, indent=2))
    lines = [
        f"# Course report ({profile} profile, seed {seed})",
        "",
        f"Python {meta['python']}, torch {meta['torch']}, device {meta['device']}, {meta['cpu_count']} CPU cores; "
        f"all notebooks together: {meta['total_seconds']:.0f} s.",
        "",
        "| notebook | status | wall time (s) | peak memory (MB) |",
        "|---|---|---:|---:|",
    ]
    for run in runs:
        status = run.status if not run.error else f"failed: {run.error}".replace("|", "\\|")
        lines.append(f"| {run.notebook} | {status} | {run.seconds:.1f} | {run.peak_rss_mb:.0f} |")
    lines += ["", "Each notebook's headline numbers follow, as it recorded them with `course_utils.records.record`."]
    for run in runs:
        lines += ["", f"## {_notebook_heading(run.notebook)}", ""] + _records_markdown(run.records)
    if transfer:
        from course_utils.transfer import format_table

        seeds = sorted({row["seed"] for row in transfer})
        lines += [
            "",
            "## Transfer benchmark",
            "",
            f"`python -m course_utils.transfer` ({TRANSFER_FILE}), accuracy as mean ± spread over seeds {seeds}:",
            "",
            "```",
            format_table(transfer),
            "```",
        ]
    md_path = out_dir / "report.md"
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def run_course(
    selection: list[str] | None = None, profile: str = "fast", seed: int = 0, out_dir: Path | None = None
) -> list[NotebookRun]:
    """Execute notebooks in order, print one line each, write the report; returns every run."""
    profile = resolve_profile_name(profile)
    out_dir = out_dir or build_dir()
    runs = []
    for notebook in find_notebooks(selection):
        print(f"▶ {notebook.name} ({profile}, seed {seed}) …", flush=True)
        run = run_notebook(notebook, out_dir / "notebooks", profile, seed)
        mark = "✓" if run.status == "ok" else "✗"
        print(
            f"  {mark} {run.seconds:.1f} s, peak {run.peak_rss_mb:.0f} MB{'  ' + run.error if run.error else ''}",
            flush=True,
        )
        runs.append(run)
    json_path, md_path = write_report(runs, out_dir, profile, seed)
    print(f"Report: {md_path.relative_to(REPO_ROOT) if md_path.is_relative_to(REPO_ROOT) else md_path}")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Execute the course notebooks and write the report.")
    parser.add_argument("notebooks", nargs="*", help="notebook names or prefixes such as 01 (default: all)")
    parser.add_argument("--profile", default="fast", help="fast, full or auto (default: fast)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: build/)")
    args = parser.parse_args(argv)
    runs = run_course(args.notebooks or None, args.profile, args.seed, args.out)
    return 0 if all(run.status == "ok" for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
