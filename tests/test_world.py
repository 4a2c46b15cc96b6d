"""The domain world: definitions are checked, probabilities are exact, generation is deterministic."""

from __future__ import annotations

import itertools
import math
import random
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from course_utils.profiles import get_profile
from course_utils.world import (
    SPLITS,
    DefinitionError,
    corpus_grammar,
    detokenize,
    domain_names,
    entropy_floor,
    generate_corpus,
    generate_task,
    held_out_entities,
    knowledge_words,
    load_domain,
    sentence_logprob,
    task_grammar,
    words,
    world_truth,
)
from course_utils.world.definitions import parse_domain
from course_utils.world.generate import CorpusGrammar, sample_sentence

DOMAINS = ("general", "clinical", "finance", "legal")
TASK_DOMAINS = ("clinical", "finance", "legal")


def tiny_definition(**changes) -> dict:
    """A grammar small enough to enumerate every clause it can write."""
    raw = {
        "name": "tiny",
        "continue_probability": 0.4,
        "zipf": 1.0,
        "lexicon": {"pet": ["a cat", "the old dog"], "verb": ["sleeps", "runs", "eats"]},
        "entities": {
            "colour": ["red", "blue"],
            "toy": [
                {"text": "ball", "colour": "red"},
                {"text": "kite", "colour": "blue"},
                {"text": "box", "colour": "red"},
            ],
        },
        "corpus": [
            {"weight": 2, "template": "{pet} {verb}"},
            {"weight": 1, "template": "the {t=toy} is {t.colour}"},
            {"weight": 1, "template": "{c=colour} toys include the {t=toy where colour=c}"},
        ],
    }
    raw.update(changes)
    return raw


def test_every_domain_file_loads_and_names_itself():
    assert set(DOMAINS) <= set(domain_names())
    for name in DOMAINS:
        assert load_domain(name).name == name


def test_words_and_detokenize_round_trip():
    tokens = ["started", "on", "bravinolol", ";", "no", "chest-pain", "."]
    text = detokenize(tokens)
    assert text == "Started on bravinolol; no chest-pain."
    assert words(text) == tokens
    with pytest.raises(TypeError):
        words(["not", "a", "string"])


def test_invented_drug_names_end_in_their_class_stem_and_are_long():
    clinical = load_domain("clinical")
    for drug in clinical.entities["drug"]:
        stem = clinical.follow(drug, ("class", "stem"))
        assert drug.text.endswith(stem)
        assert len(drug.text) >= 8, drug.text  # several syllables: a general vocabulary must split it


@pytest.mark.parametrize(
    "change, message",
    [
        ({"corpus": [{"weight": 1, "template": "{nothing} here"}]}, "neither a word list"),
        ({"corpus": [{"weight": 1, "template": "the {t=gadget}"}]}, "not an entity type"),
        ({"corpus": [{"weight": 1, "template": "the {t=toy} is {t.size}"}]}, "has no attribute 'size'"),
        ({"corpus": [{"weight": -1, "template": "{pet} {verb}"}]}, "positive number"),
        ({"corpus": [{"weight": 1, "template": "{pet} {verb}; {pet}"}]}, "may not contain ';'"),
        ({"lexicon": {"pet": ["A Cat"]}}, "lower case"),
        ({"lexicon": {"pet": ["cat", "cat"]}}, "twice"),
        ({"continue_probability": 1.5}, "continue_probability"),
    ],
)
def test_bad_definitions_fail_with_a_message_that_says_what_is_wrong(change, message):
    with pytest.raises(DefinitionError, match=message):
        CorpusGrammar.of(parse_domain(tiny_definition(**change), "tiny.yaml"))


def test_a_drug_whose_name_does_not_match_its_stem_is_rejected():
    raw = tiny_definition(
        entities={
            "drug_class": [{"text": "beta blocker", "stem": "olol"}],
            "drug": [{"text": "wrongname", "class": "beta blocker"}],
        }
    )
    with pytest.raises(DefinitionError, match="stem is '-olol'"):
        parse_domain(raw, "tiny.yaml")


