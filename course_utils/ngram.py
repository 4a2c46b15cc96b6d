"""N-gram language models behind one interface, the baselines of the whole course.

Every model here is a proper distribution over the same target set: the vocabulary, ``<unk>``
(any word outside it) and ``</s>`` (the end of the sentence). They differ only in how they turn
counts into probabilities:

    MLE          relative frequencies; zero for anything unseen (so test perplexity can be infinite)
    AddK         add ``k`` to every count (``k=1`` is Laplace's add-one)
    Interpolated a mixture of the MLE orders and the uniform distribution, weights fit by EM on held-out text
    KneserNey    interpolated Kneser-Ney: absolute discounting plus continuation counts for the lower orders

All share ``prob(word, context)``, ``distribution(context)``, ``logprob(sentence)``,
``perplexity(sentences)`` and ``sample(rng, temperature)``, and ``train(kind, sentences, order)``
picks a model by name, the way makemore picks one by a flag.
"""

from __future__ import annotations

import functools
import math
import random
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from course_utils.world.text import words

BOS, EOS, UNK = "<s>", "</s>", "<unk>"

Sentence = str | Sequence[str]


def as_words(sentence: Sentence) -> list[str]:
    """A sentence as a list of words: strings go through ``course_utils.world.words``, lists pass as they are."""
    return words(sentence) if isinstance(sentence, str) else list(sentence)


@dataclass(frozen=True)
class Vocab:
    """The words a model knows (those seen ``min_count`` times or more), plus ``<unk>`` and ``</s>`` as targets."""

    words: tuple[str, ...]

    @classmethod
    def build(cls, sentences: Iterable[Sentence], min_count: int = 2) -> Vocab:
        """Keep the words seen ``min_count`` times or more (chain several corpora to share one vocabulary)."""
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}.")
        counts: Counter[str] = Counter()
        for sentence in sentences:
            counts.update(as_words(sentence))
        for special in (BOS, EOS, UNK):
            counts.pop(special, None)
        return cls(tuple(sorted(w for w, c in counts.items() if c >= min_count)))

    @property
    def targets(self) -> tuple[str, ...]:
        """Everything a model can predict: the words, then ``<unk>`` and ``</s>``."""
        return (*self.words, UNK, EOS)

    def __len__(self) -> int:
        return len(self.words) + 2

    def __contains__(self, word: str) -> bool:
        return word in self._set

    @functools.cached_property
    def _set(self) -> frozenset[str]:
        """The words as a set, built once: ``map`` runs for every token counted or scored."""
        return frozenset(self.words)

    def map(self, word: str) -> str:
        """The word itself if known, else ``<unk>``."""
        return word if word in self._set else UNK


class NGramCounts:
    """Counts of every n-gram up to ``order`` as dictionaries: ``table[k][context][word]`` for k = 1..order.

    Each target position of each padded sentence (``<s>``*(order-1) + words + ``</s>``) adds one to
    the count of its word after each of its contexts of length 0..order-1.
    """

    def __init__(self, sentences: Iterable[Sentence], order: int, vocab: Vocab):
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}.")
        self.order = order
        self.vocab = vocab
        self.table: list[dict[tuple[str, ...], Counter[str]]] = [{} for _ in range(order + 1)]
        self.tokens = 0
        self.sentences = 0
        for sentence in sentences:
            padded = [BOS] * (order - 1) + [vocab.map(w) for w in as_words(sentence)] + [EOS]
            self.sentences += 1
            for i in range(order - 1, len(padded)):
                word = padded[i]
                self.tokens += 1
                for k in range(1, order + 1):
                    context = tuple(padded[i - k + 1 : i])
                    row = self.table[k].get(context)
                    if row is None:
                        row = self.table[k][context] = Counter()
                    row[word] += 1
        if self.sentences == 0:
            raise ValueError("Cannot count n-grams of an empty corpus; pass at least one sentence.")

    def __getitem__(self, k: int) -> dict[tuple[str, ...], Counter[str]]:
        return self.table[k]


