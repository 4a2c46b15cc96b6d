"""Fine-tuning a pretrained encoder for text classification: the one loop every strategy shares.

A classifier is an encoder (``BertModel``) whose token vectors are pooled into one vector per
text and fed to a linear layer. Full fine-tuning trains everything; ``course_utils.strategies``
adds partial, BitFit, adapter and LoRA variants by choosing which parameters train. They all call
``train_classifier``, so a comparison between them changes what trains and nothing else.

A linear probe is the one exception: with the encoder frozen, every text's features can be
computed once (``frozen_features``) and a logistic regression fitted on them to convergence
(``fit_linear_probe``), which is how probes are usually measured.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from transformers import BertConfig, BertModel, PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import SequenceClassifierOutput

from course_utils.training import BatchOrder, evaluating, make_optimizer, model_device, train_loop

#: How token vectors become one vector per text: the mean over real tokens, or the [CLS] vector
#: passed through a dense layer and tanh (``BertForSequenceClassification``'s pooler).
POOLINGS = ("mean", "cls")


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the token vectors (batch, seq, hidden) over real tokens only: (batch, hidden)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


class SequenceClassifier(nn.Module):
    """Encoder → pooled vector → dropout → linear: logits of shape (batch, num_labels).

    ``forward`` takes ``labels`` and returns a loss like a Hugging Face model, so the same object
    trains in ``train_classifier`` and in ``transformers.Trainer``.
    """

    def __init__(self, encoder: BertModel, num_labels: int, pooling: str = "mean", dropout: float = 0.1):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"Unknown pooling {pooling!r}; choose one of {POOLINGS}.")
        hidden = encoder.config.hidden_size
        self.encoder, self.pooling, self.num_labels = encoder, pooling, num_labels
        self.pooler = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh()) if pooling == "cls" else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_labels)

    @property
    def config(self) -> BertConfig:
        return self.encoder.config

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One vector per text, (batch, hidden): what the linear head (or a probe) reads."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (b, seq, h)
        if self.pooling == "cls":
            return self.pooler(hidden[:, 0])  # (batch, hidden)
        return mean_pool(hidden, attention_mask)  # (batch, hidden)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None
    ) -> SequenceClassifierOutput:
        logits = self.head(self.dropout(self.features(input_ids, attention_mask)))  # (batch, num_labels)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def classifier_from(
    source: PreTrainedModel | BertConfig, num_labels: int, *, pooling: str = "mean", seed: int = 0
) -> SequenceClassifier:
    """A classifier whose encoder starts from ``source``'s weights (a masked LM), or at random (a config).

    Only the encoder is copied: the masked LM's prediction head has no use here, and the new
    layers (pooler, head) are initialised from ``seed``, so two starting points differ only in
    the encoder they bring.
    """
    config = source if isinstance(source, BertConfig) else source.config
    torch.manual_seed(seed)
    encoder = BertModel(config, add_pooling_layer=False)
    if not isinstance(source, BertConfig):
        encoder.load_state_dict(source.base_model.state_dict(), strict=False)
    return SequenceClassifier(encoder, num_labels, pooling)


CLASSIFIER_FILE = "classifier.json"


def save_classifier(model: SequenceClassifier, folder: str | Path, labels: Sequence[str] = ()) -> Path:
    """Write a classifier to ``folder``: the encoder's config.json, the weights as model.safetensors
    and classifier.json (pooling, label names), so ``load_classifier`` rebuilds it without pickle."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(str(folder / "config.json"))
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    meta = {"num_labels": model.num_labels, "pooling": model.pooling, "labels": list(labels)}
    (folder / CLASSIFIER_FILE).write_text(json.dumps(meta))
    return folder


def load_classifier(folder: str | Path) -> SequenceClassifier:
    """A ``save_classifier`` folder as a ``SequenceClassifier`` in eval mode; a clear error if files are missing."""
    folder = Path(folder)
    missing = [n for n in ("config.json", "model.safetensors", CLASSIFIER_FILE) if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a saved classifier: {', '.join(missing)} missing (see save_classifier)."
        )
    meta = json.loads((folder / CLASSIFIER_FILE).read_text())
    encoder = BertModel(BertConfig.from_json_file(str(folder / "config.json")), add_pooling_layer=False)
    model = SequenceClassifier(encoder, meta["num_labels"], meta["pooling"])
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval()


