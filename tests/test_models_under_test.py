"""The models notebooks 12–15 evaluate: one call loads (or builds) them and scores each on every split."""

from __future__ import annotations

import numpy as np
import torch
from tiny import TINY_PROFILE

from course_utils.models_under_test import (
    CHALLENGES,
    COUNTEREXAMPLE_MODELS,
    MODELS,
    SPLITS,
    ZERO_SHOT_PROMPTS,
    add_counterexample_models,
    fit_bag_of_words,
    models_under_test,
)
from course_utils.profiles import get_profile

# The specialty names must be single tokens for the zero-shot prompt's verbaliser: a 600-token vocabulary has them.
TINY = get_profile(
    TINY_PROFILE,
    vocab_size=600,
    batch_size=16,
    dapt_steps=4,
    dapt_eval_texts=4,
    task_train=60,
    task_eval=24,
    finetune_epochs=1,
)


def test_every_model_is_scored_on_every_split_and_loaded_from_the_cache_the_second_time(cache_dir, capsys):
    suite = models_under_test(TINY, seed=0)
    built = capsys.readouterr().out
    assert "Building the clinical teacher" in built and "Building the clinical distilled student" in built
    assert suite.models == list(MODELS)
    for (name, split), logits in suite.logits.items():
        assert logits.shape == (len(suite.y[split]), len(suite.labels)), (name, split)
        probabilities = logits.softmax(-1)  # a bag of words gives -inf to a label no training note has
        assert not probabilities.isnan().any(), (name, split)
        torch.testing.assert_close(probabilities.sum(-1), torch.ones(len(logits)), msg=f"{name}, {split}")
    assert {split for _, split in suite.logits} == set(SPLITS[1:])  # train is encoded, not scored
    chosen = next(wording for wording, text in ZERO_SHOT_PROMPTS.items() if text == suite.prompt.prompt)
    assert suite.prompt_accuracy[chosen] == max(suite.prompt_accuracy.values())  # chosen on validation
    table = suite.accuracies()
    assert list(table.index) == list(MODELS) and list(table.columns) == list(CHALLENGES)
    assert ((table >= 0) & (table <= 1)).all().all()

    again = models_under_test(TINY, seed=0)
    assert "Building" not in capsys.readouterr().out
    for key, logits in suite.logits.items():
        torch.testing.assert_close(logits, again.logits[key], msg=str(key))

    add_counterexample_models(again)
    assert again.models == [*MODELS, *COUNTEREXAMPLE_MODELS]
    refit = again.bags["bag of words + counterexamples"]
    assert refit.vectorizer is again.bags["bag of words"].vectorizer  # the same words, other notes
    assert refit.model.C == again.bags["bag of words"].model.C


def test_the_bag_of_words_chooses_its_regularisation_on_validation():
    train = ["fever and cough", "cough at night", "rash on the arm", "itchy rash", "sore knee", "knee pain"] * 5
    labels = [0, 0, 1, 1, 2, 2] * 5
    bag = fit_bag_of_words(train, labels, ["dry cough", "red rash", "stiff knee"], [0, 1, 2])
    log_probabilities = bag.logits(["a cough", "a rash", "a knee"])
    assert log_probabilities.shape == (3, 3)
    np.testing.assert_allclose(log_probabilities.exp().sum(-1).numpy(), 1.0, rtol=1e-5)
    assert log_probabilities.argmax(-1).tolist() == [0, 1, 2]
    assert bag.parameters == 3 * len(bag.vectorizer.vocabulary_) + 3  # a weight per word and label, a bias per label

    four = fit_bag_of_words(train, labels, ["dry cough"], [0], num_labels=4)  # label 3 is in no training note
    scores = four.logits(["a cough"])
    assert scores.shape == (1, 4) and scores[0, 3] == -torch.inf and scores[0, :3].exp().sum() > 0.999
