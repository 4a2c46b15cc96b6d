import json

import numpy as np
import pytest
import torch

from course_utils.records import RECORDS_ENV, record, recorded


def test_record_writes_plain_json_for_the_runner(tmp_path, monkeypatch):
    target = tmp_path / "nb.records.json"
    monkeypatch.setenv(RECORDS_ENV, str(target))
    assert record("ppl", np.float32(12.5)) is None  # a cell ending in record(...) echoes nothing
    record("acc", torch.tensor(0.75))
    record("table", {"a": [1, 2.5], "b": "x"})
    saved = json.loads(target.read_text())
    assert saved == {"ppl": 12.5, "acc": 0.75, "table": {"a": [1, 2.5], "b": "x"}}
    assert recorded()["acc"] == 0.75


def test_record_refuses_objects_that_are_not_data(monkeypatch):
    monkeypatch.delenv(RECORDS_ENV, raising=False)
    with pytest.raises(TypeError, match="record"):
        record("model", torch.nn.Linear(2, 2))
