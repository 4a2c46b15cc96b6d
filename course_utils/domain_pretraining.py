"""Continued pretraining as notebook 07 runs it (DAPT, TAPT, replay), and the yardsticks of its runs.

Continued pretraining is plain masked-language modelling started from a trained model instead of a
random one. What changes is the text (a domain corpus for DAPT, the task's own unlabeled inputs for
TAPT) and what we watch while it runs: pseudo-perplexity on held-out text of the new domain (it
should fall) and of the old one (it rises when the model forgets). Mixing old text back into every
batch (replay) is the simplest guard against forgetting.

The learning rate, warm-up and evaluation points come from the recipes of the cached runs
(``course_utils.recipes``). The artifact builders (``course_utils.artifacts``) and the notebook
call the same ``continue_pretraining``, so a cached model and an inline run differ only in the
text they are given. The texts come from ``course_utils.data``, the probes of what a run
learned from ``course_utils.knowledge_probes``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from course_utils.lm_metrics import pseudo_perplexity
from course_utils.mlm import train_mlm
from course_utils.profiles import Profile
from course_utils.recipes import CONTINUED_LR, CONTINUED_WARMUP, EVALUATIONS_PER_RUN, RECIPES


def tapt_steps(profile: Profile) -> int:
    """How many steps TAPT continues pretraining for: ``TAPT_STEP_SHARE`` of ``profile.dapt_steps``."""
    return RECIPES["tapt_bert"].steps_for(profile)


def continue_pretraining(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    profile: Profile,
    seed: int = 0,
    *,
    mix_texts: Sequence[str] | None = None,
    mix_ratio: float = 0.0,
    salient_words: Sequence[str] | None = None,
    eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
    steps: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    desc: str = "Continued pretraining",
) -> list[dict[str, Any]]:
    """Continue MLM training of ``model`` on ``texts`` for ``steps`` steps (DAPT, TAPT, replay).

    The same function serves every run of notebook 07 so that runs differ only in their text:
    the learning rate, warm-up, batch size and evaluation points are fixed here. ``mix_texts`` and
    ``mix_ratio`` replay a share of old text in every batch; ``salient_words`` (the domain's
    ``knowledge_words``) turns on entity-aware masking. ``steps`` defaults to ``profile.dapt_steps``
    (TAPT passes ``tapt_steps(profile)``). Returns ``train_mlm``'s history.
    """
    steps = steps or profile.dapt_steps
    return train_mlm(
        model,
        tokenizer,
        texts,
        steps=steps,
        batch_size=profile.batch_size,
        lr=CONTINUED_LR,
        warmup_ratio=CONTINUED_WARMUP,
        device=device,
        seed=seed,
        mix_texts=mix_texts,
        mix_ratio=mix_ratio,
        salient_words=salient_words,
        eval_every=max(1, steps // EVALUATIONS_PER_RUN),
        eval_fn=eval_fn,
        progress=progress,
        desc=desc,
    )


def pppl_eval_fn(
    tokenizer: PreTrainedTokenizerBase, texts: Mapping[str, Sequence[str]]
) -> Callable[[nn.Module], dict[str, float]]:
    """A function for ``train_mlm(eval_fn=...)`` that returns ``{"pppl_<name>": pseudo-perplexity}`` per sample.

    Measuring the old and the new domain at every evaluation is what turns forgetting from a
    before/after anecdote into a curve.
    """

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {f"pppl_{name}": pseudo_perplexity(model, tokenizer, sample) for name, sample in texts.items()}

    return evaluate


def evaluation_curve(
    history: Sequence[Mapping[str, Any]], start: Mapping[str, float] | None = None
) -> dict[str, list[float]]:
    """The evaluated steps of a history as columns (``step`` and each ``pppl_*``), optionally from step 0.

    ``start`` is the evaluation of the model before training (same keys), so a curve begins where
    the model began rather than at the first evaluation.
    """
    rows = [dict(r) for r in history if any(k.startswith("pppl_") for k in r)]
    if start is not None:
        rows.insert(0, {"step": 0, **start})
    keys = sorted({k for r in rows for k in r if k.startswith("pppl_")})
    return {"step": [r["step"] for r in rows], **{k: [r[k] for r in rows] for k in keys}}


def kept_gain(before: float, plain: float, other: float) -> float:
    """The share of plain DAPT's improvement that another run keeps, measured in log pseudo-perplexity.

    Logs make halving the pseudo-perplexity count the same whether it starts at 100 or at 10.
    """
    full = math.log(before) - math.log(plain)
    if full <= 0:
        raise ValueError("Plain DAPT did not lower the pseudo-perplexity, so there is no gain to keep.")
    return (math.log(before) - math.log(other)) / full
