"""Linear probes: a logistic regression on a frozen encoder's features, and LP-FT's probe-started head.

A probe measures what the pretrained features already hold: with the encoder frozen, every text's
features are computed once (``frozen_features``) and a logistic regression is fitted on them to
convergence (``fit_linear_probe``), which is how probes are usually measured. ``warm_start_head``
fits the same kind of probe to start a classifier's head before fine-tuning (LP-FT). Not to be
confused with the knowledge probes of ``course_utils.knowledge_probes``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from transformers import BertModel

from course_utils.classifier import EncodedSplit, SequenceClassifier, batch_of, mean_pool
from course_utils.training import evaluating, model_device

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
            batch = batch_of(split, torch.arange(start, min(start + batch_size, len(split))), device)
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
            batch = batch_of(train, torch.arange(start, min(start + 256, len(train))), device)
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
