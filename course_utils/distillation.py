"""Knowledge distillation: a small student learns from a large teacher's softened predictions.

The teacher's logits divided by a temperature ``T`` and passed through softmax give a soft target
that says not only which label is right but how the others rank (Hinton et al., 2015). The
student is trained on a mix of two losses::

    loss = alpha * T² * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, labels)

The gradient of the soft term shrinks as 1/T², so multiplying by T² keeps its weight against
the hard term the same at every temperature. ``distillation_loss`` is the one implementation;
``distill`` runs it in ``finetuning.train_classifier`` and ``DistillationTrainer`` in Hugging Face's
``Trainer``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel, Trainer

from course_utils.classifier import EncodedSplit, SequenceClassifier
from course_utils.data import load_task
from course_utils.finetuning import train_classifier
from course_utils.profiles import Profile, get_profile

#: Defaults: a moderate temperature, and the soft and hard losses weighted equally.
TEMPERATURE = 2.0
ALPHA = 0.5


def soften(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) over the last dimension: T > 1 flattens the distribution, T < 1 sharpens it."""
    if temperature <= 0:
        raise ValueError(f"The temperature must be positive, got {temperature!r}.")
    return F.softmax(logits / temperature, dim=-1)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = TEMPERATURE,
    alpha: float = ALPHA,
) -> torch.Tensor:
    """``alpha`` · T² · KL(teacher_T ‖ student_T) + (1 − ``alpha``) · cross-entropy with ``labels``.

    Logits are (batch, num_labels) and labels (batch,). The KL term is averaged over the batch
    (``batchmean``, the mathematically correct reduction); ``alpha=0`` is ordinary training.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha weights the soft loss and must lie in [0, 1], got {alpha!r}.")
    log_student = F.log_softmax(student_logits / temperature, dim=-1)  # (batch, labels)
    teacher = soften(teacher_logits, temperature)  # (batch, labels)
    soft = F.kl_div(log_student, teacher, reduction="batchmean") * temperature**2
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1.0 - alpha) * hard


def distill(
    student: nn.Module,
    train: EncodedSplit,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = TEMPERATURE,
    alpha: float = ALPHA,
    **options: Any,
) -> list[dict[str, Any]]:
    """Train ``student`` on ``train`` with ``distillation_loss`` against ``teacher_logits`` (n, num_labels).

    The rest of ``options`` goes to ``train_classifier`` (lr, epochs, batch size, seed…), so a
    distilled student and one trained on hard labels differ in the loss and nothing else.
    """

    def loss_fn(logits: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return distillation_loss(logits, targets, labels, temperature, alpha)

    return train_classifier(student, train, loss_fn=loss_fn, targets=teacher_logits, **options)


class DistillationTrainer(Trainer):
    """A ``Trainer`` whose loss is ``distillation_loss`` against a frozen ``teacher``'s logits.

    The teacher is put in eval mode, frozen and moved to the trainer's device (``args.device``), in
    place, like the student the ``Trainer`` moves: batches passed to ``compute_loss`` by hand must be
    on that device too.
    """

    def __init__(
        self, *args: Any, teacher: nn.Module, temperature: float = TEMPERATURE, alpha: float = ALPHA, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval().to(self.args.device)
        self.teacher.requires_grad_(False)
        self.temperature, self.alpha = temperature, alpha

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        with torch.no_grad():
            teacher_logits = self.teacher(**inputs).logits
        loss = distillation_loss(outputs.logits, teacher_logits, labels, self.temperature, self.alpha)
        return (loss, outputs) if return_outputs else loss


def student_config(
    teacher: BertConfig, *, hidden_size: int, num_layers: int, num_heads: int | None = None
) -> BertConfig:
    """The teacher's config at a smaller width and depth. The feed-forward block keeps the teacher's
    ratio to the width; vocabulary, positions and dropout stay the same, so the tokenizer still fits."""
    heads = num_heads or max(1, min(teacher.num_attention_heads, hidden_size // 16))
    if hidden_size % heads:
        raise ValueError(f"hidden_size {hidden_size} must be divisible by the number of heads ({heads}).")
    config = copy.deepcopy(teacher)
    config.hidden_size, config.num_hidden_layers, config.num_attention_heads = hidden_size, num_layers, heads
    config.intermediate_size = teacher.intermediate_size * hidden_size // teacher.hidden_size
    return config


def random_student(config: BertConfig, num_labels: int, *, pooling: str = "mean", seed: int = 0) -> SequenceClassifier:
    """A classifier of ``config``'s size with every weight drawn at random from ``seed``."""
    torch.manual_seed(seed)
    return SequenceClassifier(BertModel(config, add_pooling_layer=False), num_labels, pooling)


def student_from_teacher(teacher: SequenceClassifier, layers: Sequence[int]) -> SequenceClassifier:
    """A shallower copy of ``teacher`` that keeps its embeddings, head and the encoder ``layers`` named
    (DistilBERT keeps every second layer of BERT): the student starts from the teacher's weights."""
    if not layers or any(not 0 <= i < teacher.config.num_hidden_layers for i in layers):
        raise ValueError(
            f"layers must name some of the teacher's {teacher.config.num_hidden_layers} layers, got {list(layers)}."
        )
    student = copy.deepcopy(teacher)
    student.encoder.encoder.layer = nn.ModuleList(student.encoder.encoder.layer[i] for i in layers)
    student.encoder.config.num_hidden_layers = len(layers)
    return student.train()


def unlabeled_notes(task: str, profile: str | Profile, seed: int, n: int) -> list[str]:
    """``n`` more notes from the task's generator, after its training notes: unlabeled text for the teacher to label.

    They come from the training split's own random stream, so they follow its distribution,
    hold none of ``unseen_entities``' held-out entities, and overlap no training note by construction.
    """
    p = get_profile(profile)
    more = load_task(task, get_profile(p, task_train=p.task_train + n), seed)["train"]
    return list(more["text"][p.task_train :])
