"""Masked-language-model pretraining: a BERT config from a profile, the optimiser, its schedule and the loop.

The inputs (token ids, padded batches, the 80/10/10 masking rule) come from ``course_utils.mlm``.
Notebook 05 derives each piece step by step and checks it against ``transformers``; notebook 06
calls ``train_mlm`` again to continue pretraining on domain text, optionally replaying general
text (``mix_texts``/``mix_ratio``) so that the model forgets less of what it knew.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import BertConfig, PreTrainedTokenizerBase

from course_utils.mlm import (
    IGNORE_INDEX,
    encode_texts,
    mask_tokens,
    occurring_token_ids,
    pad_batch,
    salient_token_ids,
)
from course_utils.profiles import Profile


def make_bert_config(profile: Profile, vocab_size: int, *, pad_token_id: int = 0) -> BertConfig:
    """A ``BertConfig`` whose sizes all come from ``profile`` (so ``PROFILE`` rescales every model).

    ``vocab_size`` is the tokenizer's length, not ``profile.vocab_size``: WordPiece training may stop
    below the requested size, and the embedding matrix must match the tokenizer exactly.
    """
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=profile.hidden_size,
        num_hidden_layers=profile.num_layers,
        num_attention_heads=profile.num_heads,
        intermediate_size=profile.intermediate_size,
        max_position_embeddings=profile.max_seq_len,
        type_vocab_size=2,
        # No dropout: a tiny model that reads each sentence a few times underfits, it does not overfit.
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=pad_token_id,
        tie_word_embeddings=True,
    )


def _shuffled_forever(n: int, generator: torch.Generator) -> Iterator[int]:
    """Indices 0..n-1 in a fresh random order each epoch, without end."""
    while True:
        yield from torch.randperm(n, generator=generator).tolist()


#: AdamW's moment decays. beta2 = 0.98 (RoBERTa's choice) instead of 0.999 lets the step size follow
#: the gradient's scale within tens of steps, which matters for runs of a few thousand steps.
ADAM_BETAS = (0.9, 0.98)


def _optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases and LayerNorm weights (shrinking those only hurts)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=ADAM_BETAS)


def linear_warmup_decay(steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: rises linearly to 1 over ``warmup_steps``, then falls linearly to 0 at ``steps``.

    Warm-up keeps the first, large and noisy gradients of a fresh model from wrecking it;
    the decay lets the last steps settle instead of bouncing around a minimum.
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (steps - step) / max(1, steps - warmup_steps))

    return factor


def _masked_lm_loss(
    model: nn.Module,
    inputs: torch.Tensor,
    attention: torch.Tensor,
    labels: torch.Tensor,
    readable: torch.Tensor | None,
) -> torch.Tensor:
    """Cross-entropy at the chosen positions only: the prediction head runs on those rows, not on all.

    A ``BertForMaskedLM`` scores every position against the whole vocabulary, but only the ~15-25%
    of positions with a label count; running the head on them alone gives the same loss for less
    work (for a tiny model the head is a large share of it). ``readable`` (vocab,) limits the softmax.
    """
    hidden = model.base_model(input_ids=inputs, attention_mask=attention).last_hidden_state  # (batch, seq, h)
    chosen = labels != IGNORE_INDEX  # (batch, seq)
    logits = model.cls(hidden[chosen])  # (chosen, vocab)
    if readable is not None:
        logits = logits.masked_fill(~readable.to(logits.device), torch.finfo(logits.dtype).min)
    return nn.functional.cross_entropy(logits, labels[chosen])


def train_mlm(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    steps: int,
    batch_size: int,
    lr: float = 1e-3,
    device: str | torch.device | None = None,
    seed: int = 0,
    mix_texts: Sequence[str] | None = None,
    mix_ratio: float = 0.0,
    eval_every: int | None = None,
    eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
    progress: bool = True,
    max_length: int | None = None,
    mlm_probability: float = 0.15,
    salient_words: Sequence[str] | None = None,
    salient_probability: float = 0.5,
    restrict_softmax: bool = True,
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
    desc: str = "MLM training",
) -> list[dict[str, Any]]:
    """Train ``model`` (a ``BertForMaskedLM``) with masked-token prediction for ``steps`` optimiser steps.

    Each batch holds ``batch_size`` texts; with ``mix_texts`` a fixed share ``round(mix_ratio * batch_size)``
    of every batch comes from them instead (replay of general text during domain pretraining). Texts
    are shuffled each epoch and padded per batch, masking uses :func:`mask_tokens`, the optimiser is
    AdamW with linear warm-up and decay. ``salient_words`` turns on entity-aware masking (their tokens
    are chosen with ``salient_probability``). With ``restrict_softmax`` the prediction ranges only
    over tokens that occur in this run's texts: with tied input and output embeddings, every row that
    is never a target would otherwise be pushed the same way at every step, and all such rows would
    collapse onto one vector before the model ever reads them. ``eval_fn(model)`` runs every ``eval_every`` steps and at the end
    (in eval mode, without gradients); its results join that step's record.

    Returns the history: one dict per step with ``step``, ``loss``, ``lr``, ``tokens`` (non-padding
    tokens seen so far), ``seconds`` (training time so far, evaluation excluded) and ``tokens_per_s``,
    plus the evaluation results on the steps where it ran. The model is left in eval mode.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}.")
    if not 0.0 <= mix_ratio <= 1.0:
        raise ValueError(f"mix_ratio must be in [0, 1], got {mix_ratio}.")
    n_mix = round(mix_ratio * batch_size) if mix_texts else 0
    if n_mix == 0 and not texts:
        raise ValueError("train_mlm needs at least one text.")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    max_length = max_length or model.config.max_position_embeddings
    torch.manual_seed(seed)  # dropout draws from the global generator
    generator = torch.Generator().manual_seed(seed)  # data order and masking draw from this one

    main_ids = encode_texts(tokenizer, texts, max_length) if texts else []
    mix_ids = encode_texts(tokenizer, mix_texts, max_length) if n_mix else []
    vocab_size = model.get_input_embeddings().num_embeddings
    readable = occurring_token_ids(main_ids + mix_ids, vocab_size) if restrict_softmax else None  # (vocab,)
    replacements = None
    if readable is not None:  # random replacements come from the same words, so no unread row is ever input
        ordinary = readable.clone()
        ordinary[tokenizer.all_special_ids] = False
        replacements = ordinary.nonzero().flatten()
    salient = salient_token_ids(tokenizer, salient_words) if salient_words else None
    main_order = _shuffled_forever(len(main_ids), generator) if main_ids else None
    mix_order = _shuffled_forever(len(mix_ids), generator) if n_mix else None

    model.to(device).train()
    optimizer = _optimizer(model, lr, weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_warmup_decay(steps, max(1, round(warmup_ratio * steps)))
    )
    history: list[dict[str, Any]] = []
    tokens_seen, train_seconds = 0, 0.0
    bar = tqdm(total=steps, desc=desc, disable=not progress)
    for step in range(1, steps + 1):
        start = time.perf_counter()
        batch = [main_ids[next(main_order)] for _ in range(batch_size - n_mix)] if main_order else []
        batch += [mix_ids[next(mix_order)] for _ in range(n_mix)]
        ids, attention = pad_batch(batch, tokenizer.pad_token_id)
        masking = {
            "mlm_probability": mlm_probability,
            "salient_ids": salient,
            "salient_probability": salient_probability,
            "replacement_ids": replacements,
        }
        inputs, labels = mask_tokens(ids, tokenizer, generator=generator, **masking)
        while not (labels != IGNORE_INDEX).any():  # a tiny batch may draw no position at all
            inputs, labels = mask_tokens(ids, tokenizer, generator=generator, **masking)
        loss = _masked_lm_loss(model, inputs.to(device), attention.to(device), labels.to(device), readable)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        schedule.step()
        loss_value = loss.item()  # also waits for the device, so the timing is honest
        train_seconds += time.perf_counter() - start
        tokens_seen += int(attention.sum())
        entry: dict[str, Any] = {
            "step": step,
            "loss": loss_value,
            "lr": optimizer.param_groups[0]["lr"],
            "tokens": tokens_seen,
            "seconds": train_seconds,
            "tokens_per_s": tokens_seen / train_seconds,
        }
        if eval_fn is not None and ((eval_every and step % eval_every == 0) or step == steps):
            model.eval()
            with torch.no_grad():
                entry.update(eval_fn(model))
            model.train()
        history.append(entry)
        bar.update(1)
        if step % 10 == 0 or step == steps:
            bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{entry['tokens_per_s']:,.0f}")
        if not math.isfinite(loss_value):
            bar.close()
            raise FloatingPointError(f"The MLM loss became {loss_value} at step {step}; lower the learning rate.")
    bar.close()
    model.eval()
    return history