def test_probabilities_of_a_tiny_grammar_sum_to_one():
    grammar = CorpusGrammar.of(parse_domain(tiny_definition(), "tiny.yaml"))
    rng = random.Random(0)
    clauses = set()
    for _ in range(3000):  # every clause of this grammar appears many times in 3000 draws
        tokens, _ = sample_sentence(grammar, rng)
        clause: list[str] = []
        for token in tokens:
            if token in (";", "."):
                clauses.add(tuple(clause))
                clause = []
            else:
                clause.append(token)
    assert len(clauses) == 2 * 3 + 3 + 3  # pets x verbs, toys, colour-toy pairs
    p = grammar.domain.continue_probability
    for max_clauses in (1, 2, 3):
        total = 0.0
        for k in range(1, max_clauses + 1):
            for combo in itertools.product(sorted(clauses), repeat=k):
                text = detokenize([t for c in combo for t in (*c, ";")][:-1] + ["."])
                logprob, count = sentence_logprob(grammar, text)
                assert count == 1 and logprob <= 0
                total += math.exp(logprob)
        # all sentences of at most K clauses carry exactly the mass of stopping within K clauses
        assert total == pytest.approx(1 - p**max_clauses, abs=1e-12)


def test_a_domain_of_single_clauses_never_writes_a_semicolon():
    grammar = CorpusGrammar.of(parse_domain({**tiny_definition(), "continue_probability": 0.0}, "tiny.yaml"))
    rng = random.Random(0)
    sentences = [sample_sentence(grammar, rng) for _ in range(200)]
    assert all(";" not in tokens for tokens, _ in sentences)
    one = detokenize([*sentences[0][0]])
    assert sentence_logprob(grammar, one)[0] == pytest.approx(sentences[0][1], abs=1e-9)
    two = detokenize([t for t in sentences[0][0] if t != "."] + [";"] + list(sentences[1][0]))
    assert sentence_logprob(grammar, two) == (-math.inf, 0)


def themed_definition(**changes) -> dict:
    """The tiny grammar as documents: a sentence about a toy or a colour keeps the document on that colour."""
    return tiny_definition(theme={"toy": "colour", "colour": "text"}, **changes)


def test_a_themed_document_keeps_its_theme_and_its_probabilities_sum_to_one():
    grammar = CorpusGrammar.of(parse_domain(themed_definition(), "tiny.yaml"))
    assert grammar.separator == "." and grammar.themed == (False, True, True)
    domain = grammar.domain
    clauses = set()
    rng = random.Random(0)
    for _ in range(3000):
        tokens, logprob = sample_sentence(grammar, rng)
        sentences = " ".join(tokens).split(" . ")
        clauses.update(tuple(s.replace(" .", "").split()) for s in sentences)
        themes = {domain.theme_of(e) for e in domain.by_text.values() if f" {e.text} " in f" {' '.join(tokens)} "}
        assert len(themes - {None}) <= 1, tokens  # a red document never names a blue toy
        assert sentence_logprob(grammar, detokenize(tokens))[0] == pytest.approx(logprob, abs=1e-9)
    assert len(clauses) == 2 * 3 + 3 + 3
    p = domain.continue_probability
    for max_sentences in (1, 2, 3):
        total = 0.0
        for k in range(1, max_sentences + 1):
            for combo in itertools.product(sorted(clauses), repeat=k):
                text = detokenize([t for c in combo for t in (*c, ".")])
                logprob, count = sentence_logprob(grammar, text)
                if count:  # documents that mix themes or kinds have no derivation
                    assert count == 1 and logprob <= 0
                    total += math.exp(logprob)
        assert total == pytest.approx(1 - p**max_sentences, abs=1e-12)
    off_theme = "The ball is red. The kite is blue."
    assert sentence_logprob(grammar, off_theme) == (-math.inf, 0)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"theme": {"gadget": "colour"}}, "not an entity type"),
        ({"theme": {"toy": 3}}, "attribute path"),
        ({"theme": {"toy": "size"}}, "has no attribute 'size'"),
        ({"theme": ["toy"]}, "must map entity types"),
    ],
)
def test_a_bad_theme_fails_with_a_message_that_says_what_is_wrong(change, message):
    with pytest.raises(DefinitionError, match=message):
        parse_domain(tiny_definition(**change), "tiny.yaml")


