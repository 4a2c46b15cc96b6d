"""The known truth of the generated world: entropy floors for language models, Bayes ceilings for tasks.

Real corpora never tell you how good a model could possibly be; this world does, because the
generator knows the probability of every sentence it wrote and how often it flipped a label.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from course_utils.world.text import words


@dataclass(frozen=True)
class EntropyFloor:
    """Cross-entropy of the true distribution on some sentences, per word (``</s>`` counted, as n-grams do)."""

    nats_per_word: float
    words: int
    sentences: int

    @property
    def bits_per_word(self) -> float:
        return self.nats_per_word / math.log(2)

    @property
    def perplexity(self) -> float:
        """The perplexity no model of this language can beat on average: exp(entropy per word)."""
        return math.exp(self.nats_per_word)


def entropy_floor(texts: Iterable[str], logprobs: Iterable[float]) -> EntropyFloor:
    """The true model's per-word cross-entropy on ``texts``: -sum(logprob) / (words + one </s> per sentence)."""
    total_nats, n_words, n_sentences = 0.0, 0, 0
    for text, logprob in zip(texts, logprobs, strict=True):
        if logprob is None or not math.isfinite(logprob) or logprob > 0:
            raise ValueError(f"Every sentence needs a finite log-probability <= 0; got {logprob!r} for {text!r}.")
        total_nats -= logprob
        n_words += len(words(text)) + 1
        n_sentences += 1
    if n_sentences == 0:
        raise ValueError("entropy_floor needs at least one sentence.")
    return EntropyFloor(total_nats / n_words, n_words, n_sentences)


@dataclass(frozen=True)
class TaskTruth:
    """What is known about a generated task: labels, noise, the best achievable accuracy, held-out entities."""

    task: str
    domain: str
    labels: tuple[str, ...]
    label_prior: dict[str, float]
    label_noise: float
    bayes_ceiling: float  # 1 - label_noise: the clean label is decided by the text, noise flips it at random
    held_out_type: str
    held_out_entities: tuple[str, ...]
    typo_rate: float
    split_sizes: dict[str, int]


@dataclass(frozen=True)
class WorldTruth:
    """Everything known about one generated world (a profile and a seed), as one record."""

    profile: str
    seed: int
    corpora: dict[str, EntropyFloor] = field(default_factory=dict)
    tasks: dict[str, TaskTruth] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data, with each floor's perplexity spelled out."""
        out = asdict(self)
        for name, floor in self.corpora.items():
            out["corpora"][name]["perplexity"] = floor.perplexity
        return out


def task_truth(domain: str, n_train: int, n_eval: int, seed: int = 0) -> TaskTruth:
    """The truth record of one domain's task at the given sizes and seed."""
    from course_utils.world.tasks import SPLITS, TYPO_RATE, held_out_entities, task_grammar

    grammar = task_grammar(domain)
    spec = grammar.spec
    return TaskTruth(
        task=spec.name,
        domain=grammar.domain.name,
        labels=tuple(spec.labels),
        label_prior=dict(spec.labels),
        label_noise=spec.label_noise,
        bayes_ceiling=1.0 - spec.label_noise,
        held_out_type=spec.held_out_type,
        held_out_entities=held_out_entities(domain, seed),
        typo_rate=TYPO_RATE,
        split_sizes={s: (n_train if s == "train" else n_eval) for s in SPLITS},
    )


def world_truth(profile: Any = "fast", seed: int = 0) -> WorldTruth:
    """The known truth of every built-in domain for a profile (name or ``Profile``) and seed."""
    from course_utils.profiles import get_profile
    from course_utils.world.definitions import domain_names, load_domain
    from course_utils.world.generate import generate_corpus

    chosen = get_profile(profile)
    corpora, tasks = {}, {}
    for name in domain_names():
        corpus = generate_corpus(name, chosen.corpus_sentences, seed)
        corpora[name] = entropy_floor([t for t, _ in corpus], [lp for _, lp in corpus])
        if load_domain(name).task is not None:
            tasks[name] = task_truth(name, chosen.task_train, chosen.task_eval, seed)
    return WorldTruth(profile=chosen.name, seed=seed, corpora=corpora, tasks=tasks)
