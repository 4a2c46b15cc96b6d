"""The training core: the one loop under every model the course trains.

Masked-LM pretraining (``course_utils.mlm``), classifier fine-tuning and distillation
(``course_utils.finetuning``, ``course_utils.distillation``) and prompt-based fine-tuning
(``course_utils.prompting``) each say only what is theirs: how a batch is drawn and what the loss
is. This loop owns the rest, so it is written once:

* the **device** (the model's own unless one is passed) and, on CUDA, **mixed precision**
  (bf16 where the card supports it, else fp16 with a gradient scaler) and TF32 matrix products;
* the **optimiser** (``make_optimizer``: AdamW, RMSprop or SGD, optionally without weight decay on
  biases and layer norms) and the **schedule** (linear warm-up, then linear decay to zero);
* **gradient clipping**, **eval mode during evaluation** (``evaluating``), a progress bar, and a
  history that reads the loss back from the device only every few steps, not at every one;
* **data parallelism**: started under ``torchrun`` (or ``accelerate launch``), every process draws
  the same global batch, keeps its share of the rows, and ``DistributedDataParallel`` averages the
  gradients, weighted so that the update equals one process's update on the whole batch.

Notebook 02 writes a training loop by hand, to teach it, and checks that this one, with its extras
off, takes exactly the same steps.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

#: A loss function of the core: (model, batch) -> (mean loss over the batch's items, number of items).
#: The count (rows, or masked positions) only matters when several processes share a batch.
LossFn = Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, Any]]

#: The optimisers a run can use. AdamW decouples weight decay from the gradient step; RMSprop and
#: SGD (with momentum) take it as an L2 penalty.
OPTIMIZERS = ("adamw", "rmsprop", "sgd")
#: How often (in steps) the history's losses are read back from the device, and the bar updated.
LOG_EVERY = 10
#: The precisions a run can ask for; ``auto`` is bf16 or fp16 autocast on CUDA and fp32 elsewhere.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (no dropout) inside the block, then the mode the model had before, even after an error."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter: where its inputs must be."""
    return next(model.parameters()).device


def make_optimizer(
    model: nn.Module,
    lr: float,
    *,
    name: str = "adamw",
    weight_decay: float = 0.01,
    decay_groups: bool = False,
    betas: tuple[float, float] | None = None,
) -> torch.optim.Optimizer:
    """An optimiser over the parameters that require a gradient.

    ``decay_groups`` exempts biases and LayerNorm weights from weight decay (shrinking those only
    hurts); ``betas`` sets AdamW's moment decays (default PyTorch's (0.9, 0.999)). Every optimiser
    updates all its tensors at once (``foreach``): the same numbers as one tensor at a time, and on a
    CPU, where PyTorch does not choose it by default, a small model's steps take about a tenth less time.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; choose one of {list(OPTIMIZERS)}.")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("No parameter of the model requires a gradient: there is nothing to train.")
    if decay_groups:
        exempt = [p for n, p in named if p.ndim < 2 or "LayerNorm" in n]
        decay = [p for n, p in named if not (p.ndim < 2 or "LayerNorm" in n)]
        params: Any = [{"params": decay, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]
    else:
        params = [p for _, p in named]
    if name == "adamw":
        return torch.optim.AdamW(
            params, lr=lr, weight_decay=weight_decay, foreach=True, **({"betas": betas} if betas else {})
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay, foreach=True)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, foreach=True)


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


#: Length grouping sorts each run of this many batches by length before cutting it into batches.
LENGTH_GROUP_BATCHES = 16


def shuffled_epoch(
    lengths: torch.Tensor, batch_size: int, generator: torch.Generator, group_by_length: bool
) -> list[int]:
    """One pass over the rows in random order; with ``group_by_length``, similar lengths share a batch.

    A batch is padded to its longest text, and compute grows with that length, so a batch of
    short notes beside one long note pays for the long one 32 times. Sorting each run of
    ``LENGTH_GROUP_BATCHES`` shuffled batches by length keeps the order random from run to run
    while most batches hold notes of similar length (Hugging Face's ``group_by_length`` does the
    same with runs of 50 batches). On the course's notes it shortens the average batch by about a third.
    """
    order = torch.randperm(len(lengths), generator=generator)  # (n,)
    if not group_by_length:
        return order.tolist()
    window = LENGTH_GROUP_BATCHES * batch_size
    runs = [chunk[lengths[chunk].argsort(stable=True)] for chunk in order.split(window)]
    return torch.cat(runs).tolist()


class BatchOrder:
    """Row indices, ``batch_size`` at a time, epoch after epoch, each epoch a fresh ``shuffled_epoch``."""

    def __init__(self, lengths: torch.Tensor, batch_size: int, generator: torch.Generator, group_by_length: bool):
        self.lengths, self.batch_size, self.generator = lengths, batch_size, generator
        self.group_by_length = group_by_length
        self.pending: list[int] = []

    def next(self) -> torch.Tensor:
        """The next batch's row indices, (batch_size,)."""
        if len(self.pending) < self.batch_size:
            self.pending += shuffled_epoch(self.lengths, self.batch_size, self.generator, self.group_by_length)
        index, self.pending = self.pending[: self.batch_size], self.pending[self.batch_size :]
        return torch.tensor(index)


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The dtype of mixed-precision compute on ``device`` (``None``: plain fp32).

    ``auto`` uses bf16 on a CUDA card that supports it (same range as fp32, no loss scaling needed),
    fp16 on older cards, and fp32 on the CPU and MPS, where tiny models gain nothing from it.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose one of {list(PRECISIONS)}.")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def enable_tf32() -> None:
    """Let CUDA matrix products use TF32 (Ampere and newer): several times faster, ample precision for training."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def distributed() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless a launcher started several."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _LossModule(nn.Module):
    """The model and its loss as one module, so that ``DistributedDataParallel`` sees the whole forward pass."""

    def __init__(self, model: nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        loss, count = self.loss_fn(self.model, batch)
        return loss, torch.as_tensor(count, dtype=torch.float32, device=loss.device)


def _shard(batch: dict[str, torch.Tensor], rank: int, world: int) -> dict[str, torch.Tensor]:
    """This process's rows of a global batch: every ``world``-th row, starting at ``rank``."""
    return {key: value[rank::world] for key, value in batch.items()}


