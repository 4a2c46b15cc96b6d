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
    salient_ids: torch.Tensor | None = None,
    salient_probability: float = 0.5,
    replacement_ids: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking rule: choose ``mlm_probability`` of the ordinary tokens; of those, replace
    80% with [MASK], 10% with a random ordinary token, and keep 10% unchanged.

    With ``salient_ids`` (entity-aware masking), those tokens are chosen with ``salient_probability``
    instead: the words that carry a fact (a drug, its class, its specialty) become targets far more
    often than "the" or "was", so each step teaches more facts. ``replacement_ids`` limits the random
    replacements (default: every ordinary token).

    Returns ``(inputs, labels)``: ``labels`` holds the original id at chosen positions and
    ``IGNORE_INDEX`` elsewhere, so the loss is computed only where the model had to guess. Special
    tokens ([CLS], [SEP], [PAD], ...) are never chosen. Random and kept tokens stop the model from
    assuming that only [MASK] positions matter, since [MASK] never appears when it is fine-tuned.
    """
    if not 0.0 <= mlm_probability <= 1.0 or mask_replace_prob + random_replace_prob > 1.0:
        raise ValueError("mlm_probability must be in [0, 1] and mask_replace_prob + random_replace_prob <= 1.")
    special_ids = torch.tensor(tokenizer.all_special_ids, dtype=input_ids.dtype)
    special = torch.isin(input_ids, special_ids)  # (batch, seq)
    probability = torch.full(input_ids.shape, mlm_probability)  # (batch, seq)
    if salient_ids is not None:
        if not 0.0 <= salient_probability <= 1.0:
            raise ValueError(f"salient_probability must be in [0, 1], got {salient_probability}.")
        salient = torch.isin(input_ids, salient_ids.to(input_ids.dtype))
        probability = probability.masked_fill(salient, salient_probability)
    probability = probability.masked_fill(special, 0.0)
    chosen = torch.bernoulli(probability, generator=generator).bool()  # (batch, seq)
    labels = input_ids.masked_fill(~chosen, IGNORE_INDEX)  # (batch, seq)

    action = torch.rand(input_ids.shape, generator=generator)  # one uniform draw decides the fate of each token
    to_mask = chosen & (action < mask_replace_prob)
    to_random = chosen & (action >= mask_replace_prob) & (action < mask_replace_prob + random_replace_prob)
    candidates = maskable_token_ids(tokenizer) if replacement_ids is None else replacement_ids
    random_ids = candidates[torch.randint(len(candidates), input_ids.shape, generator=generator)]  # (batch, seq)

    inputs = input_ids.clone()
    inputs[to_mask] = tokenizer.mask_token_id
    inputs[to_random] = random_ids[to_random]
    return inputs, labels


def salient_token_ids(tokenizer: PreTrainedTokenizerBase, words: Sequence[str]) -> torch.Tensor:
    """The ids of every token of ``words`` (entity names, attribute values): the targets of entity-aware masking."""
    ids = {i for word in words for i in tokenizer(word, add_special_tokens=False)["input_ids"]}
    return torch.tensor(sorted(ids - set(tokenizer.all_special_ids)), dtype=torch.long)


def occurring_token_ids(sequences: Sequence[Sequence[int]], vocab_size: int) -> torch.Tensor:
    """A (vocab_size,) bool mask of the ids that occur in ``sequences``: the rows a run's softmax may predict."""
    seen = torch.zeros(vocab_size, dtype=torch.bool)
    for sequence in sequences:
        seen[torch.tensor(sequence, dtype=torch.long)] = True
    return seen


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
