"""A text classifier on a pretrained encoder: the model, its inputs, its predictions, its saved form.

A classifier is an encoder (``BertModel``) whose token vectors are pooled into one vector per
text and fed to a linear layer. It is trained by ``finetuning.train_classifier`` (every strategy of
``course_utils.strategies`` included); a linear probe fits its head on frozen features instead
(``linear_probe``). Labeled texts are tokenized once into an ``EncodedSplit``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import BertConfig, BertModel, PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import SequenceClassifierOutput

from course_utils.training import evaluating, model_device

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


def load_classifier(
    folder: str | Path, prepare: Callable[[SequenceClassifier], SequenceClassifier] | None = None
) -> SequenceClassifier:
    """A ``save_classifier`` folder as a ``SequenceClassifier`` in eval mode; a clear error if files are missing.

    ``prepare`` runs on the rebuilt model before its weights are loaded: a strategy that added modules
    (LoRA, adapters) adds them again, so that the saved weights fit.
    """
    folder = Path(folder)
    missing = [n for n in ("config.json", "model.safetensors", CLASSIFIER_FILE) if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a saved classifier: {', '.join(missing)} missing (see save_classifier)."
        )
    meta = json.loads((folder / CLASSIFIER_FILE).read_text())
    encoder = BertModel(BertConfig.from_json_file(str(folder / "config.json")), add_pooling_layer=False)
    model = SequenceClassifier(encoder, meta["num_labels"], meta["pooling"])
    if prepare is not None:
        model = prepare(model)
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


def batch_of(split: EncodedSplit, index: torch.Tensor, device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """Rows ``index`` of a split, trimmed to their longest text, on ``device`` (default: left on the CPU)."""
    attention = split.attention_mask[index]
    longest = int(attention.sum(1).max())
    rows = {
        "input_ids": split.input_ids[index, :longest],
        "attention_mask": attention[:, :longest],
        "labels": split.labels[index],
    }
    return rows if device is None else {key: value.to(device) for key, value in rows.items()}


@torch.no_grad()
def predict_logits(model: nn.Module, split: EncodedSplit, batch_size: int = 256) -> torch.Tensor:
    """Logits for every row of ``split``, (n, num_labels), in eval mode (no dropout), computed on the
    model's device and returned on the CPU."""
    device = model_device(model)
    out = []
    with evaluating(model):
        for start in range(0, len(split), batch_size):
            batch = batch_of(split, torch.arange(start, min(start + batch_size, len(split))), device)
            batch.pop("labels")
            out.append(model(**batch).logits.float().cpu())
    return torch.cat(out)
