"""Domain-adaptive and task-adaptive pretraining (notebook 06): the recipe, its yardsticks, its probes.

Continued pretraining is plain masked-language modelling started from a trained model instead of a
random one. What changes is the text (a domain corpus for DAPT, the task's own unlabeled inputs for
TAPT) and what we watch while it runs: pseudo-perplexity on held-out text of the new domain (it
should fall) and of the old one (it rises when the model forgets). Mixing old text back into every
batch (replay) is the simplest guard against forgetting.

The artifact builders (``get_dapt_bert`` / ``get_tapt_bert`` in ``course_utils.artifacts``) and the
notebook call the same ``continue_pretraining`` so that a cached model and an inline run differ only
in the text they are given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from course_utils.data import list_tasks, load_corpus, load_task
from course_utils.evaluation import evaluating, pseudo_perplexity
from course_utils.profiles import Profile, get_profile
from course_utils.training import encode_texts, train_mlm
from course_utils.world import held_out_entities, load_domain

#: Peak learning rate of continued pretraining: half the general BERT's, because the model is
#: already trained and large steps would erase more of what it knows than the new text requires.
CONTINUED_LR = 5e-4
#: Warm-up share of the steps (as for the general BERT: the optimiser's moments start at zero).
CONTINUED_WARMUP = 0.1
#: How many evaluations a run records along the way (plus one at the end).
EVALUATIONS_PER_RUN = 5

#: Sentence frames that name a drug without saying anything about it: the probe of what a model
#: has learned about the drug's name itself. They come from the clinical notes' own style.
NEUTRAL_DRUG_FRAMES = (
    "{} was started at 20 mg once daily.",
    "currently taking {} twice daily.",
    "the dose of {} was increased.",
)


#: The knowledge probe: the clinical corpus states every drug's specialty in exactly this frame.
SPECIALTY_FRAME = "{} is prescribed in [MASK] clinics."


def _profile(profile: str | Profile) -> Profile:
    return get_profile(profile)


# ------------------------------------------------------------------------------------ the texts


def held_out_texts(domain: str, profile: str | Profile, seed: int = 0, n: int | None = None) -> list[str]:
    """The first ``n`` sentences (default ``profile.dapt_eval_texts``) of a corpus's validation split.

    Pretraining reads only the train split, so these are sentences no model has seen; the same
    few dozen are used for every model, which makes their pseudo-perplexities comparable.
    """
    p = _profile(profile)
    n = p.dapt_eval_texts if n is None else n
    return list(load_corpus(domain, p, seed, split="validation")["text"][:n])


def task_texts(task: str, profile: str | Profile, seed: int = 0, split: str = "train") -> list[str]:
    """The texts of a labeled task's split with the labels dropped: TAPT's corpus (``split="train"``)."""
    return list(load_task(task, _profile(profile), seed)[split]["text"])


def held_out_task_texts(task: str, profile: str | Profile, seed: int = 0, n: int | None = None) -> list[str]:
    """The first ``n`` validation texts of a task (default ``profile.dapt_eval_texts``): TAPT's yardstick."""
    p = _profile(profile)
    return task_texts(task, p, seed, "validation")[: p.dapt_eval_texts if n is None else n]


def task_domain(task: str) -> str:
    """The domain a generated task belongs to (``"clinical_specialty"`` and ``"clinical"`` both give ``"clinical"``)."""
    tasks = list_tasks()
    if task in tasks:
        return tasks[task]
    if task in tasks.values():
        return task
    raise ValueError(f"Unknown task {task!r}; the generated tasks are {sorted(tasks)} (or their domains).")


def evaluation_texts(profile: str | Profile, seed: int = 0, domain: str = "clinical") -> dict[str, list[str]]:
    """The held-out samples every continued-pretraining run is scored on: general text, the domain's
    corpus and, when the domain has a task, its texts (keys ``general``, ``<domain>``, ``<domain>_task``)."""
    p = _profile(profile)
    texts = {"general": held_out_texts("general", p, seed), domain: held_out_texts(domain, p, seed)}
    if domain in list_tasks().values():
        texts[f"{domain}_task"] = held_out_task_texts(domain, p, seed)
    return texts


