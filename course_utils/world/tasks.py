"""Labeled tasks: short texts whose label is decided by the entities they affirm, with known label noise.

Every text opens with a label-free sentence, then states one to three *affirmed* cues (entities
whose label path leads to the text's label), sometimes a *negated* distractor from another label
("denies chest pain", "rumours of a writedown proved false") and label-free fillers, in random
order. Reading the whole text therefore decides the clean label; a fixed fraction of labels is
then replaced by another label at random, so the best possible accuracy is ``1 - label_noise``.

Challenge splits change one thing each:
  * ``unseen_entities``: the only cues are held-out entities, never in train/validation/test
    but stated with their relations in the unlabeled corpus;
  * ``negation``: one affirmed cue of the label and two negated cues of another label;
  * ``typos``: test-like texts with letters swapped, dropped or doubled.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from course_utils.world.definitions import Domain, Entity, TaskSpec, load_domain
from course_utils.world.generate import seeded_rng
from course_utils.world.grammar import Template, Writer, compile_template
from course_utils.world.text import detokenize

#: Splits of every generated task, in order.
SPLITS = ("train", "validation", "test", "unseen_entities", "negation", "typos")

#: Chance that a word of four letters or more gets a typo in the ``typos`` split.
TYPO_RATE = 0.15


@dataclass(frozen=True)
class TaskGrammar:
    """A domain's task templates compiled once, with every cue entity's label."""

    domain: Domain
    spec: TaskSpec
    opening: tuple[Template, ...]
    filler: tuple[Template, ...]
    affirmed: dict[str, tuple[Template, ...]]
    negated: dict[str, tuple[Template, ...]]
    label_of: dict[str, str]  # entity text -> label

    @classmethod
    def of(cls, domain: Domain) -> TaskGrammar:
        spec = domain.task
        if spec is None:
            raise ValueError(f"The domain {domain.name!r} defines no labeled task (its file has no 'task' section).")
        label_of: dict[str, str] = {}
        for cue_type, path in spec.label_paths.items():
            for entity in domain.entities[cue_type]:
                label = domain.follow(entity, path)
                if not isinstance(label, Entity) or label.type != spec.label_type:
                    raise ValueError(f"{domain.source}: {entity.text!r}.{'.'.join(path)} must be a {spec.label_type}.")
                label_of[entity.text] = label.text
        for label in spec.labels:
            for cue_type in spec.cue_types:
                if not any(label_of[e.text] == label for e in domain.entities[cue_type]):
                    raise ValueError(f"{domain.source}: no {cue_type} has the label {label!r}; add one.")
            held = [e for e in domain.entities[spec.held_out_type] if label_of[e.text] == label]
            if len(held) < 2:
                raise ValueError(
                    f"{domain.source}: label {label!r} needs at least two {spec.held_out_type} entities, "
                    "one to train on and one to hold out."
                )

        def many(texts: tuple[str, ...], bound: dict[str, str] | None = None) -> tuple[Template, ...]:
            return tuple(compile_template(domain, t, bound) for t in texts)

        return cls(
            domain=domain,
            spec=spec,
            opening=many(spec.opening),
            filler=many(spec.filler),
            affirmed={t: many(v, {"e": t}) for t, v in spec.affirmed.items()},
            negated={t: many(v, {"e": t}) for t, v in spec.negated.items() if t in spec.cue_types},
            label_of=label_of,
        )


@functools.lru_cache(maxsize=32)
def task_grammar(domain: str) -> TaskGrammar:
    return TaskGrammar.of(load_domain(domain))


def held_out_entities(domain: str, seed: int = 0) -> tuple[str, ...]:
    """The entities kept out of labeled train/validation/test: a fixed share of each label, chosen by ``seed``."""
    grammar = task_grammar(domain)
    spec = grammar.spec
    rng = seeded_rng(grammar.domain.name, seed, "held_out")
    held: list[str] = []
    for label in spec.labels:
        pool = [e.text for e in grammar.domain.entities[spec.held_out_type] if grammar.label_of[e.text] == label]
        k = min(len(pool) - 1, max(1, round(spec.held_out_fraction * len(pool))))
        held.extend(rng.sample(pool, k))
    return tuple(held)


class _TextMaker:
    """Builds the texts of one task for one seed (entities split into seen and held out)."""

    def __init__(self, grammar: TaskGrammar, held_out: tuple[str, ...]):
        self.g = grammar
        self.writer = Writer(grammar.domain)
        held = set(held_out)
        self.pools: dict[tuple[str, str, bool], list[Entity]] = {}
        for cue_type in grammar.spec.cue_types:
            for entity in grammar.domain.entities[cue_type]:
                key = (cue_type, grammar.label_of[entity.text], entity.text in held)
                self.pools.setdefault(key, []).append(entity)
        self.labels = list(grammar.spec.labels)
        self.prior = list(grammar.spec.labels.values())

    def _sentence(self, template: Template, rng: random.Random, entity: Entity | None = None) -> list[str]:
        tokens, _ = self.writer.write(template, rng, {"e": entity} if entity is not None else None)
        return [*tokens, "."]

    def _cue(
        self, rng: random.Random, label: str, templates: dict[str, tuple[Template, ...]], held: bool = False
    ) -> list[str]:
        types = [t for t in templates if (t, label, held) in self.pools]
        weights = [self.g.spec.cue_types[t] for t in types]
        cue_type = rng.choices(types, weights)[0]
        entity = rng.choice(self.pools[(cue_type, label, held)])
        return self._sentence(rng.choice(templates[cue_type]), rng, entity)

    def _other_label(self, rng: random.Random, label: str) -> str:
        others = [(name, p) for name, p in zip(self.labels, self.prior, strict=True) if name != label]
        return rng.choices([n for n, _ in others], [p for _, p in others])[0]

    def text(self, rng: random.Random, kind: str) -> tuple[list[str], str]:
        """Tokens of one text of ``kind`` ("standard", "unseen", "negation" or "counterexample") and its clean label."""
        spec = self.g.spec
        label = rng.choices(self.labels, self.prior)[0]
        body: list[list[str]] = []
        if kind == "unseen":
            for _ in range(rng.randint(1, max(1, min(2, spec.cues_per_text[1])))):
                body.append(self._cue(rng, label, {spec.held_out_type: self.g.affirmed[spec.held_out_type]}, held=True))
        elif kind == "counterexample":
            body.append(self._cue(rng, label, self.g.affirmed))
            body.append(self._cue(rng, self._other_label(rng, label), self.g.negated))
        elif kind == "negation":
            body.append(self._cue(rng, label, self.g.affirmed))
            other = self._other_label(rng, label)
            first = self._cue(rng, other, self.g.negated)
            second = self._cue(rng, other, self.g.negated)
            for _ in range(10):  # two different negated mentions, not the same sentence twice
                if second != first:
                    break
                second = self._cue(rng, other, self.g.negated)
            body.extend([first, second])
        else:
            body.extend(self._cue(rng, label, self.g.affirmed) for _ in range(rng.randint(*spec.cues_per_text)))
            if rng.random() < spec.distractor_probability:
                body.append(self._cue(rng, self._other_label(rng, label), self.g.negated))
        if self.g.filler:
            body.extend(
                self._sentence(rng.choice(self.g.filler), rng) for _ in range(rng.randint(*spec.fillers_per_text))
            )
        rng.shuffle(body)
        tokens = self._sentence(rng.choice(self.g.opening), rng)
        for sentence in body:
            tokens.extend(sentence)
        return tokens, label

    def noisy(self, rng: random.Random, label: str) -> str:
        """The label as annotated: with probability ``label_noise`` another label, uniformly."""
        if rng.random() < self.g.spec.label_noise:
            return rng.choice([name for name in self.labels if name != label])
        return label


def add_typos(tokens: list[str], rng: random.Random, rate: float = TYPO_RATE) -> list[str]:
    """Swap, drop or double one letter in words of four letters or more, each with probability ``rate``."""
    out = []
    for token in tokens:
        if len(token) >= 4 and token.isalpha() and rng.random() < rate:
            i = rng.randrange(len(token) - 1)
            op = rng.randrange(3)
            if op == 0:
                token = token[:i] + token[i + 1] + token[i] + token[i + 2 :]
            elif op == 1:
                token = token[:i] + token[i + 1 :]
            else:
                token = token[: i + 1] + token[i] + token[i + 1 :]
        out.append(token)
    return out


def _generate(domain: str, n_train: int, n_eval: int, seed: int) -> dict[str, tuple[tuple[str, str, str], ...]]:
    """Every split as (text, annotated label, clean label) triples; the clean label is what the text decides."""
    for name, n in (("n_train", n_train), ("n_eval", n_eval)):
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {n!r}.")
    grammar = task_grammar(domain)
    maker = _TextMaker(grammar, held_out_entities(domain, seed))
    kinds = {
        "train": "standard",
        "validation": "standard",
        "test": "standard",
        "unseen_entities": "unseen",
        "negation": "negation",
        "typos": "standard",
    }
    splits: dict[str, tuple[tuple[str, str, str], ...]] = {}
    for split in SPLITS:
        rng = seeded_rng(grammar.domain.name, seed, "task", split)
        rows = []
        for _ in range(n_train if split == "train" else n_eval):
            tokens, label = maker.text(rng, kinds[split])
            if split == "typos":
                tokens = add_typos(tokens, rng)
            rows.append((detokenize(tokens), maker.noisy(rng, label), label))
        splits[split] = tuple(rows)
    return splits


@functools.lru_cache(maxsize=64)
def generate_task(domain: str, n_train: int, n_eval: int, seed: int = 0) -> dict[str, tuple[tuple[str, str], ...]]:
    """Every split of a domain's task as (text, label) pairs; cached per domain, sizes and seed."""
    return {
        split: tuple((text, label) for text, label, _ in rows)
        for split, rows in _generate(domain, n_train, n_eval, seed).items()
    }


@functools.lru_cache(maxsize=16)
def clean_task_labels(domain: str, n_train: int, n_eval: int, seed: int = 0) -> dict[str, tuple[str, ...]]:
    """The label each text of every split decides before label noise: the world's known truth, for error analysis."""
    return {
        split: tuple(clean for _, _, clean in rows) for split, rows in _generate(domain, n_train, n_eval, seed).items()
    }


def counterexample_texts(domain: str, n: int, seed: int = 0) -> tuple[tuple[str, str], ...]:
    """``n`` (text, label) notes that state one cue of their label and deny one cue of another.

    Only negation tells the two cues apart, so these are the training data a failure on the
    ``negation`` split asks for. They use the training entities (none held out), come from a
    random stream of their own, have no label noise, and differ from the ``negation`` split,
    which denies two cues per note.
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}.")
    grammar = task_grammar(domain)
    maker = _TextMaker(grammar, held_out_entities(domain, seed))
    rng = seeded_rng(grammar.domain.name, seed, "task", "counterexamples")
    rows = []
    for _ in range(n):
        tokens, label = maker.text(rng, "counterexample")
        rows.append((detokenize(tokens), label))
    return tuple(rows)
