"""Classifying with the masked LM itself: a cloze prompt and a verbaliser instead of a new head (notebook 10).

Each note is followed by a prompt with one ``[MASK]`` ("This is managed by [MASK]."); the masked
LM's scores at that position for one word per label (the *verbaliser*) are the class scores.
Zero-shot uses the pretrained masked LM as it is. Prompt-based fine-tuning (PET; Schick and
Schütze, 2021) trains it on a few labeled notes with the cross-entropy over those words, so the
model learns the task through the output layer it was pretrained with instead of a new, random
head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BatchEncoding, PreTrainedTokenizerBase

from course_utils.lm_metrics import logits_at
from course_utils.training import BatchOrder, evaluating, make_optimizer, model_device, train_loop


def verbaliser_ids(tokenizer: PreTrainedTokenizerBase, words: Sequence[str]) -> list[int]:
    """The token id of each label word; every word must be one token of the vocabulary."""
    ids = tokenizer.convert_tokens_to_ids(list(words))
    pieces = [w for w, i in zip(words, ids, strict=True) if i == tokenizer.unk_token_id]
    if pieces:
        raise ValueError(f"Verbaliser words must be single tokens of this vocabulary; {pieces} are not.")
    return ids


def encode_prompted(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], prompt: str, max_length: int
) -> BatchEncoding:
    """Note and prompt as one sequence: a long note is cut, the prompt never is, and one segment id is used.

    The pair encoding gives ``[CLS] note [SEP] prompt [SEP]``; the course's BERTs were pretrained
    on single sentences, so every token keeps segment 0.
    """
    if prompt.count(tokenizer.mask_token) != 1:
        raise ValueError(f"The prompt must contain {tokenizer.mask_token} exactly once, got {prompt!r}.")
    return tokenizer(
        list(texts),
        [prompt] * len(texts),
        padding=True,
        truncation="only_first",
        max_length=max_length,
        return_token_type_ids=False,
        return_tensors="pt",
    )


def _mask_scores(mlm: nn.Module, batch: Mapping[str, torch.Tensor], mask_id: int, ids: list[int]) -> torch.Tensor:
    """The label words' scores at each row's one ``[MASK]``: (batch, labels).

    Only the blank is read, so the prediction head runs on that one position per row
    (``lm_metrics.logits_at``, as pseudo-perplexity does).
    """
    rows, cols = (batch["input_ids"] == mask_id).nonzero(as_tuple=True)
    return logits_at(mlm, batch["input_ids"], batch["attention_mask"], rows, cols)[:, ids]


def cloze_logits(
    mlm: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    prompt: str,
    words: Sequence[str],
    *,
    max_length: int,
    batch_size: int = 128,
) -> torch.Tensor:
    """The masked LM's score for each label word at the prompt's ``[MASK]``: (n, labels), on the CPU."""
    ids = verbaliser_ids(tokenizer, words)
    device = model_device(mlm)
    out = []
    with evaluating(mlm), torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = encode_prompted(tokenizer, texts[start : start + batch_size], prompt, max_length).to(device)
            out.append(_mask_scores(mlm, batch, tokenizer.mask_token_id, ids).float().cpu())
    return torch.cat(out)


def prompt_fine_tune(
    mlm: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    labels: Sequence[int],
    prompt: str,
    words: Sequence[str],
    *,
    max_length: int,
    lr: float,
    steps: int,
    batch_size: int = 16,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    precision: str = "auto",
) -> list[dict[str, Any]]:
    """PET: train every weight of ``mlm`` so that the right label word wins at the ``[MASK]``; one record per step.

    AdamW with a constant learning rate (the course's PET recipe: a few dozen steps on a few
    notes, where a warm-up would spend a tenth of them); batches are drawn in a seeded random
    order. The loss is the cross-entropy over the verbaliser's words only, so the rest of the
    vocabulary is ignored. The loop is ``training.train_loop``: ``mlm`` trains on ``device``
    (default: where it is) and stays there, in eval mode.
    """
    if len(texts) != len(labels) or not texts:
        raise ValueError("texts and labels must be non-empty and of the same length.")
    ids = verbaliser_ids(tokenizer, words)
    encode_prompted(tokenizer, texts[:1], prompt, max_length)  # checks the prompt before training
    targets = torch.as_tensor(list(labels))
    optimizer = make_optimizer(mlm, lr)
    torch.manual_seed(seed)  # dropout
    order = BatchOrder(torch.zeros(len(texts)), batch_size, torch.Generator().manual_seed(seed), False)

    def next_batch(_step: int) -> dict[str, torch.Tensor]:
        index = order.next()
        batch = encode_prompted(tokenizer, [texts[i] for i in index], prompt, max_length)
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": targets[index]}

    def verbaliser_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        scores = _mask_scores(model, batch, tokenizer.mask_token_id, ids)  # (batch, labels)
        return F.cross_entropy(scores, batch["labels"]), len(batch["labels"])

    return train_loop(
        mlm,
        next_batch,
        verbaliser_loss,
        optimizer,
        steps=steps,
        constant_lr=True,
        device=device,
        precision=precision,
        progress=progress,
        desc="Prompt-based fine-tuning",
        leave=False,
    )
