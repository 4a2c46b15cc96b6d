"""Run profiles: every size and step count a notebook reads comes from one ``Profile``.

``fast`` runs each notebook in minutes on a 2-core laptop; ``full`` is the GPU scale;
``auto`` picks ``full`` when a CUDA GPU is present and ``fast`` otherwise. Notebooks
never hard-code a size: they read ``profile.<field>``, so one parameter rescales the course.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch


@dataclass(frozen=True)
class Profile:
    """Sizes and step counts for one scale of the course (fields grouped by the notebook that reads them)."""

    name: str

    # --- the domain world (course_utils.world) ---
    corpus_sentences: int  # unlabeled sentences generated per domain
    task_train: int  # labeled training examples per task
    task_eval: int  # examples in validation, test and each challenge set

    # --- 01 n-gram language models ---
    ngram_max_order: int  # highest n-gram order the notebook fits

    # --- 02/03 attention and the encoder ---
    attention_max_len: int  # longest sequence in the attention cost benchmark

    # --- tiny BERT (06 onwards) ---
    hidden_size: int  # width of every token vector
    num_layers: int  # encoder layers
    num_heads: int  # attention heads per layer
    intermediate_size: int  # width of the feed-forward block
    max_seq_len: int  # longest input in tokens
    vocab_size: int  # WordPiece vocabulary size
    batch_size: int  # examples per optimisation step (fine-tuning, DAPT and TAPT)
    pretrain_batch_size: int  # texts per step for the general BERT: each is a document of a few sentences
    pretrain_steps: int  # MLM steps for the general BERT
    dapt_steps: int  # continued-pretraining steps (DAPT / TAPT)
    dapt_eval_texts: int  # held-out texts per domain for pseudo-perplexity during DAPT / TAPT (07)
    finetune_epochs: int  # epochs for each fine-tuning run
    num_seeds: int  # seeds for the experiments that report a spread

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain JSON-ready data (for cache keys and reports)."""
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "fast": Profile(
        name="fast",
        corpus_sentences=20_000,
        task_train=1_200,
        task_eval=300,
        ngram_max_order=3,
        attention_max_len=1_024,
        hidden_size=128,
        num_layers=2,
        num_heads=2,
        intermediate_size=256,
        max_seq_len=64,
        vocab_size=2_000,
        batch_size=32,
        pretrain_batch_size=10,
        pretrain_steps=3_000,
        dapt_steps=1_200,
        dapt_eval_texts=48,
        finetune_epochs=3,
        num_seeds=3,
    ),
    "full": Profile(
        name="full",
        corpus_sentences=200_000,
        task_train=20_000,
        task_eval=2_000,
        ngram_max_order=4,
        attention_max_len=4_096,
        hidden_size=256,
        num_layers=4,
        num_heads=4,
        intermediate_size=1_024,
        max_seq_len=128,
        vocab_size=8_000,
        batch_size=128,
        pretrain_batch_size=40,
        pretrain_steps=20_000,
        dapt_steps=5_000,
        dapt_eval_texts=500,
        finetune_epochs=5,
        num_seeds=5,
    ),
}

#: The names a notebook may pass as ``PROFILE``.
PROFILE_NAMES = (*PROFILES, "auto")


def resolve_profile_name(name: str) -> str:
    """Turn ``auto`` into ``full`` (CUDA present) or ``fast``; reject unknown names with the valid ones."""
    if not isinstance(name, str) or name.lower() not in PROFILE_NAMES:
        raise ValueError(f"Unknown profile {name!r}. Choose one of: {', '.join(PROFILE_NAMES)}.")
    name = name.lower()
    if name == "auto":
        return "full" if torch.cuda.is_available() else "fast"
    return name


def get_profile(name: str | Profile = "auto", **overrides: Any) -> Profile:
    """The ``Profile`` called ``name``, optionally with some fields changed (``get_profile("fast", num_seeds=5)``)."""
    profile = name if isinstance(name, Profile) else PROFILES[resolve_profile_name(name)]
    if not overrides:
        return profile
    unknown = set(overrides) - set(profile.to_dict())
    if unknown:
        raise ValueError(f"Profile has no field(s) {sorted(unknown)}; its fields are {sorted(profile.to_dict())}.")
    return replace(profile, **overrides)
