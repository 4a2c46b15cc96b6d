"""The throughput comparison runs both loops for the same steps and counts the tokens each read."""

from __future__ import annotations

from course_utils.profiles import get_profile
from course_utils.throughput import compare


def test_both_loops_run_the_same_steps_on_real_batches(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_ARTIFACTS", str(tmp_path))
    small = get_profile("fast", corpus_sentences=400, pretrain_batch_size=4)
    rows = compare(small, steps=3)
    assert [r["steps"] for r in rows] == [3, 3]
    for row in rows:  # a batch of 4 short documents holds some tens of tokens, not thousands
        assert 4 * 5 <= row["tokens_per_s"] * row["seconds"] / 3 <= 4 * small.max_seq_len, row