#: Spread of a never-read row around the average row, as a share of the read rows' spread: enough
#: for two new words to differ, small enough that each starts as an ordinary, average word.
UNREAD_ROW_NOISE = 0.1


@torch.no_grad()
def average_unread_rows(model: nn.Module, read: torch.Tensor, *, noise: float = UNREAD_ROW_NOISE, seed: int = 0) -> int:
    """Start every embedding row the model never read at the average of the rows it read, plus a little noise.

    After pretraining with a restricted softmax, a row whose token never occurred is still at its
    random initialisation: a vector many times shorter than a trained row, which the layer norm and
    the attention of the trained model all but ignore. A classifier fine-tuned later then learns
    such words (a drug name, for a general model) far more slowly than the words it knows. Starting
    them as the average word, a common way to add tokens to a trained model, makes them readable.
    ``read`` is a (vocab,) bool mask (``occurring_token_ids``); returns how many rows were set.
    """
    weight = model.get_input_embeddings().weight  # (vocab, hidden), tied to the output layer
    read = read.to(weight.device)
    unread = ~read
    if not read.any() or not unread.any():
        return 0
    rows = weight[read]  # (read, hidden)
    generator = torch.Generator().manual_seed(seed)
    scatter = torch.randn(int(unread.sum()), weight.shape[1], generator=generator).to(weight.device)
    weight[unread] = rows.mean(0) + noise * rows.std(0) * scatter
    return int(unread.sum())