def freeze_encoder(model: SequenceClassifier) -> SequenceClassifier:
    """Stop gradients into the encoder (a linear probe): only the pooler and head still train."""
    for parameter in model.encoder.parameters():
        parameter.requires_grad_(False)
    return model


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts: the first column of every fine-tuning table."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


@dataclass
class EncodedSplit:
    """A labeled split as padded tensors: input_ids and attention_mask (n, longest), labels (n,)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Sequence[int]) -> EncodedSplit:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return EncodedSplit(self.input_ids[index], self.attention_mask[index], self.labels[index])

    @staticmethod
    def concat(*parts: EncodedSplit) -> EncodedSplit:
        """Several splits as one (labeled notes plus extra ones), each padded to the longest of them."""
        width = max(part.input_ids.shape[1] for part in parts)

        def pad(t: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.pad(t, (0, width - t.shape[1]))  # pad id and mask are both 0

        return EncodedSplit(
            torch.cat([pad(part.input_ids) for part in parts]),
            torch.cat([pad(part.attention_mask) for part in parts]),
            torch.cat([part.labels for part in parts]),
        )


def encode_split(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], labels: Sequence[int], max_length: int
) -> EncodedSplit:
    """Tokenize a split once, padded to its longest text (batches are trimmed again when drawn)."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    return EncodedSplit(encoded["input_ids"], encoded["attention_mask"], torch.tensor(list(labels)))


def labeled_subset(labels: Sequence[int], per_class: int | None, seed: int = 0) -> list[int]:
    """Indices of ``per_class`` examples of every label, drawn with ``seed`` (all indices when ``None``).

    A low-resource experiment keeps the classes balanced, so that a small training set still
    shows every label; a label with fewer examples contributes all it has.
    """
    if per_class is None:
        return list(range(len(labels)))
    if per_class < 1:
        raise ValueError(f"per_class must be a positive number of examples or None, got {per_class}.")
    generator = torch.Generator().manual_seed(seed)
    chosen: list[int] = []
    for label in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == label]
        order = torch.randperm(len(members), generator=generator).tolist()
        chosen.extend(members[j] for j in order[:per_class])
    return sorted(chosen)


