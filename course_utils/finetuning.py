"""Fine-tuning a classifier: ``train_classifier``, the one loop every strategy shares.

Full fine-tuning trains everything; ``course_utils.strategies`` adds partial, BitFit, adapter and
LoRA variants by choosing which parameters train. They all call ``train_classifier``, so a
comparison between them changes what trains and nothing else. It says how a batch is drawn and
what the loss is; the loop itself is ``training.train_loop``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from course_utils.classifier import EncodedSplit, batch_of
from course_utils.training import BatchOrder, make_optimizer, train_loop


def train_classifier(
    model: nn.Module,
    train: EncodedSplit,
    *,
    lr: float,
    epochs: int,
    batch_size: int = 32,
    min_steps: int = 0,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.1,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    desc: str = "Fine-tuning",
    optimizer_name: str = "adamw",
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    targets: torch.Tensor | None = None,
    group_by_length: bool = True,
    precision: str = "auto",
) -> list[dict[str, Any]]:
    """Train ``model`` on ``train`` (AdamW by default), linear warm-up and decay; one record per step.

    Only parameters with ``requires_grad`` train, which is how every strategy (full, probe,
    partial, adapters) is expressed. ``optimizer_name`` picks one of ``training.OPTIMIZERS`` (AdamW
    unless a comparison asks for another); weight decay applies to every trained parameter and the
    gradient is not clipped (the course's fine-tuning recipe). The run lasts ``epochs`` passes or
    ``min_steps`` steps, whichever is longer: a tiny training set gets enough updates to fit at all.

    The loss is the model's own cross-entropy unless ``loss_fn(logits, targets[rows], labels)`` is
    given, with ``targets`` one row per training example: distillation passes the teacher's logits.
    Batches group notes of similar length (``training.shuffled_epoch``) unless ``group_by_length``
    is off. The loop is ``training.train_loop``: the model trains on ``device`` (default: where it
    is) and stays there, in eval mode.
    """
    if len(train) == 0:
        raise ValueError("The training split is empty.")
    if (loss_fn is None) != (targets is None) or (targets is not None and len(targets) != len(train)):
        raise ValueError("loss_fn and targets go together, with one row of targets per training example.")
    steps = max(min_steps, epochs * math.ceil(len(train) / batch_size))
    optimizer = make_optimizer(model, lr, name=optimizer_name, weight_decay=weight_decay)
    torch.manual_seed(seed)  # dropout
    order = BatchOrder(train.attention_mask.sum(1), batch_size, torch.Generator().manual_seed(seed), group_by_length)

    def next_batch(_step: int) -> dict[str, torch.Tensor]:
        index = order.next()
        batch = batch_of(train, index)
        if targets is not None:
            batch["targets"] = targets[index]
        return batch

    def classification_loss(m: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        if loss_fn is None:
            return m(**batch).loss, len(batch["labels"])
        logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return loss_fn(logits, batch["targets"], batch["labels"]), len(batch["labels"])

    return train_loop(
        model,
        next_batch,
        classification_loss,
        optimizer,
        steps=steps,
        warmup_ratio=warmup_ratio,
        device=device,
        precision=precision,
        progress=progress,
        desc=desc,
        leave=False,
    )
