"""The GPU check: it says so and exits 0 without CUDA, and its checks (and the full profile's shapes) pass on the CPU."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from course_utils import gpu_check
from course_utils.profiles import get_profile
from course_utils.recipes import RECIPES


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: make gpu-check runs for real")
def test_without_cuda_it_says_so_and_succeeds(capsys):
    assert gpu_check.main() == 0
    assert "No CUDA device" in capsys.readouterr().out


def test_every_check_passes_on_the_cpu_and_the_full_profile_builds_at_its_real_sizes(monkeypatch, capsys):
    """Every model the full profile builds, at its real sizes, takes a few steps of its loop: a
    configuration error cannot first appear on a learner's GPU."""
    for name, recipe in list(RECIPES.items()):  # a few steps of every fine-tuning loop, not the hundreds a run takes
        if recipe.min_steps:
            monkeypatch.setitem(RECIPES, name, dataclasses.replace(recipe, min_steps=2))
    # the full profile's model sizes and lengths; smaller batches, so that the CPU takes seconds per step, not minutes
    sizes = {
        **gpu_check.TINY_DATA,
        **gpu_check.ONE_STEP,
        "batch_size": 16,
        "pretrain_batch_size": 8,
        "dapt_eval_texts": 2,
    }
    full = get_profile("full", **sizes)
    results = gpu_check.run_checks(torch.device("cpu"), [full])
    assert len(results) == 5
    assert f"width {get_profile('full').hidden_size}" in results[-1][0]
    assert all(name in results[-1][0] for name in ("teacher", "student", "classifier (dapt_lora)"))
    assert capsys.readouterr().out.count("ok ") == 5
