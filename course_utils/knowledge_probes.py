"""Knowledge probes: what a masked language model knows about a domain's words, asked without training (06, 07).

Not to be confused with a *linear probe* (``linear_probe.fit_linear_probe``), a classifier trained on frozen features.

Each probe asks one question of a model without training it: are drugs of one class neighbours
among the encoder's vectors (``contextual_vectors``, ``same_class_neighbour_rate``, ``mean_cosine``),
does it fill in a drug's specialty (``specialty_fill_in_accuracy``), does it use a cue a sentence
gives (``cloze_choice_accuracy``), and how often did its text state each fact (``statement_counts``).
The frames they fill in live here too; the world's truth they are scored against comes from
``course_utils.world``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from course_utils.lm_metrics import evaluating
from course_utils.mlm import encode_texts
from course_utils.world import drug_specialties

#: Sentence frames that name a drug without saying anything about it: the probe of what a model
#: has learned about the drug's name itself. They come from the clinical notes' own style.
NEUTRAL_DRUG_FRAMES = (
    "{} was started at 20 mg once daily.",
    "currently taking {} twice daily.",
    "the dose of {} was increased.",
)

#: The knowledge probe: the clinical corpus states every drug's specialty in exactly this frame.
SPECIALTY_FRAME = "{} is prescribed in [MASK] clinics."


@torch.no_grad()
def contextual_vectors(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    words: Sequence[str],
    frames: Sequence[str] = NEUTRAL_DRUG_FRAMES,
) -> torch.Tensor:
    """One vector per word: the encoder's last hidden states over the word's pieces, averaged over
    its pieces and over ``frames`` (sentences with a ``{}`` where the word goes). Shape (len(words), hidden).

    The frames say nothing about the word, so whatever separates two words' vectors comes from
    what the model has learned about the words themselves.
    """
    encoder = model.base_model  # BertModel inside BertForMaskedLM
    with evaluating(model):
        device = next(model.parameters()).device
        vectors = []
        for word in words:
            pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
            per_frame = []
            for frame in frames:
                encoded = tokenizer(frame.format(word), return_tensors="pt").to(device)
                hidden = encoder(**encoded).last_hidden_state[0]  # (seq, hidden)
                ids = encoded["input_ids"][0].tolist()
                start = next(i for i in range(len(ids)) if ids[i : i + len(pieces)] == pieces)
                per_frame.append(hidden[start : start + len(pieces)].mean(0))  # (hidden,)
            vectors.append(torch.stack(per_frame).mean(0))
    return torch.stack(vectors).cpu()  # (words, hidden)


def nearest_neighbours(vectors: torch.Tensor, names: Sequence[str], query: str, k: int = 3) -> list[tuple[str, float]]:
    """The ``k`` names whose vectors have the highest cosine similarity to ``query``'s (itself excluded)."""
    unit = F.normalize(vectors, dim=-1)  # (n, hidden)
    i = list(names).index(query)
    similarity = unit @ unit[i]  # (n,)
    similarity[i] = -math.inf
    top = similarity.topk(k)
    return [(names[j], float(s)) for s, j in zip(top.values.tolist(), top.indices.tolist(), strict=True)]


def same_class_neighbour_rate(
    vectors: torch.Tensor,
    names: Sequence[str],
    classes: Mapping[str, str],
    queries: Sequence[str],
    k: int = 3,
) -> float:
    """Share of the ``k`` nearest neighbours of each query that belong to the query's own class.

    With 4 drugs in each of 12 classes, a model that knows nothing scores about 3/47 ≈ 0.06.
    """
    hits = [classes[n] == classes[q] for q in queries for n, _ in nearest_neighbours(vectors, names, q, k)]
    return sum(hits) / len(hits)


def mean_cosine(vectors: torch.Tensor) -> float:
    """The average cosine similarity between different rows of ``vectors`` (n, hidden).

    Near 0 for random vectors, near 1 when the rows have collapsed onto one direction: then the
    model can hardly tell the words apart, whatever their neighbours' classes.
    """
    unit = F.normalize(vectors, dim=-1)  # (n, hidden)
    n = len(unit)
    return float(((unit @ unit.T).sum() - n) / (n * n - n))