def test_a_sentence_may_set_its_theme_only_once():
    raw = themed_definition(corpus=[{"weight": 1, "template": "the {t=toy} and the {u=toy}"}])
    with pytest.raises(DefinitionError, match="set its theme once"):
        CorpusGrammar.of(parse_domain(raw, "tiny.yaml"))


def test_empirical_frequencies_match_the_recorded_probabilities():
    grammar = CorpusGrammar.of(parse_domain(tiny_definition(), "tiny.yaml"))
    rng = random.Random(1)
    n = 20_000
    draws = [sample_sentence(grammar, rng) for _ in range(n)]
    frequency = Counter(detokenize(t) for t, _ in draws)
    recorded = {detokenize(t): lp for t, lp in draws}
    for text, count in frequency.most_common(5):
        expected = math.exp(recorded[text])
        assert abs(count / n - expected) < 4 * math.sqrt(expected * (1 - expected) / n), text


def test_an_ambiguous_grammar_is_caught_by_counting_derivations():
    raw = tiny_definition(corpus=[{"weight": 1, "template": "{pet} {verb}"}, {"weight": 1, "template": "a cat {verb}"}])
    grammar = CorpusGrammar.of(parse_domain(raw, "tiny.yaml"))
    _, count = sentence_logprob(grammar, "A cat sleeps.")
    assert count == 2


@pytest.mark.parametrize("domain", DOMAINS)
def test_each_generated_sentence_has_one_derivation_with_the_recorded_logprob(domain):
    grammar = corpus_grammar(domain)
    for text, logprob in generate_corpus(domain, 400, 3):
        parsed, count = sentence_logprob(grammar, text)
        assert count == 1, text
        assert logprob < 0 and parsed == pytest.approx(logprob, abs=1e-9)


def test_entropy_floor_is_the_average_negative_logprob_per_word():
    floor = entropy_floor(["A b.", "C."], [-3.0, -1.0])
    assert floor.words == (3 + 1) + (2 + 1)  # words(".") counts the full stop; one </s> per sentence
    assert floor.nats_per_word == pytest.approx(4 / 7)
    assert floor.perplexity == pytest.approx(math.exp(4 / 7))
    with pytest.raises(ValueError, match="log-probability"):
        entropy_floor(["A."], [0.5])


def test_fast_profile_generates_every_corpus_and_task_quickly():
    profile = get_profile("fast")
    generate_corpus.cache_clear()
    generate_task.cache_clear()
    start = time.perf_counter()
    for domain in DOMAINS:
        assert len(generate_corpus(domain, profile.corpus_sentences, 11)) == profile.corpus_sentences
    for domain in TASK_DOMAINS:
        splits = generate_task(domain, profile.task_train, profile.task_eval, 11)
        assert set(splits) == set(SPLITS) and len(splits["train"]) == profile.task_train
    assert time.perf_counter() - start < 10


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=10_000), domain=st.sampled_from(DOMAINS))
def test_same_seed_same_corpus_other_seed_other_corpus(seed, domain):
    first = generate_corpus(domain, 200, seed)
    generate_corpus.cache_clear()
    assert generate_corpus(domain, 200, seed) == first  # recomputed, not cached
    assert generate_corpus(domain, 200, seed + 1) != first


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=10_000), domain=st.sampled_from(TASK_DOMAINS))
def test_same_seed_same_task_and_no_held_out_entity_leaks_into_labeled_splits(seed, domain):
    splits = generate_task(domain, 300, 100, seed)
    generate_task.cache_clear()
    assert generate_task(domain, 300, 100, seed) == splits
    assert generate_task(domain, 300, 100, seed + 1) != splits
    held = held_out_entities(domain, seed)
    labeled = " ".join(t for split in ("train", "validation", "test", "negation") for t, _ in splits[split]).lower()
    for entity in held:
        assert f" {entity.split()[-1]}" not in f" {labeled}", entity  # the entity's head word never appears
    unseen_text = " ".join(t for t, _ in splits["unseen_entities"]).lower()
    assert all(entity in unseen_text for entity in held)