def _rows(split: EncodedSplit, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rows ``index`` of a split, trimmed to their longest text (still on the CPU)."""
    attention = split.attention_mask[index]
    longest = int(attention.sum(1).max())
    return {
        "input_ids": split.input_ids[index, :longest],
        "attention_mask": attention[:, :longest],
        "labels": split.labels[index],
    }


def _batch(split: EncodedSplit, index: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """Rows ``index`` of a split, trimmed to their longest text, on ``device``."""
    return {key: value.to(device) for key, value in _rows(split, index).items()}


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
        batch = _rows(train, index)
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


#: Which hidden states a linear probe reads: the last layer's, or every layer's (the input
#: embeddings included) side by side, as BERT's feature-based experiments concatenate layers.
PROBE_LAYERS = ("last", "all")
#: The probe's inverse regularisation strengths, chosen on validation.
PROBE_C = (0.01, 0.1, 1.0, 10.0)


@torch.no_grad()
def frozen_features(
    encoder: BertModel, split: EncodedSplit, *, layers: str = "all", batch_size: int = 256
) -> np.ndarray:
    """Mean-pooled hidden states of a frozen encoder: (n, hidden), or (n, (layers + 1) * hidden) for ``"all"``.

    Lower layers keep more of which words a text contains; the top layer is shaped by the
    pretraining objective. Reading all of them lets a probe use whichever carries the label.
    """
    if layers not in PROBE_LAYERS:
        raise ValueError(f"Unknown layers {layers!r}; choose one of {PROBE_LAYERS}.")
    device = model_device(encoder)
    out = []
    with evaluating(encoder):
        for start in range(0, len(split), batch_size):
            batch = _batch(split, torch.arange(start, min(start + batch_size, len(split))), device)
            states = encoder(batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
            chosen = states.hidden_states if layers == "all" else states.hidden_states[-1:]
            pooled = [mean_pool(h.float(), batch["attention_mask"]) for h in chosen]  # each (batch, hidden)
            out.append(torch.cat(pooled, -1).cpu())
    return torch.cat(out).numpy()


def fit_linear_probe(
    train_x: np.ndarray, train_y: Sequence[int], valid_x: np.ndarray, valid_y: Sequence[int], seed: int = 0
) -> tuple[Pipeline, float]:
    """A standardised logistic regression on frozen features, its ``C`` chosen on validation accuracy.

    Returns the fitted pipeline and the chosen ``C``. Standardising matters: a pretrained encoder's
    features have a few dimensions much larger than the rest, which would dominate the penalty.
    """
    best: tuple[float, float, Pipeline] | None = None
    for c in PROBE_C:
        # Newton's method reaches the same optimum as the default L-BFGS in a handful of steps: at a
        # few hundred features its Hessian is small, and weakly regularised probes converge far faster
        solver = LogisticRegression(C=c, solver="newton-cholesky", max_iter=100, random_state=seed)
        probe = make_pipeline(StandardScaler(), solver)
        probe.fit(train_x, list(train_y))
        score = probe.score(valid_x, list(valid_y))
        if best is None or score > best[0]:
            best = (score, c, probe)
    assert best is not None
    return best[2], best[1]


#: Inverse regularisation of the warm-start head: strong enough that the head's logits stay moderate,
#: so the first fine-tuning steps still move the encoder.
WARM_START_C = 1.0


@torch.no_grad()
def warm_start_head(
    model: SequenceClassifier, train: EncodedSplit, *, c: float = WARM_START_C, seed: int = 0
) -> SequenceClassifier:
    """Set the head to a logistic regression fitted on the frozen encoder's features (LP-FT's first step).

    A random head sends random gradients into the encoder: on a few labeled notes, fine-tuning then
    reshapes the features of the words it sees and leaves the words it never sees behind, so
    what pretraining knew about those is lost. Starting from a head that already reads the
    pretrained features keeps the two aligned (Kumar et al., 2022, "Fine-tuning can distort
    pretrained features"). The pooler of a ``cls`` head stays as initialised.
    """
    device = model_device(model)
    rows = []
    with evaluating(model):  # features on the model's own device, read back for scikit-learn
        for start in range(0, len(train), 256):
            batch = _batch(train, torch.arange(start, min(start + 256, len(train))), device)
            rows.append(model.features(batch["input_ids"], batch["attention_mask"]).float().cpu())
    features, labels = torch.cat(rows).numpy(), train.labels.tolist()  # (n, hidden)
    probe = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(features, labels)
    weight = torch.zeros_like(model.head.weight)  # (num_labels, hidden): classes absent from train keep 0
    bias = torch.full_like(model.head.bias, -10.0)  # ... and a logit far below the others
    coef = torch.as_tensor(probe.coef_, dtype=weight.dtype, device=weight.device)
    intercept = torch.as_tensor(probe.intercept_, dtype=bias.dtype, device=bias.device)
    if len(probe.classes_) == 2:  # scikit-learn keeps one row for two classes: split it symmetrically
        coef, intercept = torch.cat([-coef, coef]) / 2, torch.cat([-intercept, intercept]) / 2
    for row, label in enumerate(probe.classes_):
        weight[label], bias[label] = coef[row], intercept[row]
    model.head.weight.copy_(weight)
    model.head.bias.copy_(bias)
    return model


@torch.no_grad()
def predict_logits(model: nn.Module, split: EncodedSplit, batch_size: int = 256) -> torch.Tensor:
    """Logits for every row of ``split``, (n, num_labels), in eval mode (no dropout), computed on the
    model's device and returned on the CPU."""
    device = model_device(model)
    out = []
    with evaluating(model):
        for start in range(0, len(split), batch_size):
            batch = _batch(split, torch.arange(start, min(start + batch_size, len(split))), device)
            batch.pop("labels")
            out.append(model(**batch).logits.float().cpu())
    return torch.cat(out)