def fact_sentences(domain: str = "clinical") -> list[str]:
    """One true statement per drug in the probe's frame ("bravinolol is prescribed in cardiology clinics.")."""
    return [SPECIALTY_FRAME.replace("[MASK]", s).format(d) for d, s in drug_specialties(domain).items()]


@torch.no_grad()
def specialty_fill_in_accuracy(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, drugs: Sequence[str], domain: str = "clinical"
) -> float:
    """Share of ``drugs`` for which the model ranks the right specialty first in ``SPECIALTY_FRAME``.

    Only the specialties compete (the argmax runs over their tokens), so chance is one in six.
    """
    truth = drug_specialties(domain)
    choices = sorted(set(truth.values()))
    choice_ids = tokenizer.convert_tokens_to_ids(choices)
    missing = [c for c, i in zip(choices, choice_ids, strict=True) if i == tokenizer.unk_token_id]
    if missing:
        raise ValueError(
            f"The specialties {missing} are not single tokens of this vocabulary; the probe needs a tokenizer trained on clinical text."
        )
    with evaluating(model):
        device = next(model.parameters()).device
        hits = 0
        for drug in drugs:
            encoded = tokenizer(SPECIALTY_FRAME.format(drug), return_tensors="pt").to(device)
            position = encoded["input_ids"][0].tolist().index(tokenizer.mask_token_id)
            logits = model(**encoded).logits[0, position, choice_ids]  # (specialties,)
            hits += choices[int(logits.argmax())] == truth[drug]
    return hits / len(drugs)


def statement_counts(texts: Sequence[str], drugs: Sequence[str], frame: str = SPECIALTY_FRAME) -> dict[str, int]:
    """How often each drug's probed statement occurs in ``texts`` (case-insensitive, anywhere in a text).

    A statement counts when the frame's words up to its ``[MASK]`` follow the drug's name
    (``"bravinolol is prescribed in"``). Multiplied by the epochs a run makes, this is how many
    times the run could have learned the fact: the number to compare with what a model needs.
    """
    lead = frame.split("[MASK]")[0].strip()  # "{} is prescribed in"
    lowered = [text.lower() for text in texts]
    counts = {}
    for drug in drugs:
        phrase = lead.format(drug).lower()
        counts[drug] = sum(text.startswith(phrase) or f" {phrase}" in text for text in lowered)
    return counts


@torch.no_grad()
def cloze_choice_accuracy(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], choices: Sequence[str]
) -> tuple[float, int]:
    """Mask every occurrence of a ``choices`` token in ``texts`` and check the model ranks the true one first among them.

    With ``choices=("he", "she")`` on everyday sentences this asks whether the model uses the
    character a sentence names (*my grandmother said that [MASK] felt tired*): chance is one half.
    Returns ``(accuracy, number of masked positions)``. Texts longer than the model's position
    table are cut to it, as in training.
    """
    choice_ids = tokenizer.convert_tokens_to_ids(list(choices))
    if tokenizer.unk_token_id in choice_ids:
        raise ValueError(f"Every choice must be a single token of this vocabulary; got pieces for {list(choices)}.")
    with evaluating(model):
        device = next(model.parameters()).device
        hits = total = 0
        for text_ids in encode_texts(tokenizer, texts, model.config.max_position_embeddings):
            ids = torch.tensor(text_ids, device=device)  # (seq,)
            for position in (torch.isin(ids, torch.tensor(choice_ids, device=device))).nonzero().flatten().tolist():
                masked = ids.clone()
                masked[position] = tokenizer.mask_token_id
                logits = model(input_ids=masked[None]).logits[0, position, choice_ids]  # (choices,)
                hits += choice_ids[int(logits.argmax())] == int(ids[position])
                total += 1
    if total == 0:
        raise ValueError(f"None of the texts contains any of {list(choices)}: nothing to score.")
    return hits / total, total