def pppl_eval_fn(
    tokenizer: PreTrainedTokenizerBase, texts: Mapping[str, Sequence[str]]
) -> Callable[[nn.Module], dict[str, float]]:
    """A function for ``train_mlm(eval_fn=...)`` that returns ``{"pppl_<name>": pseudo-perplexity}`` per sample.

    Measuring the old and the new domain at every evaluation is what turns forgetting from a
    before/after anecdote into a curve.
    """

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {f"pppl_{name}": pseudo_perplexity(model, tokenizer, sample) for name, sample in texts.items()}

    return evaluate


# ----------------------------------------------------------------------------------- the recipe


def continue_pretraining(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    profile: str | Profile,
    seed: int = 0,
    *,
    mix_texts: Sequence[str] | None = None,
    mix_ratio: float = 0.0,
    eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    desc: str = "Continued pretraining",
) -> list[dict[str, Any]]:
    """Continue MLM training of ``model`` on ``texts`` for ``profile.dapt_steps`` steps (DAPT, TAPT, replay).

    The same function serves every run of notebook 06 so that runs differ only in their text:
    the learning rate, warm-up, batch size and evaluation points are fixed here. ``mix_texts`` and
    ``mix_ratio`` replay a share of old text in every batch. Returns ``train_mlm``'s history.
    """
    p = _profile(profile)
    return train_mlm(
        model,
        tokenizer,
        texts,
        steps=p.dapt_steps,
        batch_size=p.batch_size,
        lr=CONTINUED_LR,
        warmup_ratio=CONTINUED_WARMUP,
        device=device,
        seed=seed,
        mix_texts=mix_texts,
        mix_ratio=mix_ratio,
        eval_every=max(1, p.dapt_steps // EVALUATIONS_PER_RUN),
        eval_fn=eval_fn,
        progress=progress,
        desc=desc,
    )


def evaluation_curve(
    history: Sequence[Mapping[str, Any]], start: Mapping[str, float] | None = None
) -> dict[str, list[float]]:
    """The evaluated steps of a history as columns (``step`` and each ``pppl_*``), optionally from step 0.

    ``start`` is the evaluation of the model before training (same keys), so a curve begins where
    the model began rather than at the first evaluation.
    """
    rows = [dict(r) for r in history if any(k.startswith("pppl_") for k in r)]
    if start is not None:
        rows.insert(0, {"step": 0, **start})
    keys = sorted({k for r in rows for k in r if k.startswith("pppl_")})
    return {"step": [r["step"] for r in rows], **{k: [r[k] for r in rows] for k in keys}}


def kept_gain(before: float, plain: float, other: float) -> float:
    """The share of plain DAPT's improvement that another run keeps, measured in log pseudo-perplexity.

    Logs make halving the pseudo-perplexity count the same whether it starts at 100 or at 10.
    """
    full = math.log(before) - math.log(plain)
    if full <= 0:
        raise ValueError("Plain DAPT did not lower the pseudo-perplexity, so there is no gain to keep.")
    return (math.log(before) - math.log(other)) / full


# ------------------------------------------------------------------------------- what it learned


def entity_classes(domain: str = "clinical", entity_type: str = "drug", attribute: str = "class") -> dict[str, str]:
    """Each entity's attribute as the domain file states it (drug -> class for the clinical world)."""
    return {e.text: str(e.attrs[attribute]) for e in load_domain(domain).entities[entity_type]}


def unseen_entities(domain: str = "clinical", seed: int = 0, entity_type: str = "drug") -> list[str]:
    """Entities of ``entity_type`` kept out of the labeled task for this seed (only the corpus names them)."""
    names = {e.text for e in load_domain(domain).entities[entity_type]}
    return [e for e in held_out_entities(domain, seed) if e in names]


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


def drug_specialties(domain: str = "clinical") -> dict[str, str]:
    """Each drug's specialty, reached through its class (drug -> class -> specialty) as the domain file says."""
    specialty_of_class = entity_classes(domain, "drug_class", "specialty")
    return {drug: specialty_of_class[cls] for drug, cls in entity_classes(domain).items()}


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
