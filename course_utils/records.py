"""Headline numbers: a notebook ``record``s the results it wants in the course report.

When the notebook runner executes a notebook it sets ``COURSE_RECORDS`` to a JSON file;
``record`` adds each value there, so the report can show every notebook's numbers in one
table. Run interactively, ``record`` just keeps the value. It returns ``None``, so a cell that
ends with ``record(...)`` does not echo the value a second time (the notebook prints it as it wants).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

RECORDS_ENV = "COURSE_RECORDS"

_session: dict[str, Any] = {}


def _plain(value: Any) -> Any:
    """A JSON-ready copy of ``value`` (NumPy and torch scalars become Python numbers)."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"record() takes numbers, strings, lists and dicts of them, not {type(value).__name__}.")


def record(name: str, value: Any) -> None:
    """Store a headline number under ``name`` for the course report (see ``recorded()`` to read it back)."""
    _session[name] = _plain(value)
    path = os.environ.get(RECORDS_ENV)
    if path:
        target = Path(path)
        current = json.loads(target.read_text()) if target.exists() else {}
        current[name] = _session[name]
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(current, indent=2, sort_keys=True))
        tmp.replace(target)  # atomic: the runner never reads a half-written file


def recorded() -> dict[str, Any]:
    """Everything recorded in this session so far."""
    return dict(_session)