@pytest.mark.parametrize("domain", TASK_DOMAINS)
def test_label_noise_rate_is_close_to_the_recorded_one(domain):
    """Count how often the annotated label differs from the label of the affirmed cues in clean splits."""
    grammar = task_grammar(domain)
    splits = generate_task(domain, 2500, 10, 5)
    noise = grammar.spec.label_noise
    flips = 0
    rows = splits["train"]
    for text, label in rows:
        padded = f" {' '.join(words(text))} "
        found = {grammar.label_of[e] for e in grammar.label_of if f" {e} " in padded}
        # the clean label is one of the labels mentioned; a flip makes the annotation another one
        flips += label not in found
    # a flipped label can land on a mentioned distractor label, which this count misses
    assert flips / len(rows) == pytest.approx(noise, abs=0.03)


def test_world_truth_records_floors_and_ceilings():
    truth = world_truth("fast", 0)
    assert set(DOMAINS) <= set(truth.corpora) and set(TASK_DOMAINS) <= set(truth.tasks)
    for floor in truth.corpora.values():
        assert 1 < floor.perplexity < 20
    clinical = truth.tasks["clinical"]
    assert clinical.bayes_ceiling == pytest.approx(1 - clinical.label_noise)
    assert len(clinical.labels) >= 5 and max(clinical.label_prior.values()) >= 3 * min(clinical.label_prior.values())
    assert len(truth.tasks["finance"].labels) == 3 and len(truth.tasks["legal"].labels) >= 5
    assert truth.to_dict()["corpora"]["general"]["perplexity"] == pytest.approx(truth.corpora["general"].perplexity)


def test_a_broken_domain_file_names_itself(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\ncorpus: [\n")
    with pytest.raises(DefinitionError, match="broken.yaml: not valid YAML"):
        load_domain(path)
    with pytest.raises(ValueError, match="Unknown domain 'medcal'"):
        load_domain("medcal")


def test_a_task_without_a_prior_for_every_label_is_rejected():
    import yaml

    from course_utils.paths import data_dir

    raw = yaml.safe_load((data_dir() / "clinical.yaml").read_text())
    raw["task"]["labels"].pop("rheumatology")
    with pytest.raises(DefinitionError, match="prior for each specialty"):
        parse_domain(raw, "clinical.yaml")


def test_the_general_domain_borrows_the_clinical_health_vocabulary_unchanged():
    general, clinical = load_domain("general"), load_domain("clinical")
    for type_name in ("specialty", "symptom", "condition"):
        ours = [(e.text, {k: str(v) for k, v in e.attrs.items()}) for e in general.entities[type_name]]
        theirs = [(e.text, {k: str(v) for k, v in e.attrs.items()}) for e in clinical.entities[type_name]]
        assert ours == theirs, type_name
    assert "drug" not in general.entities and "drug_class" not in general.entities


@pytest.mark.parametrize(
    "borrow, message",
    [
        ({"clinical": ["spaceship"]}, "defines no entity type 'spaceship'"),
        ({"clinical": "symptom"}, "must list entity types"),
        ({"clinical": ["specialty"], "nowhere": ["x"]}, "Unknown domain 'nowhere'"),
        (["clinical"], "must map a domain to entity types"),
    ],
)
def test_bad_borrowing_fails_with_a_message_that_says_what_is_wrong(borrow, message):
    with pytest.raises((DefinitionError, ValueError), match=message):
        parse_domain(tiny_definition(borrow=borrow), "tiny.yaml")


def test_a_type_both_borrowed_and_defined_is_rejected():
    raw = tiny_definition(borrow={"clinical": ["specialty"]})
    raw["entities"] = {**raw["entities"], "specialty": ["dentistry"]}
    with pytest.raises(DefinitionError, match="both borrowed"):
        parse_domain(raw, "tiny.yaml")


def test_knowledge_words_are_entity_words_without_the_frame_words():
    words = set(knowledge_words("clinical"))
    assert {"bravinolol", "beta", "blocker", "cardiology", "wheezing"} <= words
    assert not {"the", "patient", "is", "drug", "clinics", "mg"} & words
    assert {"heron", "bird", "she", "cardiology"} <= set(knowledge_words("general"))
