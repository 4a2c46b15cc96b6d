"""Language-model metrics: pseudo-perplexity and masked-token accuracy (classification metrics: ``metrics``).

A masked language model gives no probability to a whole sentence, so perplexity in the n-gram
sense does not exist for it. Pseudo-perplexity (Salazar et al., 2020) masks each token in turn,
asks for the probability of the true token given all the others, and averages the log-probabilities:
lower is better, and it compares models that share one tokenizer (notebooks 06 and 07).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from course_utils.mlm import IGNORE_INDEX, encode_texts, mask_tokens, pad_batch
from course_utils.training import evaluating, model_device


def _on_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """The model's own device; a different ``device`` is an error, since a probe must not move the caller's model."""
    own = model_device(model)
    if device is not None and torch.device(device).type != own.type:
        raise ValueError(f"The model is on {own}, not {device}: move it there first (model.to(device)).")
    return own


def logits_at(
    model: nn.Module, ids: torch.Tensor, attention: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """The masked LM's logits at one position per row: (rows, vocab).

        A ``BertForMaskedLM`` would score every position against the whole vocabulary; when its encoder
        and prediction head are reachable (``base_model`` and ``cls``) only the wanted rows go through the
        head, which gives the same numbers for a fraction of the work. Any other masked LM runs whole.
    Gradients flow as usual: prompt-based fine-tuning trains through it.
    """
    if hasattr(model, "cls") and hasattr(model, "base_model"):
        hidden = model.base_model(input_ids=ids, attention_mask=attention).last_hidden_state  # (rows, seq, h)
        return model.cls(hidden[rows, positions])
    return model(input_ids=ids, attention_mask=attention).logits[rows, positions]


@torch.no_grad()
def pseudo_log_likelihoods(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    device: str | torch.device | None = None,
    batch_size: int = 256,
) -> list[tuple[float, int]]:
    """For each text, the sum over its tokens of log P(token | every other token) and the number of tokens.

    A text of n tokens needs n forward passes, one per masked position; they are independent, so
    the masked copies of many texts are stacked into batches of ``batch_size`` copies. Texts are
    cut to the model's maximum length; [CLS] and [SEP] are context, never predicted.
    """
    device = _on_device(model, device)
    with evaluating(model):
        encoded = encode_texts(tokenizer, texts, model.config.max_position_embeddings)
        # every (text, position) pair is one masked copy; longest texts first keeps padding small
        jobs = [
            (i, pos)
            for i in sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
            for pos in range(1, len(encoded[i]) - 1)
        ]
        totals = [0.0] * len(texts)
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            copies = []
            for i, pos in chunk:
                copy = list(encoded[i])
                copy[pos] = tokenizer.mask_token_id
                copies.append(copy)
            ids, attention = pad_batch(copies, tokenizer.pad_token_id)  # (chunk, longest)
            rows = torch.arange(len(chunk), device=device)
            positions = torch.tensor([pos for _, pos in chunk], device=device)
            targets = torch.tensor([encoded[i][pos] for i, pos in chunk], device=device)
            logits = logits_at(model, ids.to(device), attention.to(device), rows, positions)  # (chunk, vocab)
            log_probs = torch.log_softmax(logits.float(), dim=-1)  # (chunk, vocab)
            for (i, _), value in zip(chunk, log_probs[rows, targets].tolist(), strict=True):
                totals[i] += value
    return [(totals[i], max(0, len(encoded[i]) - 2)) for i in range(len(texts))]


def pseudo_perplexity(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    device: str | torch.device | None = None,
    batch_size: int = 256,
) -> float:
    """exp(−mean over all tokens of log P(token | rest)): the MLM's analogue of perplexity, per token."""
    results = pseudo_log_likelihoods(model, tokenizer, texts, device, batch_size)
    total = sum(logprob for logprob, _ in results)
    count = sum(n for _, n in results)
    if count == 0:
        raise ValueError("pseudo_perplexity needs at least one text with one ordinary token.")
    return math.exp(-total / count)


@torch.no_grad()
def masked_token_accuracy(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    device: str | torch.device | None = None,
    seed: int = 0,
    *,
    mlm_probability: float = 0.15,
    batch_size: int = 64,
) -> float:
    """Share of masked positions (BERT's 80/10/10 rule, seeded) where the model's top guess is the true token.

    This is what pretraining optimises, measured on held-out text: the masks are drawn from their
    own generator so that two models are scored on exactly the same positions.
    """
    device = _on_device(model, device)
    with evaluating(model):
        generator = torch.Generator().manual_seed(seed)
        encoded = encode_texts(tokenizer, texts, model.config.max_position_embeddings)
        correct = total = 0
        for start in range(0, len(encoded), batch_size):
            ids, attention = pad_batch(encoded[start : start + batch_size], tokenizer.pad_token_id)
            inputs, labels = mask_tokens(ids, tokenizer, mlm_probability=mlm_probability, generator=generator)
            logits = model(
                input_ids=inputs.to(device), attention_mask=attention.to(device)
            ).logits  # (batch, seq, vocab)
            chosen = labels != IGNORE_INDEX
            correct += int((logits.argmax(-1).cpu()[chosen] == labels[chosen]).sum())
            total += int(chosen.sum())
    if total == 0:
        raise ValueError("No position was masked; pass more text.")
    return correct / total


def most_frequent_token(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> int:
    """The ordinary (non-special) token that occurs most often in ``texts``."""
    special = set(tokenizer.all_special_ids)
    counts = Counter(t for ids in tokenizer(list(texts))["input_ids"] for t in ids if t not in special)
    return counts.most_common(1)[0][0]


def unigram_baseline_accuracy(
    tokenizer: PreTrainedTokenizerBase, train_texts: Sequence[str], eval_texts: Sequence[str]
) -> float:
    """Expected masked-token accuracy of always guessing the training text's most frequent token.

    Masked positions are drawn uniformly among ordinary tokens, so this guess is right exactly as
    often as that token occurs among the evaluation text's ordinary tokens: the bar a model that
    ignores context would reach.
    """
    guess = most_frequent_token(tokenizer, train_texts)
    special = set(tokenizer.all_special_ids)
    tokens = [t for ids in tokenizer(list(eval_texts))["input_ids"] for t in ids if t not in special]
    return sum(t == guess for t in tokens) / len(tokens)
