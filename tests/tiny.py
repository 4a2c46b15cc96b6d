"""A tiny BERT config and a toy labeled split that the unit tests of classifiers share."""

from __future__ import annotations

import torch
from transformers import BertConfig

from course_utils.classifier import EncodedSplit
from course_utils.profiles import get_profile

CONFIG = BertConfig(
    vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
)  # fmt: skip

#: The fast profile at sizes where building a cached model takes seconds (the artifact tests).
TINY_PROFILE = get_profile(
    "fast",
    corpus_sentences=200,
    vocab_size=300,
    hidden_size=32,
    num_layers=1,
    num_heads=2,
    intermediate_size=64,
    max_seq_len=32,
    batch_size=8,
    pretrain_steps=5,
)


def keyword_split(n: int = 64, seed: int = 0) -> EncodedSplit:
    """Random texts where token 5 or 6 at position 3 decides the label."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 60, (n, 8), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    ids[:, 3] = 5 + labels
    return EncodedSplit(ids, torch.ones_like(ids), labels)
