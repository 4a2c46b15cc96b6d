"""How every model the course caches is built, in one table: its parent, its texts, its steps and learning rate.

    tokenizer (05) ──► general BERT (06) ──► DAPT / replay / TAPT BERT (07)
                                             DAPT BERT ──► teacher (08's full fine-tuning; 11–15)
                                             and the classifiers that notebooks 12–15 evaluate

"How is the DAPT BERT built?" is answered by ``RECIPES["dapt_bert"]``. ``course_utils.artifacts``
builds and caches each entry from its recipe, and derives the entry's cache key from the recipe
itself, the profile fields it declares, its parent's key and the code that builds it. A builder
reads its profile through ``RecipeProfile``, which refuses any field the recipe does not declare,
so a key cannot miss a field its model depends on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from course_utils.profiles import Profile

#: The domains whose text the course vocabulary is trained on (notebook 05 shows why all four).
TOKENIZER_DOMAINS = ("general", "clinical", "finance", "legal")
#: Peak learning rate of the general BERT's pretraining.
GENERAL_BERT_LR = 2e-3
#: How often the general BERT's loss on held-out general documents is recorded during pretraining,
#: and on how many documents (notebook 06 plots it beside the training loss).
GENERAL_BERT_EVALUATIONS, GENERAL_BERT_VALID_TEXTS = 10, 64
#: Peak learning rate of continued pretraining: half the general BERT's, because the model is already
#: trained and large steps would erase more of what it knows than the new text requires.
CONTINUED_LR = 1e-3
#: Warm-up share of continued pretraining: shorter than for a fresh model, whose first gradients are the wild ones.
CONTINUED_WARMUP = 0.06
#: How many evaluations a continued-pretraining run records along the way (the last at its end).
EVALUATIONS_PER_RUN = 4
#: Share of every batch taken from general text when DAPT replays (notebook 07's third run).
REPLAY_RATIO = 0.25
#: TAPT takes this share of DAPT's steps. Its corpus is the task's training notes, a few percent of
#: a domain corpus: a quarter of DAPT's steps already passes over every note about eight times.
TAPT_STEP_SHARE = 1 / 4

#: The profile fields every continued-pretraining run reads: its texts, batches, steps and yardsticks.
_CONTINUED_FIELDS = ("corpus_sentences", "task_train", "task_eval", "batch_size", "dapt_steps", "dapt_eval_texts")
#: The profile fields every classifier's fine-tuning reads: its labeled notes, lengths, batches and epochs.
_CLASSIFIER_FIELDS = ("task_train", "task_eval", "max_seq_len", "batch_size", "finetune_epochs")
#: The sizes of a BERT built from the profile (a classifier from random weights reads them).
_BERT_SIZE_FIELDS = ("hidden_size", "num_layers", "num_heads", "intermediate_size")
#: The fine-tuning recipe the teacher and the classifiers of the evaluation notebook share.
FINETUNE_LR, FINETUNE_MIN_STEPS = 1e-3, 150
#: Strategies that train few weights take larger steps (notebook 08 found 1e-2 best for them).
FEW_WEIGHTS_LR = 1e-2


@dataclass(frozen=True)
class Recipe:
    """How one cached model is built. ``{scope}`` in ``texts`` is the domain or task it is built for."""

    name: str  # the cache entry's name
    parent: str | None  # the cached artifact it starts from (the tokenizer for a model trained from scratch)
    texts: str  # what it trains on
    profile_fields: tuple[str, ...]  # every profile field its builder reads: all of them are in its key
    steps: str | None = None  # the profile field that holds its step count (None: epochs or no training)
    step_share: float = 1.0  # the share of those steps it runs
    lr: float | None = None  # peak learning rate
    warmup_ratio: float | None = None  # share of the steps spent warming up
    salient_masking: bool = False  # entity-aware masking: the scope's knowledge words are masked more often
    replay_ratio: float = 0.0  # share of every batch taken from general text
    evaluations: int = 0  # evaluations recorded along the run (held-out loss or pseudo-perplexities)
    min_steps: int = 0  # fewest optimiser steps (fine-tuning on few examples)
    warm_start_head: bool = False  # the classifier's head starts as a linear probe (LP-FT)
    pooling: str | None = None  # how a classifier pools token vectors
    strategy: str | None = None  # which weights of a classifier train (course_utils.strategies)
    epochs: int | None = None  # passes over the labeled notes (None: the profile's finetune_epochs)
    epoch_factor: int = 1  # multiplies the profile's finetune_epochs (harder data needs more passes)
    counterexamples: bool = False  # as many counterexamples as labeled notes are added (notebook 14)
    width_share: float = 1.0  # a student's width as a share of the profile's hidden size
    unlabeled_share: float = 0.0  # teacher-labeled corpus texts added to a student's data, per labeled note

    def steps_for(self, profile: Profile) -> int:
        """How many optimiser steps the run takes at ``profile``."""
        if self.steps is None:
            raise ValueError(f"The {self.name} recipe counts no steps.")
        return max(1, round(self.step_share * getattr(profile, self.steps)))

    def to_key(self) -> dict[str, Any]:
        """The recipe as plain data, for its cache key."""
        return dataclasses.asdict(self)


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            name="tokenizer",
            parent=None,
            texts="corpus:" + ",".join(TOKENIZER_DOMAINS),
            profile_fields=("corpus_sentences", "vocab_size", "max_seq_len"),
        ),
        Recipe(
            name="general_bert",
            parent="tokenizer",
            texts="corpus:general",
            profile_fields=(
                "corpus_sentences",
                "hidden_size",
                "num_layers",
                "num_heads",
                "intermediate_size",
                "max_seq_len",
                "pretrain_batch_size",
                "pretrain_steps",
            ),  # fmt: skip
            steps="pretrain_steps",
            lr=GENERAL_BERT_LR,
            warmup_ratio=0.1,
            salient_masking=True,
            evaluations=GENERAL_BERT_EVALUATIONS,
        ),
        Recipe(
            name="dapt_bert",
            parent="general_bert",
            texts="corpus:{scope}",
            profile_fields=_CONTINUED_FIELDS,
            steps="dapt_steps",
            lr=CONTINUED_LR,
            warmup_ratio=CONTINUED_WARMUP,
            salient_masking=True,
            evaluations=EVALUATIONS_PER_RUN,
        ),
        Recipe(
            name="replay_bert",
            parent="general_bert",
            texts="corpus:{scope} + corpus:general",
            profile_fields=_CONTINUED_FIELDS,
            steps="dapt_steps",
            lr=CONTINUED_LR,
            warmup_ratio=CONTINUED_WARMUP,
            salient_masking=True,
            replay_ratio=REPLAY_RATIO,
            evaluations=EVALUATIONS_PER_RUN,
        ),
        Recipe(
            name="tapt_bert",
            parent="general_bert",
            texts="task:{scope}",
            profile_fields=_CONTINUED_FIELDS,
            steps="dapt_steps",
            step_share=TAPT_STEP_SHARE,
            lr=CONTINUED_LR,
            warmup_ratio=CONTINUED_WARMUP,
            salient_masking=True,
            evaluations=EVALUATIONS_PER_RUN,
        ),
        Recipe(
            name="teacher",
            parent="dapt_bert",
            texts="task:{scope} (labeled)",
            profile_fields=_CLASSIFIER_FIELDS,
            lr=FINETUNE_LR,
            warmup_ratio=0.1,
            min_steps=FINETUNE_MIN_STEPS,
            warm_start_head=True,
            pooling="mean",
            strategy="full",
        ),
        # The classifiers the evaluation notebook compares with the teacher: its recipe without the
        # probe-started head, from another start or with other weights trained.
        Recipe(
            name="classifier_random",
            parent="tokenizer",
            texts="task:{scope} (labeled)",
            profile_fields=_CLASSIFIER_FIELDS + _BERT_SIZE_FIELDS,
            lr=FINETUNE_LR,
            warmup_ratio=0.1,
            min_steps=FINETUNE_MIN_STEPS,
            pooling="mean",
            strategy="full",
        ),
        Recipe(
            name="classifier_general",
            parent="general_bert",
            texts="task:{scope} (labeled)",
            profile_fields=_CLASSIFIER_FIELDS,
            lr=FINETUNE_LR,
            warmup_ratio=0.1,
            min_steps=FINETUNE_MIN_STEPS,
            pooling="mean",
            strategy="full",
        ),
        Recipe(
            name="classifier_dapt_head_only",
            parent="dapt_bert",
            texts="task:{scope} (labeled)",
            profile_fields=_CLASSIFIER_FIELDS,
            lr=FEW_WEIGHTS_LR,
            warmup_ratio=0.1,
            min_steps=FINETUNE_MIN_STEPS,
            pooling="mean",
            strategy="head_only",
        ),
        Recipe(
            name="classifier_dapt_lora",
            parent="dapt_bert",
            texts="task:{scope} (labeled)",
            profile_fields=_CLASSIFIER_FIELDS,
            lr=FEW_WEIGHTS_LR,
            warmup_ratio=0.1,
            min_steps=FINETUNE_MIN_STEPS,
            pooling="mean",
            strategy="lora",
        ),
        # The DAPT BERT fully fine-tuned on the labeled notes plus as many counterexamples (notes that
        # affirm one cue and deny one of another label), for three times the epochs: the data that
        # notebook 14's negation challenge set asks for.
        Recipe(
            name="classifier_dapt_counterexamples",
            parent="dapt_bert",
            texts="task:{scope} (labeled) + counterexamples:{scope}",
            profile_fields=_CLASSIFIER_FIELDS,
            lr=FINETUNE_LR,
            warmup_ratio=0.1,
            min_steps=FINETUNE_MIN_STEPS,
            pooling="mean",
            strategy="full",
            epoch_factor=3,
            counterexamples=True,
        ),
        # A student a quarter of the teacher's width, distilled on the labeled notes and 2.5 times as
        # many corpus texts, all labeled by the teacher's soft targets (notebook 11's best mode).
        Recipe(
            name="student",
            parent="teacher",
            texts="task:{scope} (labeled) + corpus:{scope} (teacher-labeled)",
            profile_fields=_CLASSIFIER_FIELDS + ("corpus_sentences", "hidden_size", "num_layers"),
            lr=3e-3,
            warmup_ratio=0.1,
            min_steps=200,
            epochs=1,
            pooling="mean",
            width_share=1 / 4,
            unlabeled_share=2.5,
        ),
    )
}

#: Every field a ``Profile`` has.
PROFILE_FIELDS = frozenset(field.name for field in dataclasses.fields(Profile))


class RecipeProfile(Profile):
    """A profile through which a builder reads only the fields its recipe declares (and ``name``).

    Reading any other field raises an error that says which recipe must declare it: the field
    would otherwise shape the model without being part of its cache key.
    """

    def __getattribute__(self, attribute: str) -> Any:
        if attribute in PROFILE_FIELDS and attribute != "name":
            recipe = object.__getattribute__(self, "_recipe")
            if attribute not in recipe.profile_fields:
                raise AttributeError(
                    f"The {recipe.name} recipe reads profile.{attribute} but does not declare it: add "
                    f"{attribute!r} to its profile_fields in course_utils/recipes.py, so that its cache key holds it."
                )
        return object.__getattribute__(self, attribute)


def restricted(profile: Profile, recipe: Recipe) -> RecipeProfile:
    """``profile`` as ``recipe``'s builder may read it."""
    view = RecipeProfile(**{field: getattr(profile, field) for field in PROFILE_FIELDS})
    object.__setattr__(view, "_recipe", recipe)
    return view
