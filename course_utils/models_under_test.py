"""The models that notebooks 12–15 evaluate, loaded once and scored on every split of the clinical task.

    suite = models_under_test(profile, seed)
    suite.logits["DAPT · full", "test"]   # (notes, labels) scores
    suite.accuracies()                    # every model on test and on the challenge sets

Each evaluation notebook starts from this one call, so that its own idea comes first instead of
after a page of loading. The networks are cached artifacts (``course_utils.recipes``), built with
the recipes the teaching notebooks use; the bag of words (a logistic regression) and the zero-shot
prompt (a wording chosen on validation) are fit here, because they take seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import pandas as pd
import torch
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from tqdm.auto import tqdm
from transformers import BertForMaskedLM, PreTrainedTokenizerFast

from course_utils.artifacts import get, get_dapt_bert, get_tokenizer
from course_utils.classifier import EncodedSplit, SequenceClassifier, encode_split, predict_logits
from course_utils.data import counterexamples, load_task, task_info
from course_utils.profiles import Profile, get_profile
from course_utils.prompting import cloze_logits

#: Every split a model is scored on (``train`` is encoded but not scored).
SPLITS = ("train", "validation", "test", "unseen_entities", "negation", "typos")
#: The splits a model is judged on: ``test`` and the three challenge sets.
CHALLENGES = ("test", "unseen_entities", "negation", "typos")
#: The networks trained on labels, by the name the notebooks use, and the cache entry each one is.
CACHED = {
    "random init": "classifier_random",
    "general": "classifier_general",
    "DAPT · head only": "classifier_dapt_head_only",
    "DAPT · LoRA": "classifier_dapt_lora",
    "DAPT · full": "teacher",
    "distilled student": "student",
}
#: Every model under test, in the order the tables show them.
MODELS = (
    "bag of words",
    "random init",
    "general",
    "DAPT · head only",
    "DAPT · LoRA",
    "DAPT · full",
    "DAPT · zero-shot prompt",
    "distilled student",
)
#: The two models trained with counterexamples as well (notebook 14), with ``counterexamples=True``.
COUNTEREXAMPLE_MODELS = ("bag of words + counterexamples", "DAPT · full + counterexamples")
#: The cloze wordings the zero-shot prompt chooses from on ``validation`` (notebook 10 teaches the method).
ZERO_SHOT_PROMPTS = {
    "seen in": "This patient should be seen in the [MASK] clinic.",
    "managed by": "This is managed by [MASK].",
    "note from": "This note comes from [MASK].",
}
#: The bag of words' regularisation strengths, one of which validation accuracy chooses.
BAG_OF_WORDS_C = (0.1, 1.0, 10.0)
#: A word: lower-case letters and digits, with inner apostrophes or hyphens ("crohn's", "beta-blocker").
WORD_PATTERN = r"[a-z0-9]+(?:['-][a-z0-9]+)*"


@dataclass
class BagOfWords:
    """A logistic regression on word counts: the baseline with no pretraining and no word order."""

    vectorizer: CountVectorizer
    model: LogisticRegression
    num_labels: int

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """Log-probabilities of each label, (n, labels), so that every model's scores look alike.

        A label no training note carries gets probability 0 (log-probability -inf), not a missing column."""
        scores = np.full((len(texts), self.num_labels), -np.inf)
        scores[:, self.model.classes_] = self.model.predict_log_proba(self.vectorizer.transform(texts))
        return torch.from_numpy(scores).float()

    def refit(self, texts: Sequence[str], labels: Sequence[int]) -> BagOfWords:
        """The same vocabulary and regularisation trained on other notes (notebook 14 adds counterexamples)."""
        model = LogisticRegression(C=self.model.C, max_iter=3000).fit(self.vectorizer.transform(texts), list(labels))
        return BagOfWords(self.vectorizer, model, self.num_labels)

    @property
    def parameters(self) -> int:
        return int(self.model.coef_.size + self.model.intercept_.size)


def fit_bag_of_words(
    train_texts: Sequence[str],
    train_labels: Sequence[int],
    valid_texts: Sequence[str],
    valid_labels: Sequence[int],
    num_labels: int | None = None,
) -> BagOfWords:
    """Counts of the training notes' words, and the logistic regression whose ``C`` validation prefers.

    ``num_labels`` defaults to one more than the largest label seen in either split."""
    vectorizer = CountVectorizer(token_pattern=WORD_PATTERN)
    train, valid = vectorizer.fit_transform(train_texts), vectorizer.transform(valid_texts)
    fits = (LogisticRegression(C=c, max_iter=3000).fit(train, list(train_labels)) for c in BAG_OF_WORDS_C)
    best = max(fits, key=lambda model: model.score(valid, list(valid_labels)))
    return BagOfWords(vectorizer, best, num_labels or max(*train_labels, *valid_labels) + 1)


@dataclass
class ZeroShotPrompt:
    """A masked LM used as a classifier: it fills the prompt's ``[MASK]`` with one of the label names."""

    mlm: BertForMaskedLM
    tokenizer: PreTrainedTokenizerFast
    prompt: str
    labels: list[str]
    max_length: int

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """The masked LM's scores for the label names at the ``[MASK]``: (n, labels)."""
        return cloze_logits(self.mlm, self.tokenizer, list(texts), self.prompt, self.labels, max_length=self.max_length)


