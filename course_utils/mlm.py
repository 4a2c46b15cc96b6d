"""Masked-language modelling: BERT's inputs, its 80/10/10 masking rule, its config and its training loop.

``train_mlm`` pretrains a BERT (notebook 06) and continues pretraining it on domain text
(notebook 07, through ``course_utils.domain_pretraining``); it says how a batch is drawn and masked
and what the loss is, and leaves the loop itself to ``course_utils.training``. Evaluation
(``course_utils.lm_metrics``) builds its batches with the same functions, so a model is scored on
inputs made exactly as the ones it learned from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from transformers import BertConfig, PreTrainedTokenizerBase

from course_utils.profiles import Profile
from course_utils.training import make_optimizer, train_loop

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
    device = input_ids.device  # every draw happens where the ids are, with a generator of that device
    special_ids = torch.tensor(tokenizer.all_special_ids, dtype=input_ids.dtype, device=device)
    special = torch.isin(input_ids, special_ids)  # (batch, seq)
    probability = torch.full(input_ids.shape, mlm_probability, device=device)  # (batch, seq)
    if salient_ids is not None:
        if not 0.0 <= salient_probability <= 1.0:
            raise ValueError(f"salient_probability must be in [0, 1], got {salient_probability}.")
        salient = torch.isin(input_ids, salient_ids.to(device, input_ids.dtype))
        probability = probability.masked_fill(salient, salient_probability)
    probability = probability.masked_fill(special, 0.0)
    chosen = torch.bernoulli(probability, generator=generator).bool()  # (batch, seq)
    labels = input_ids.masked_fill(~chosen, IGNORE_INDEX)  # (batch, seq)

    action = torch.rand(input_ids.shape, generator=generator, device=device)  # one draw decides each token's fate
    to_mask = chosen & (action < mask_replace_prob)
    to_random = chosen & (action >= mask_replace_prob) & (action < mask_replace_prob + random_replace_prob)
    candidates = (maskable_token_ids(tokenizer) if replacement_ids is None else replacement_ids).to(device)
    drawn = torch.randint(len(candidates), input_ids.shape, generator=generator, device=device)
    random_ids = candidates[drawn]  # (batch, seq)

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


def readable_replacement_ids(readable: torch.Tensor, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """The ids ``mask_tokens`` may swap in at random under a restricted softmax: the ordinary tokens a run reads."""
    ordinary = readable.clone()
    ordinary[tokenizer.all_special_ids] = False
    return ordinary.nonzero().flatten()


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


# ------------------------------------------------------------------------------- model and loop


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


def masked_lm_loss(
    model: nn.Module, batch: dict[str, torch.Tensor], readable: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy at the chosen positions only, and how many there are: the head runs on those rows alone.

    A ``BertForMaskedLM`` scores every position against the whole vocabulary, but only the ~15-25%
    of positions with a label count; running the head on them alone gives the same loss for less
    work (for a tiny model the head is a large share of it). ``readable`` (vocab,) limits the softmax.
    """
    hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    labels = batch["labels"]
    chosen = labels != IGNORE_INDEX  # (batch, seq)
    logits = model.cls(hidden.last_hidden_state[chosen])  # (chosen, vocab)
    if readable is not None:
        logits = logits.masked_fill(~readable, torch.finfo(logits.dtype).min)
    count = chosen.sum()
    if logits.shape[0] == 0:  # a process's share of a batch may hold no chosen position: zero, still connected
        return logits.sum(), count
    return nn.functional.cross_entropy(logits, labels[chosen]), count


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
    precision: str = "auto",
    desc: str = "MLM training",
) -> list[dict[str, Any]]:
    """Train ``model`` (a ``BertForMaskedLM``) with masked-token prediction for ``steps`` optimiser steps.

    Each batch holds ``batch_size`` texts; with ``mix_texts`` a fixed share ``round(mix_ratio * batch_size)``
    of every batch comes from them instead (replay of general text during domain pretraining). Texts
    are shuffled each epoch and padded per batch, masking uses :func:`mask_tokens`, the optimiser is
    AdamW (no decay on biases and layer norms) with linear warm-up and decay and gradient clipping,
    all run by ``training.train_loop``. ``salient_words`` turns on entity-aware masking (their tokens
    are chosen with ``salient_probability``). With ``restrict_softmax`` the prediction ranges only
    over tokens that occur in this run's texts: with tied input and output embeddings, every row that
    is never a target would otherwise be pushed the same way at every step, and all such rows would
    collapse onto one vector before the model ever reads them. ``eval_fn(model)`` runs every
    ``eval_every`` steps and at the end (in eval mode, without gradients).

    The model trains on ``device`` (default: where it is) and stays there. On the CPU, data order and
    masking share one seeded generator; on a GPU the masks are drawn on the GPU with their own.
    Under ``torchrun`` every process draws the same batch and trains on its share of the rows.
    Returns the history (``training.train_loop``'s records). The model is left in eval mode.
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
    generator = torch.Generator().manual_seed(seed)  # data order (and, on the CPU, masking) draw from this one
    masks = generator if device.type == "cpu" else torch.Generator(device).manual_seed(seed)

    main_ids = encode_texts(tokenizer, texts, max_length) if texts else []
    mix_ids = encode_texts(tokenizer, mix_texts, max_length) if n_mix else []
    vocab_size = model.get_input_embeddings().num_embeddings
    readable = occurring_token_ids(main_ids + mix_ids, vocab_size) if restrict_softmax else None  # (vocab,)
    replacements = None
    if readable is not None:  # random replacements come from the same words, so no unread row is ever input
        replacements = readable_replacement_ids(readable, tokenizer).to(device)
        readable = readable.to(device)
    salient = salient_token_ids(tokenizer, salient_words).to(device) if salient_words else None
    main_order = _shuffled_forever(len(main_ids), generator) if main_ids else None
    mix_order = _shuffled_forever(len(mix_ids), generator) if n_mix else None
    masking = {
        "mlm_probability": mlm_probability,
        "salient_ids": salient,
        "salient_probability": salient_probability,
        "replacement_ids": replacements,
        "generator": masks,
    }

    def next_batch(_step: int) -> dict[str, torch.Tensor]:
        rows = [main_ids[next(main_order)] for _ in range(batch_size - n_mix)] if main_order else []
        rows += [mix_ids[next(mix_order)] for _ in range(n_mix)]
        ids, attention = pad_batch(rows, tokenizer.pad_token_id)
        ids = ids.to(device)
        inputs, labels = mask_tokens(ids, tokenizer, **masking)
        while not (labels != IGNORE_INDEX).any():  # a tiny batch may draw no position at all
            inputs, labels = mask_tokens(ids, tokenizer, **masking)
        return {"input_ids": inputs, "attention_mask": attention, "labels": labels}

    optimizer = make_optimizer(model, lr, weight_decay=weight_decay, decay_groups=True, betas=ADAM_BETAS)
    return train_loop(
        model,
        next_batch,
        lambda m, batch: masked_lm_loss(m, batch, readable),
        optimizer,
        steps=steps,
        warmup_ratio=warmup_ratio,
        max_grad_norm=max_grad_norm,
        device=device,
        precision=precision,
        eval_every=eval_every,
        eval_fn=eval_fn,
        progress=progress,
        desc=desc,
    )


def heldout_mlm_loss(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    max_length: int,
    readable: torch.Tensor | None = None,
    salient_words: Sequence[str] | None = None,
    salient_probability: float = 0.5,
    mlm_probability: float = 0.15,
    seed: int = 0,
    batch_size: int = 64,
) -> Callable[[nn.Module], dict[str, float]]:
    """An ``eval_fn`` for ``train_mlm``: the masked-LM loss on held-out ``texts`` (record key ``valid_loss``).

    The masks are drawn once, as training draws them (the 80/10/10 rule, entity-aware with
    ``salient_words``), and scored with the same softmax (``readable``, the training run's
    ``occurring_token_ids``), so every evaluation scores the same positions the same way and the
    curve sits on the training loss's scale. A position whose token the run never reads cannot be
    predicted under that softmax; it is left out rather than scored as impossible.
    """
    generator = torch.Generator().manual_seed(seed)
    encoded = encode_texts(tokenizer, texts, max_length)
    salient = salient_token_ids(tokenizer, salient_words) if salient_words else None
    replacements = readable_replacement_ids(readable, tokenizer) if readable is not None else None
    batches = []
    for start in range(0, len(encoded), batch_size):
        ids, attention = pad_batch(encoded[start : start + batch_size], tokenizer.pad_token_id)
        inputs, labels = mask_tokens(
            ids,
            tokenizer,
            mlm_probability=mlm_probability,
            salient_ids=salient,
            salient_probability=salient_probability,
            replacement_ids=replacements,
            generator=generator,
        )
        if readable is not None:
            labels = labels.masked_fill(~readable[labels.clamp_min(0)], IGNORE_INDEX)  # never-read targets
        batches.append({"input_ids": inputs, "attention_mask": attention, "labels": labels})
    if not any((batch["labels"] != IGNORE_INDEX).any() for batch in batches):
        raise ValueError("heldout_mlm_loss drew no position to score: give it more (or longer) texts.")

    def evaluate(model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        allowed = readable.to(device) if readable is not None else None
        total, count = 0.0, 0
        for batch in batches:
            loss, n = masked_lm_loss(model, {key: value.to(device) for key, value in batch.items()}, allowed)
            total, count = total + float(loss) * int(n), count + int(n)
        return {"valid_loss": total / count}

    return evaluate


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
