"""N-gram models: every one is a proper distribution, counts are right, and the usual ordering holds."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_utils import ngram
from course_utils.data import load_corpus
from course_utils.world import words

TOY = ["the cat sat .", "the cat ran .", "a dog sat .", "the dog sat on the mat ."]


@pytest.fixture(scope="module")
def general() -> dict[str, list[list[str]]]:
    return {
        split: [words(t) for t in load_corpus("general", "fast", 0, split)["text"]]
        for split in ("train", "validation", "test")
    }


def all_models(train, validation, order=3):
    vocab = ngram.Vocab.build(train)
    return [
        ngram.train("mle", train, order, vocab=vocab),
        ngram.train("add-k", train, order, vocab=vocab, k=1.0),
        ngram.train("add-k", train, order, vocab=vocab, k=0.01),
        ngram.train("interpolated", train, order, vocab=vocab, validation=validation),
        ngram.train("kneser-ney", train, order, vocab=vocab),
    ]


def test_counts_are_plain_dictionaries_of_what_was_seen():
    vocab = ngram.Vocab.build(TOY, min_count=1)
    counts = ngram.NGramCounts(TOY, 2, vocab)
    assert counts[2][("the",)] == Counter({"cat": 2, "dog": 1, "mat": 1})
    assert counts[2][(ngram.BOS,)] == Counter({"the": 3, "a": 1})
    assert counts.tokens == sum(len(words(s)) + 1 for s in TOY)


def test_mle_is_relative_frequency_and_zero_for_the_unseen():
    model = ngram.train("mle", TOY, 2, min_count=1)
    assert model.prob("cat", ["the"]) == pytest.approx(2 / 4)
    assert model.prob("sat", ["the"]) == 0.0
    assert model.perplexity(["the mat sat ."]) == math.inf


def test_unknown_words_become_unk():
    vocab = ngram.Vocab.build(TOY, min_count=2)
    assert "mat" not in vocab and vocab.map("mat") == ngram.UNK and "the" in vocab
    model = ngram.train("kneser-ney", TOY, 2, vocab=vocab)
    assert model.prob("zebra", ["the"]) == pytest.approx(model.prob(ngram.UNK, ["the"]))


@settings(max_examples=10, deadline=None)
@given(context=st.lists(st.sampled_from(["the", "cat", "a", "dog", "sat", "on", ".", "zebra", ngram.BOS]), max_size=3))
def test_every_model_sums_to_one_on_toy_contexts(context):
    for model in all_models(TOY, TOY[:2], order=3):
        total = sum(model.prob(w, context) for w in model.targets)
        assert total == pytest.approx(1.0, abs=1e-9), (model, context)


def test_every_model_sums_to_one_on_real_contexts(general):
    rng = random.Random(0)
    models = all_models(general["train"][:1500], general["validation"][:200])
    sentences = rng.sample(general["test"], 5)
    contexts = [s[:i] for s in sentences for i in range(0, len(s), 3)] + [["never", "seen"]]
    for model in models:
        for context in contexts:
            distribution = model.distribution(context)
            assert distribution.shape == (len(model.targets),) and (distribution >= 0).all()
            assert distribution.sum() == pytest.approx(1.0, abs=1e-9), (model, context)
            word = context[-1] if context else "the"
            assert distribution[model.index[model.vocab.map(word)]] == pytest.approx(model.prob(word, context))


def test_higher_orders_and_better_smoothing_lower_perplexity(general):
    vocab = ngram.Vocab.build(general["train"])
    train, validation, test = general["train"], general["validation"], general["test"]
    kn = {n: ngram.train("kneser-ney", train, n, vocab=vocab).perplexity(test) for n in (1, 2, 3)}
    assert kn[1] > kn[2] > kn[3]
    add_one = ngram.train("add-k", train, 3, vocab=vocab, k=1.0).perplexity(test)
    interpolated = ngram.train("interpolated", train, 3, vocab=vocab, validation=validation).perplexity(test)
    assert add_one > interpolated > kn[3]


def test_interpolation_weights_are_fit_to_held_out_text(general):
    model = ngram.train("interpolated", general["train"][:2000], 3)
    before = sum(model.logprob(s) for s in general["validation"])
    model.fit_weights(general["validation"])
    assert model.weights.sum() == pytest.approx(1.0) and model.weights[-1] == model.weights.max()
    assert sum(model.logprob(s) for s in general["validation"]) > before
    with pytest.raises(ValueError, match="weights"):
        ngram.Interpolated(model.counts, weights=[0.5, 0.5])


def test_sampling_is_seeded_and_temperature_sharpens(general):
    model = ngram.train("kneser-ney", general["train"], 3)
    assert model.sample(3) == model.sample(random.Random(3))
    cold = [" ".join(model.sample(i, temperature=0.1)) for i in range(20)]
    hot = [" ".join(model.sample(i, temperature=3.0)) for i in range(20)]
    assert len(set(cold)) < len(set(hot))
    with pytest.raises(ValueError, match="temperature"):
        model.sample(0, temperature=0)


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="Unknown n-gram model"):
        ngram.train("lstm", TOY)
    with pytest.raises(ValueError, match="empty corpus"):
        ngram.train("mle", [])
    with pytest.raises(ValueError, match="k must be positive"):
        ngram.train("add-k", TOY, k=0)
    with pytest.raises(ValueError, match="order"):
        ngram.train("mle", TOY, order=0)


def test_kneser_ney_uses_continuation_counts_below_the_top_order():
    text = ["new york is big ."] * 5 + ["i like york ."] + ["a big city ."]
    model = ngram.train("kneser-ney", text, 2, min_count=1)
    unigram = {w: c for w, c in model.adjusted[1][()].items()}
    assert unigram["york"] == 2  # seen after two different words, however often
    assert np.isclose(model.distribution(["the"]).sum(), 1.0)
