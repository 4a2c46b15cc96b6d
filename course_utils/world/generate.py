"""Unlabeled corpora: texts of one or more clauses, each with the exact log-probability of its text.

A text is a clause, then with probability ``continue_probability`` another clause, else the end.
In a domain without a theme the clauses of a text are one sentence, joined by ";" and ended by
".". A domain with a ``theme`` (the general one: ``{symptom: specialty, condition: specialty}``)
writes short documents instead: every clause is a sentence ending in ".", and a follow-up sentence
keeps to the first one's subject. It is drawn from the templates of the same kind (themed or
plain, with their weights renormalised), and the entity it picks freely of a themed type has the
first sentence's theme, so a health document stays with one specialty. Because no template writes
";" or ".", and the templates of a domain never write the same clause in two ways, the probability
of the one derivation is the probability of the text; ``sentence_logprob`` recomputes it from the
text alone.
"""

from __future__ import annotations

import bisect
import functools
import math
import random
from dataclasses import dataclass

from course_utils.world.definitions import DefinitionError, Domain, load_domain
from course_utils.world.grammar import Template, Writer, compile_template, derivations, themed_picks
from course_utils.world.text import detokenize, words


@dataclass(frozen=True)
class CorpusGrammar:
    """A domain's clause templates with their weights, compiled once.

    ``themed[i]`` says whether template ``i`` picks a themed entity freely (and so has a theme);
    ``kind_log_weights[i]`` is its log-weight among the templates of its own kind, the choice a
    follow-up sentence of a themed document makes.
    """

    domain: Domain
    templates: tuple[Template, ...]
    log_weights: tuple[float, ...]
    cumulative: tuple[float, ...]
    themed: tuple[bool, ...]
    kind_log_weights: tuple[float, ...]

    @classmethod
    def of(cls, domain: Domain) -> CorpusGrammar:
        total = sum(w for w, _ in domain.corpus)
        templates = tuple(compile_template(domain, text) for _, text in domain.corpus)
        themed = []
        for template in templates:
            picks = themed_picks(domain, template)
            if len(picks) > 1:
                raise DefinitionError(
                    f"{domain.source}: template {template.text!r} picks {len(picks)} themed entities freely; "
                    "a sentence may set its theme once (pick the others with 'in' or 'where')."
                )
            themed.append(bool(picks))
        kind_total = {
            kind: sum(w for (w, _), k in zip(domain.corpus, themed, strict=True) if k == kind) for kind in (True, False)
        }
        running, cumulative = 0.0, []
        for w, _ in domain.corpus:
            running += w / total
            cumulative.append(running)
        return cls(
            domain,
            templates,
            tuple(math.log(w / total) for w, _ in domain.corpus),
            tuple(cumulative),
            tuple(themed),
            tuple(math.log(w / kind_total[k]) for (w, _), k in zip(domain.corpus, themed, strict=True)),
        )

    @property
    def separator(self) -> str:
        """What joins two clauses of a text: a new sentence in a themed domain, else a ";"."""
        return "." if self.domain.theme else ";"


@functools.lru_cache(maxsize=32)
def corpus_grammar(domain: str) -> CorpusGrammar:
    """The compiled grammar of a built-in domain (or a domain file path)."""
    return CorpusGrammar.of(load_domain(domain))


def _choose(grammar: CorpusGrammar, rng: random.Random, kind: bool | None) -> int:
    """A template index by weight: among all templates, or (``kind``) among the themed or the plain ones."""
    if kind is None:
        return min(bisect.bisect_left(grammar.cumulative, rng.random()), len(grammar.templates) - 1)
    indices = [i for i, k in enumerate(grammar.themed) if k == kind]
    weights = [math.exp(grammar.kind_log_weights[i]) for i in indices]
    return rng.choices(indices, weights)[0]


