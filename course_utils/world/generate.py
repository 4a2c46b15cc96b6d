"""Unlabeled corpora: sentences of one or more clauses, each with the exact log-probability of its text.

A sentence is a clause, then with probability ``continue_probability`` a ";" and another clause,
else a final "." (the end-of-sentence decision). Because no template writes ";" or ".", and the
templates of a domain never write the same clause in two ways, the probability of the one
derivation is the probability of the text; ``sentence_logprob`` recomputes it from the text alone.
"""

from __future__ import annotations

import bisect
import functools
import math
import random
from dataclasses import dataclass

from course_utils.world.definitions import Domain, load_domain
from course_utils.world.grammar import Template, Writer, compile_template, derivations
from course_utils.world.text import detokenize, words


@dataclass(frozen=True)
class CorpusGrammar:
    """A domain's clause templates with their weights, compiled once."""

    domain: Domain
    templates: tuple[Template, ...]
    log_weights: tuple[float, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def of(cls, domain: Domain) -> CorpusGrammar:
        total = sum(w for w, _ in domain.corpus)
        templates = tuple(compile_template(domain, text) for _, text in domain.corpus)
        running, cumulative = 0.0, []
        for w, _ in domain.corpus:
            running += w / total
            cumulative.append(running)
        return cls(domain, templates, tuple(math.log(w / total) for w, _ in domain.corpus), tuple(cumulative))


@functools.lru_cache(maxsize=32)
def corpus_grammar(domain: str) -> CorpusGrammar:
    """The compiled grammar of a built-in domain (or a domain file path)."""
    return CorpusGrammar.of(load_domain(domain))


def sample_sentence(
    grammar: CorpusGrammar, rng: random.Random, writer: Writer | None = None
) -> tuple[list[str], float]:
    """Tokens of one sentence (ending in ".") and the natural log of its probability."""
    writer = writer or Writer(grammar.domain)
    p_continue = grammar.domain.continue_probability
    tokens: list[str] = []
    logprob = 0.0
    while True:
        i = min(bisect.bisect_left(grammar.cumulative, rng.random()), len(grammar.templates) - 1)
        clause, clause_logprob = writer.write(grammar.templates[i], rng)
        tokens.extend(clause)
        logprob += grammar.log_weights[i] + clause_logprob
        if rng.random() < p_continue:
            tokens.append(";")
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
        if token == ";":
            clauses.append([])
        else:
            clauses[-1].append(token)
    if len(clauses) > 1 and p_continue == 0.0:
        return -math.inf, 0  # a domain whose sentences are single clauses never writes a ";"
    total = (len(clauses) - 1) * (math.log(p_continue) if len(clauses) > 1 else 0.0) + math.log1p(-p_continue)
    count = 1
    for clause in clauses:
        logprobs = [
            lw + lp
            for lw, template in zip(grammar.log_weights, grammar.templates, strict=True)
            for lp in derivations(grammar.domain, template, tuple(clause))
        ]
        if not logprobs:
            return -math.inf, 0
        top = max(logprobs)
        total += top + math.log(sum(math.exp(lp - top) for lp in logprobs))
        count *= len(logprobs)
    return total, count
