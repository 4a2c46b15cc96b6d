"""The masked-language-model inputs: token ids, padded batches and BERT's 80/10/10 masking rule.

Training (``course_utils.training``) and evaluation (``course_utils.evaluation``) both build their
batches here, so a model is scored on inputs made exactly as the ones it learned from (notebook 05).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

#: Label value that ``nn.CrossEntropyLoss`` (and so every Hugging Face model) ignores.
IGNORE_INDEX = -100


def maskable_token_ids(tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """Ids a random replacement may use: the whole vocabulary except the special tokens."""
    special = set(tokenizer.all_special_ids)
    return torch.tensor([i for i in range(len(tokenizer)) if i not in special], dtype=torch.long)


def mask_tokens(
    input_ids: torch.Tensor,
    tokenizer: PreTrainedTokenizerBase,
    *,
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking rule: choose ``mlm_probability`` of the ordinary tokens; of those, replace
    80% with [MASK], 10% with a random ordinary token, and keep 10% unchanged.

    Returns ``(inputs, labels)``: ``labels`` holds the original id at chosen positions and
    ``IGNORE_INDEX`` elsewhere, so the loss is computed only where the model had to guess. Special
    tokens ([CLS], [SEP], [PAD], ...) are never chosen. Random and kept tokens stop the model from
    assuming that only [MASK] positions matter, since [MASK] never appears when it is fine-tuned.
    """
    if not 0.0 <= mlm_probability <= 1.0 or mask_replace_prob + random_replace_prob > 1.0:
        raise ValueError("mlm_probability must be in [0, 1] and mask_replace_prob + random_replace_prob <= 1.")
    special_ids = torch.tensor(tokenizer.all_special_ids, dtype=input_ids.dtype)
    special = torch.isin(input_ids, special_ids)  # (batch, seq)
    probability = torch.full(input_ids.shape, mlm_probability).masked_fill(special, 0.0)  # (batch, seq)
    chosen = torch.bernoulli(probability, generator=generator).bool()  # (batch, seq)
    labels = input_ids.masked_fill(~chosen, IGNORE_INDEX)  # (batch, seq)

    action = torch.rand(input_ids.shape, generator=generator)  # one uniform draw decides the fate of each token
    to_mask = chosen & (action < mask_replace_prob)
    to_random = chosen & (action >= mask_replace_prob) & (action < mask_replace_prob + random_replace_prob)
    candidates = maskable_token_ids(tokenizer)
    random_ids = candidates[torch.randint(len(candidates), input_ids.shape, generator=generator)]  # (batch, seq)

    inputs = input_ids.clone()
    inputs[to_mask] = tokenizer.mask_token_id
    inputs[to_random] = random_ids[to_random]
    return inputs, labels


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text with [CLS] ... [SEP], cut to ``max_length`` (padding comes per batch)."""
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence: ``(input_ids, attention_mask)``, both (batch, longest)."""
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention[row, : len(seq)] = 1
    return ids, attention