def sample_sentence(
    grammar: CorpusGrammar, rng: random.Random, writer: Writer | None = None
) -> tuple[list[str], float]:
    """Tokens of one text (ending in ".") and the natural log of its probability."""
    writer = writer or Writer(grammar.domain)
    p_continue = grammar.domain.continue_probability
    themed_domain = bool(grammar.domain.theme)
    tokens: list[str] = []
    logprob = 0.0
    kind: bool | None = None  # the kind of the document's first sentence, once it is written
    theme: str | None = None
    while True:
        i = _choose(grammar, rng, kind)
        clause, clause_logprob, clause_theme = writer.write_on_theme(grammar.templates[i], rng, theme=theme)
        tokens.extend(clause)
        if kind is None:
            logprob += grammar.log_weights[i] + clause_logprob
            if themed_domain:
                kind, theme = grammar.themed[i], clause_theme
        else:
            logprob += grammar.kind_log_weights[i] + clause_logprob
        if rng.random() < p_continue:
            tokens.append(grammar.separator)
            logprob += math.log(p_continue)
        else:
            tokens.append(".")
            logprob += math.log1p(-p_continue)
            return tokens, logprob


def seeded_rng(*parts: object) -> random.Random:
    """A generator seeded from a readable key: the same key gives the same stream on every machine."""
    return random.Random(":".join(str(p) for p in parts))


@functools.lru_cache(maxsize=64)
def generate_corpus(domain: str, n: int, seed: int = 0) -> tuple[tuple[str, float], ...]:
    """``n`` sentences of ``domain`` as (text, logprob); cached, and a prefix of any longer corpus with the same seed."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"The number of sentences must be a non-negative integer, got {n!r}.")
    grammar = corpus_grammar(domain)
    rng = seeded_rng(grammar.domain.name, seed, "corpus")
    writer = Writer(grammar.domain)
    out = []
    for _ in range(n):
        tokens, logprob = sample_sentence(grammar, rng, writer)
        out.append((detokenize(tokens), logprob))
    return tuple(out)


def sentence_logprob(grammar: CorpusGrammar, text: str) -> tuple[float, int]:
    """The exact log-probability of ``text`` under the grammar, summed over all derivations, and their number.

    It reads the text only, so a test can check it against what the generator recorded
    (``-inf`` and 0 for a text the grammar cannot write).
    """
    tokens = words(text)
    p_continue = grammar.domain.continue_probability
    if not tokens or tokens[-1] != ".":
        return -math.inf, 0
    clauses: list[list[str]] = [[]]
    for token in tokens[:-1]:
        if token == grammar.separator:
            clauses.append([])
        else:
            clauses[-1].append(token)
    if len(clauses) > 1 and p_continue == 0.0:
        return -math.inf, 0  # a domain whose texts are single clauses never continues one
    ends = (len(clauses) - 1) * (math.log(p_continue) if len(clauses) > 1 else 0.0) + math.log1p(-p_continue)

    def clause_logprobs(clause: list[str], kind: bool | None, theme: str | None) -> list[tuple[float, int, str | None]]:
        """(log-probability, template, theme) of every derivation of one clause, as a first or a follow-up clause."""
        found = []
        for i, template in enumerate(grammar.templates):
            if kind is not None and grammar.themed[i] != kind:
                continue
            weight = grammar.log_weights[i] if kind is None else grammar.kind_log_weights[i]
            for lp, clause_theme in derivations(grammar.domain, template, tuple(clause), theme):
                found.append((weight + lp, i, clause_theme))
        return found

    def log_sum(values: list[float]) -> float:
        top = max(values)
        return top + math.log(sum(math.exp(v - top) for v in values))

    if not grammar.domain.theme:  # clauses are independent: multiply their probabilities
        total, count = ends, 1
        for clause in clauses:
            found = clause_logprobs(clause, None, None)
            if not found:
                return -math.inf, 0
            total += log_sum([lp for lp, _, _ in found])
            count *= len(found)
        return total, count
    # A themed document: each derivation of the first sentence fixes the kind and theme of the rest.
    paths: list[float] = []
    count = 0
    for lp, i, theme in clause_logprobs(clauses[0], None, None):
        rest, ways = lp, 1
        for clause in clauses[1:]:
            found = clause_logprobs(clause, grammar.themed[i], theme)
            if not found:
                break
            rest += log_sum([f for f, _, _ in found])
            ways *= len(found)
        else:
            paths.append(rest)
            count += ways
    if not paths:
        return -math.inf, 0
    return ends + log_sum(paths), count
