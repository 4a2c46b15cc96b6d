"""The domain world: a seeded generator of corpora and labeled tasks whose truth is known.

Definitions live in ``data/<domain>.yaml``; this package reads them (``definitions``), compiles
their templates (``grammar``), writes corpora with exact log-probabilities (``generate``) and
labeled tasks with challenge splits (``tasks``), and reports what is known (``truth``) and what
the definitions state about each entity (``facts``).
Most notebooks use ``course_utils.data.load_corpus`` / ``load_task`` instead of this package.
"""

from course_utils.world.definitions import DefinitionError, Domain, Entity, domain_names, load_domain
from course_utils.world.facts import drug_specialties, entity_classes, knowledge_words, unseen_entities
from course_utils.world.generate import corpus_grammar, generate_corpus, sentence_logprob
from course_utils.world.tasks import (
    SPLITS,
    TYPO_RATE,
    add_typos,
    clean_task_labels,
    counterexample_texts,
    generate_task,
    held_out_entities,
    task_grammar,
)
from course_utils.world.text import detokenize, words
from course_utils.world.truth import EntropyFloor, TaskTruth, WorldTruth, entropy_floor, task_truth, world_truth

__all__ = [
    "SPLITS",
    "TYPO_RATE",
    "DefinitionError",
    "Domain",
    "Entity",
    "EntropyFloor",
    "TaskTruth",
    "WorldTruth",
    "add_typos",
    "clean_task_labels",
    "counterexample_texts",
    "corpus_grammar",
    "detokenize",
    "domain_names",
    "drug_specialties",
    "knowledge_words",
    "entity_classes",
    "entropy_floor",
    "generate_corpus",
    "generate_task",
    "held_out_entities",
    "load_domain",
    "sentence_logprob",
    "task_grammar",
    "task_truth",
    "unseen_entities",
    "words",
    "world_truth",
]