def train_loop(
    model: nn.Module,
    next_batch: Callable[[int], dict[str, torch.Tensor]],
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    *,
    steps: int,
    warmup_ratio: float = 0.1,
    constant_lr: bool = False,
    max_grad_norm: float | None = None,
    device: str | torch.device | None = None,
    precision: str = "auto",
    eval_every: int | None = None,
    eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
    progress: bool = True,
    desc: str = "Training",
    leave: bool = True,
) -> list[dict[str, Any]]:
    """Train ``model`` for ``steps`` optimiser steps; one record per step.

    ``next_batch(step)`` gives the step's whole batch (a dict of tensors, rows first);
    ``loss_fn(model, batch)`` its mean loss and item count. The learning rate warms up over
    ``warmup_ratio`` of the steps and decays linearly to zero (``constant_lr`` keeps it fixed);
    ``max_grad_norm`` clips the gradient's norm. ``eval_fn(model)`` runs every ``eval_every`` steps
    and at the end, in eval mode and without gradients; its results join that step's record.

    The model is moved to ``device`` (default: where it is) and left there, in eval mode. Records
    hold ``step``, ``loss``, ``lr``, ``tokens`` (non-padding tokens so far, when the batch has an
    ``attention_mask``), ``seconds`` (training time so far, evaluation excluded) and ``tokens_per_s``.
    """
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}.")
    device = torch.device(device) if device is not None else model_device(model)
    model.to(device).train()
    rank, world = distributed()
    if world > 1:
        device_ids = None  # on the CPU, DDP takes none
        if device.type == "cuda":
            device_ids = [device.index if device.index is not None else torch.cuda.current_device()]
        forward: nn.Module = nn.parallel.DistributedDataParallel(_LossModule(model, loss_fn), device_ids=device_ids)
    else:
        forward = _LossModule(model, loss_fn)
    dtype = autocast_dtype(device, precision)
    if device.type == "cuda" and precision != "fp32":  # fp32 asked for explicitly means full fp32
        enable_tf32()
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    warmup = max(1, round(warmup_ratio * steps))
    factor = (lambda _step: 1.0) if constant_lr else linear_warmup_decay(steps, warmup)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    history: list[dict[str, Any]] = []
    pending: list[torch.Tensor] = []  # losses of the steps not yet read back from the device
    tokens_seen, train_seconds = 0, 0.0
    bar = tqdm(total=steps, desc=desc, disable=not progress or rank > 0, leave=leave)
    for step in range(1, steps + 1):
        start = time.perf_counter()
        batch = next_batch(step)  # the global batch, the same in every process
        if "attention_mask" in batch:
            tokens_seen += int(batch["attention_mask"].sum())
        local = _shard(batch, rank, world) if world > 1 else batch
        local = {key: value.to(device, non_blocking=True) for key, value in local.items()}
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss, count = forward(local)
        if world > 1:  # weight each process's mean by its share of the items, so the update is the global mean's
            totals = torch.stack([loss.detach().float() * count, count])
            dist.all_reduce(totals)
            logged = totals[0] / totals[1]
            loss = loss * count / totals[1] * world  # DDP divides the summed gradients by world
        else:
            logged = loss.detach()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if max_grad_norm is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm, foreach=True)
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        pending.append(logged)
        train_seconds += time.perf_counter() - start
        entry: dict[str, Any] = {
            "step": step,
            "loss": math.nan,  # filled in when read back from the device
            "lr": optimizer.param_groups[0]["lr"],
            "tokens": tokens_seen,
            "seconds": train_seconds,
            "tokens_per_s": tokens_seen / train_seconds,
        }
        history.append(entry)
        evaluate = eval_fn is not None and ((eval_every and step % eval_every == 0) or step == steps)
        if step % LOG_EVERY == 0 or step == steps or evaluate:
            _read_back(history, pending, step, bar)
        if evaluate:
            assert eval_fn is not None
            with evaluating(model), torch.no_grad():
                entry.update(eval_fn(model))
        bar.update(1)
    bar.close()
    model.eval()
    return history


def _read_back(history: list[dict[str, Any]], pending: list[torch.Tensor], step: int, bar: Any) -> None:
    """Copy the pending losses into their records (one device sync), and stop on a loss that is not finite."""
    values = torch.stack(pending).tolist()
    for entry, value in zip(history[-len(values) :], values, strict=True):
        entry["loss"] = value
    pending.clear()
    last = history[-1]
    bar.set_postfix(loss=f"{last['loss']:.3f}", tok_s=f"{last['tokens_per_s']:,.0f}")
    bad = next((e for e in history[-len(values) :] if not math.isfinite(e["loss"])), None)
    if bad is not None:
        bar.close()
        raise FloatingPointError(f"The loss became {bad['loss']} at step {bad['step']}; lower the learning rate.")
