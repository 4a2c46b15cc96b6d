"""What the domain definitions state about their entities (course_utils.world.facts)."""

from __future__ import annotations

import pytest

from course_utils.world import drug_specialties, entity_classes, generate_task, unseen_entities, words


def test_each_drug_has_the_specialty_of_its_class():
    truth = drug_specialties()
    classes = entity_classes()  # drug -> class
    specialty_of_class = entity_classes("clinical", "drug_class", "specialty")
    assert len(truth) == len(classes) == 48 and set(truth.values()) == set(specialty_of_class.values())
    assert truth["bravinolol"] == "cardiology" and truth["adalizumab"] == "rheumatology"
    assert all(truth[drug] == specialty_of_class[cls] for drug, cls in classes.items())


@pytest.mark.parametrize("seed", [0, 1])
def test_unseen_drugs_are_exactly_the_drugs_no_labeled_split_mentions(seed):
    splits = generate_task("clinical", 1200, 300, seed)
    labeled = {
        w for split in ("train", "validation", "test", "negation") for text, _ in splits[split] for w in words(text)
    }
    drugs = set(entity_classes())
    unseen = unseen_entities("clinical", seed)
    assert unseen and set(unseen) <= drugs
    assert {drug for drug in drugs if drug not in labeled} == set(unseen), "a classifier never reads an unseen drug"
    challenge = {w for text, _ in splits["unseen_entities"] for w in words(text)}
    assert set(unseen) <= challenge, "the unseen-entities split is built from them"
    assert unseen_entities("clinical", seed + 1) != unseen, "the seed chooses which drugs are held out"