@dataclass
class ModelsUnderTest:
    """The clinical task, the models under test and their scores on every split."""

    profile: Profile
    seed: int
    tokenizer: PreTrainedTokenizerFast
    task: datasets.DatasetDict
    labels: list[str]
    info: dict[str, Any]  # label noise and Bayes ceiling of the generated task
    splits: dict[str, EncodedSplit]
    y: dict[str, np.ndarray]  # annotated labels of each split
    classifiers: dict[str, SequenceClassifier]  # the networks, in eval mode
    bags: dict[str, BagOfWords]  # the bags of words, by model name
    prompt: ZeroShotPrompt
    prompt_accuracy: dict[str, float]  # validation accuracy of each wording in ZERO_SHOT_PROMPTS
    logits: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)  # (model, split) -> (n, labels)

    @property
    def models(self) -> list[str]:
        """The models scored so far, in the order they were added."""
        return list(dict.fromkeys(name for name, _ in self.logits))

    @property
    def predictions(self) -> dict[tuple[str, str], np.ndarray]:
        """(model, split) -> predicted label of every note."""
        return {key: value.argmax(-1).numpy() for key, value in self.logits.items()}

    @property
    def majority(self) -> int:
        """The commonest training label: what a majority-class baseline always answers."""
        return int(np.bincount(self.y["train"]).argmax())

    def add(self, name: str, scores: Callable[[str], torch.Tensor]) -> None:
        """Score model ``name`` on every split but ``train``; ``scores(split)`` returns its (n, labels) logits."""
        for split in SPLITS[1:]:
            self.logits[name, split] = scores(split)

    def accuracies(self, splits: Sequence[str] = CHALLENGES) -> pd.DataFrame:
        """Accuracy of every scored model (rows) on each split (columns)."""
        rows = {m: {s: float(np.mean(self.logits[m, s].argmax(-1).numpy() == self.y[s])) for s in splits}
                for m in self.models}  # fmt: skip
        return pd.DataFrame(rows).T


def models_under_test(
    profile: str | Profile = "auto",
    seed: int = 0,
    *,
    counterexamples_too: bool = False,
    verbose: bool = True,
) -> ModelsUnderTest:
    """Load (or build) every model of ``MODELS`` and score it on every split of the clinical task.

    With ``counterexamples_too``, also the two models of ``COUNTEREXAMPLE_MODELS``, trained on the
    labeled notes plus as many counterexamples (notebook 14 shows why)."""
    p = get_profile(profile)
    tokenizer = get_tokenizer(p, seed, verbose=verbose)
    task = load_task("clinical", p, seed)
    labels = task["train"].features["label"].names
    splits = {s: encode_split(tokenizer, task[s]["text"], task[s]["label"], p.max_seq_len) for s in SPLITS}
    classifiers = {name: get(entry, p, seed, verbose=verbose).eval() for name, entry in CACHED.items()}
    texts = {s: list(task[s]["text"]) for s in SPLITS}
    bag = fit_bag_of_words(
        texts["train"], task["train"]["label"], texts["validation"], task["validation"]["label"], len(labels)
    )
    mlm = get_dapt_bert(p, seed, verbose=verbose).eval()
    prompts = {w: ZeroShotPrompt(mlm, tokenizer, text, labels, p.max_seq_len) for w, text in ZERO_SHOT_PROMPTS.items()}
    y = {s: splits[s].labels.numpy() for s in SPLITS}
    accuracy = {w: float(np.mean(z.logits(texts["validation"]).argmax(-1).numpy() == y["validation"]))
                for w, z in prompts.items()}  # fmt: skip
    suite = ModelsUnderTest(p, seed, tokenizer, task, labels, task_info(task["train"]), splits, y, classifiers,
                            {"bag of words": bag}, prompts[max(accuracy, key=accuracy.get)], accuracy)  # fmt: skip
    _score(suite, MODELS, verbose)
    if counterexamples_too:
        add_counterexample_models(suite, verbose=verbose)
    return suite


def add_counterexample_models(suite: ModelsUnderTest, *, verbose: bool = True) -> None:
    """Add and score ``COUNTEREXAMPLE_MODELS``: the DAPT BERT fine-tuned on the labeled notes plus as many
    counterexamples (a cached artifact), and the bag of words refit on the same notes."""
    extra = counterexamples("clinical", suite.profile.task_train, suite.seed)
    entry = get("classifier_dapt_counterexamples", suite.profile, suite.seed, verbose=verbose)
    suite.classifiers["DAPT · full + counterexamples"] = entry.eval()
    texts = list(suite.task["train"]["text"]) + list(extra["text"])
    labels = list(suite.task["train"]["label"]) + list(extra["label"])
    suite.bags["bag of words + counterexamples"] = suite.bags["bag of words"].refit(texts, labels)
    _score(suite, COUNTEREXAMPLE_MODELS, verbose)


def _score(suite: ModelsUnderTest, names: Sequence[str], verbose: bool) -> None:
    """Every model of ``names`` behind one interface: its (n, labels) scores on each split."""
    texts = {s: list(suite.task[s]["text"]) for s in SPLITS}
    for name in tqdm(names, desc="scoring", disable=not verbose):
        if name in suite.bags:
            suite.add(name, lambda s, bag=suite.bags[name]: bag.logits(texts[s]))
        elif name == "DAPT · zero-shot prompt":
            suite.add(name, lambda s: suite.prompt.logits(texts[s]))
        else:
            suite.add(name, lambda s, model=suite.classifiers[name]: predict_logits(model, suite.splits[s]))
