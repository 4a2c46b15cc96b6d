"""The training core data-parallel: two CPU processes (gloo) under torchrun against one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertForMaskedLM

from course_utils.pretrain import read_texts
from course_utils.tokenization import train_wordpiece

TEXTS = [
    "the patient reports wheezing and chest tightness .",
    "bravinolol was started at 10 mg once daily for the pressure .",
    "asthma is managed by pulmonology .",
    "the teacher slept this morning in the garden .",
    "a student sold the kettle at the market on monday .",
    "the nurse noted a mild fever and a dry cough .",
] * 6


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny BERT masked LM and its tokenizer, saved as a learner's checkpoint would be."""
    folder = tmp_path_factory.mktemp("checkpoint")
    tokenizer = train_wordpiece(TEXTS, vocab_size=120, model_max_length=24)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=24, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    (folder / "texts.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return folder


def _run(checkpoint: Path, out: Path, processes: int) -> None:
    args = ["--model", str(checkpoint), "--texts", str(checkpoint / "texts.txt"), "--steps", "6",
            "--batch-size", "8", "--lr", "3e-3", "--out", str(out)]  # fmt: skip
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, *launcher, "-m", "course_utils.pretrain", *args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-6000:]


def test_two_processes_end_with_identical_weights_and_match_one_process(checkpoint, tmp_path):
    _run(checkpoint, tmp_path / "one", processes=1)
    _run(checkpoint, tmp_path / "two", processes=2)
    ranks = [json.loads((tmp_path / "two" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    assert ranks[0]["weights"] == ranks[1]["weights"], "every process must hold the same model after each step"
    single = json.loads((tmp_path / "one" / "rank0.json").read_text())
    # the same global batches, so the same losses and weights up to the order of floating-point sums
    torch.testing.assert_close(torch.tensor(ranks[0]["losses"]), torch.tensor(single["losses"]), rtol=1e-4, atol=1e-5)
    assert single["losses"][-1] < single["losses"][0], "the loss falls over the run"
    one = load_file(str(tmp_path / "one" / "model.safetensors"))
    two = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
    moved = max((one[n] - load_file(str(checkpoint / "model.safetensors"))[n]).abs().max() for n in one)
    assert moved > 1e-3, "training changed the weights"


def test_a_text_file_must_hold_text(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    with pytest.raises(ValueError, match="one document per line"):
        read_texts(empty)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        read_texts(latin)