class LanguageModel(ABC):
    """What every n-gram model offers. Subclasses define ``prob``; the rest follows from it."""

    name = "model"

    def __init__(self, counts: NGramCounts):
        self.counts = counts
        self.order = counts.order
        self.vocab = counts.vocab
        self.targets = counts.vocab.targets
        self.index = {w: i for i, w in enumerate(self.targets)}

    def _context(self, context: Sequence[str]) -> tuple[str, ...]:
        """The last ``order - 1`` words of ``context``, mapped to the vocabulary and padded with ``<s>``."""
        mapped = [w if w == BOS else self.vocab.map(w) for w in context]
        padded = [BOS] * (self.order - 1) + mapped
        return tuple(padded[len(padded) - (self.order - 1) :]) if self.order > 1 else ()

    @abstractmethod
    def prob(self, word: str, context: Sequence[str] = ()) -> float:
        """P(word | context): ``word`` is any string (unknown words count as ``<unk>``), ``context`` the words before it."""

    def distribution(self, context: Sequence[str] = ()) -> np.ndarray:
        """P(target | context) for every target in ``self.targets`` (sums to one)."""
        return np.array([self.prob(w, context) for w in self.targets])

    def logprob(self, sentence: Sentence) -> float:
        """Natural log of P(sentence): every word and the final ``</s>``. ``-inf`` if a word has probability zero."""
        tokens = as_words(sentence)
        total = 0.0
        history: list[str] = []
        for word in [*tokens, EOS]:
            p = self.prob(word, history)
            if p <= 0.0:
                return -math.inf
            total += math.log(p)
            history.append(word)
        return total

    def perplexity(self, sentences: Iterable[Sentence]) -> float:
        """exp(-average log-probability per predicted word, ``</s>`` included); ``inf`` if any word gets zero."""
        total, count = 0.0, 0
        for sentence in sentences:
            tokens = as_words(sentence)
            total += self.logprob(tokens)
            count += len(tokens) + 1
        if count == 0:
            raise ValueError("perplexity needs at least one sentence.")
        return math.exp(-total / count) if math.isfinite(total) else math.inf

    def sample(
        self, rng: random.Random | int | None = None, temperature: float = 1.0, max_words: int = 40
    ) -> list[str]:
        """Draw one sentence word by word from P(w | context) ** (1 / temperature), renormalised.

        Low temperatures make the most likely word win almost always; high ones flatten the
        distribution towards uniform. Stops at ``</s>`` or after ``max_words``.
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        history: list[str] = []
        for _ in range(max_words):
            p = self.distribution(history)
            logits = np.log(np.maximum(p, 1e-300)) / temperature
            logits[p <= 0] = -np.inf
            weights = np.exp(logits - logits.max())
            cumulative = np.cumsum(weights)
            i = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
            word = self.targets[min(i, len(self.targets) - 1)]
            if word == EOS:
                break
            history.append(word)
        return history

    def __repr__(self) -> str:
        return f"{type(self).__name__}(order={self.order}, vocab={len(self.vocab)})"


class MLE(LanguageModel):
    """Relative frequencies c(h, w) / c(h). A context never seen falls back to its shorter suffix."""

    name = "mle"

    def prob(self, word: str, context: Sequence[str] = ()) -> float:
        word = word if word == EOS else self.vocab.map(word)
        h = self._context(context)
        for k in range(self.order, 0, -1):
            row = self.counts[k].get(h[len(h) - (k - 1) :] if k > 1 else ())
            if row:
                return row.get(word, 0) / sum(row.values())
        return 0.0


class AddK(LanguageModel):
    """(c(h, w) + k) / (c(h) + k |V|): every target gets a share, however rare; k = 1 is add-one."""

    name = "add-k"

    def __init__(self, counts: NGramCounts, k: float = 1.0):
        super().__init__(counts)
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}.")
        self.k = k
        self._totals = {h: sum(row.values()) for h, row in counts[counts.order].items()}

    def prob(self, word: str, context: Sequence[str] = ()) -> float:
        word = word if word == EOS else self.vocab.map(word)
        h = self._context(context)
        row = self.counts[self.order].get(h)
        count = row.get(word, 0) if row else 0
        return (count + self.k) / (self._totals.get(h, 0) + self.k * len(self.targets))


class Interpolated(LanguageModel):
    """sum_k lambda_k P_k(w | last k-1 words) + lambda_0 / |V|, with the lambdas fit by EM on held-out sentences.

    ``P_k`` is the MLE of order k, or the order below it when the context was never seen,
    so each part, and therefore the mixture, is a proper distribution.
    """

    name = "interpolated"

    def __init__(self, counts: NGramCounts, weights: Sequence[float] | None = None):
        super().__init__(counts)
        n = counts.order + 1
        self.weights = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=float)
        if self.weights.shape != (n,) or (self.weights < 0).any() or not math.isclose(self.weights.sum(), 1.0):
            raise ValueError(
                f"weights must be {n} non-negative numbers (uniform, then orders 1..{n - 1}) summing to 1."
            )
        self._totals = [{h: sum(row.values()) for h, row in counts[k].items()} for k in range(counts.order + 1) if k]

    def components(self, word: str, context: Sequence[str] = ()) -> np.ndarray:
        """[uniform, P_1, ..., P_order] for one word: the parts the weights mix."""
        word = word if word == EOS else self.vocab.map(word)
        h = self._context(context)
        parts = [1.0 / len(self.targets)]
        for k in range(1, self.order + 1):
            hk = h[len(h) - (k - 1) :] if k > 1 else ()
            row = self.counts[k].get(hk)
            parts.append(row.get(word, 0) / self._totals[k - 1][hk] if row else parts[-1])
        return np.array(parts)

    def prob(self, word: str, context: Sequence[str] = ()) -> float:
        return float(self.components(word, context) @ self.weights)

    def fit_weights(self, sentences: Iterable[Sentence], iterations: int = 30) -> Interpolated:
        """Expectation-maximisation: each weight becomes the average share of the held-out words its part explains."""
        rows = []
        for sentence in sentences:
            history: list[str] = []
            for word in [*as_words(sentence), EOS]:
                rows.append(self.components(word, history))
                history.append(word)
        if not rows:
            raise ValueError("fit_weights needs at least one held-out sentence.")
        parts = np.array(rows)  # (held-out words, order + 1)
        weights = np.full(parts.shape[1], 1.0 / parts.shape[1])
        for _ in range(iterations):
            mixed = parts * weights  # (words, parts)
            weights = (mixed / mixed.sum(axis=1, keepdims=True)).mean(axis=0)
        self.weights = weights
        return self


class KneserNey(LanguageModel):
    """Interpolated Kneser-Ney with one absolute discount per order (Chen & Goodman's estimate n1 / (n1 + 2 n2)).

    The highest order uses counts; lower orders use continuation counts (how many different
    words came before), because a lower order only matters when the longer context is new.
    N-grams whose context starts at ``<s>`` keep their counts: nothing can precede them.
    """

    name = "kneser-ney"

    def __init__(self, counts: NGramCounts, discount: float | None = None):
        super().__init__(counts)
        n = counts.order
        # adjusted[k][h][w]: counts for the top order, continuation counts below it
        self.adjusted: list[dict[tuple[str, ...], dict[str, int]]] = [{} for _ in range(n + 1)]
        self.adjusted[n] = {h: dict(row) for h, row in counts[n].items()}
        for k in range(1, n):
            table: dict[tuple[str, ...], dict[str, int]] = {}
            for longer, row in counts[k + 1].items():
                h = longer[1:]
                if h and h[0] == BOS:
                    continue  # filled from raw counts below
                target = table.setdefault(h, {})
                for w in row:
                    target[w] = target.get(w, 0) + 1
            for h, row in counts[k].items():
                if h and h[0] == BOS:
                    table[h] = dict(row)
            self.adjusted[k] = table
        self.discounts = [0.0] + [
            discount if discount is not None else self._estimate(self.adjusted[k]) for k in range(1, n + 1)
        ]
        # per context: (total adjusted count, number of distinct followers)
        self.stats = [{h: (sum(row.values()), len(row)) for h, row in self.adjusted[k].items()} for k in range(n + 1)]

    @staticmethod
    def _estimate(table: dict[tuple[str, ...], dict[str, int]]) -> float:
        values = [c for row in table.values() for c in row.values()]
        n1, n2 = values.count(1), values.count(2)
        return min(0.95, max(0.05, n1 / (n1 + 2 * n2))) if n1 + n2 else 0.75

    def prob(self, word: str, context: Sequence[str] = ()) -> float:
        word = word if word == EOS else self.vocab.map(word)
        h = self._context(context)
        p = 1.0 / len(self.targets)
        for k in range(1, self.order + 1):
            hk = h[len(h) - (k - 1) :] if k > 1 else ()
            row = self.adjusted[k].get(hk)
            if not row:
                continue  # unseen context: keep the shorter context's estimate
            total, types = self.stats[k][hk]
            d = self.discounts[k]
            p = max(row.get(word, 0) - d, 0.0) / total + d * types / total * p
        return p

    def distribution(self, context: Sequence[str] = ()) -> np.ndarray:
        h = self._context(context)
        p = np.full(len(self.targets), 1.0 / len(self.targets))
        for k in range(1, self.order + 1):
            hk = h[len(h) - (k - 1) :] if k > 1 else ()
            row = self.adjusted[k].get(hk)
            if not row:
                continue
            total, types = self.stats[k][hk]
            d = self.discounts[k]
            top = np.zeros(len(self.targets))
            for w, c in row.items():
                top[self.index[w]] = max(c - d, 0.0)
            p = top / total + d * types / total * p
        return p


MODELS: dict[str, type[LanguageModel]] = {
    "mle": MLE,
    "add-k": AddK,
    "interpolated": Interpolated,
    "kneser-ney": KneserNey,
}


def train(
    kind: str,
    sentences: Iterable[Sentence],
    order: int = 3,
    *,
    vocab: Vocab | None = None,
    min_count: int = 2,
    validation: Iterable[Sentence] | None = None,
    **options: float,
) -> LanguageModel:
    """Count ``sentences`` and build the model called ``kind`` (one of ``MODELS``).

    ``vocab`` shares one vocabulary between models (needed to compare perplexities across
    domains); otherwise words seen ``min_count`` times or more form it. ``validation`` fits the
    interpolation weights; ``options`` go to the model (``k=0.1`` for add-k, ``discount=`` for KN).
    """
    if kind not in MODELS:
        raise ValueError(f"Unknown n-gram model {kind!r}; choose one of {sorted(MODELS)}.")
    sentences = [as_words(s) for s in sentences]
    vocab = vocab or Vocab.build(sentences, min_count=min_count)
    model = MODELS[kind](NGramCounts(sentences, order, vocab), **options)
    if isinstance(model, Interpolated) and validation is not None:
        model.fit_weights(validation)
    return model
