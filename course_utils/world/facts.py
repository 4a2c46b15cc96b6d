"""What a domain's definition states about its entities: their attributes, the facts reached through them,
and which of them the labeled task keeps out (the probes of notebook 07 read the world's truth here).
"""

from __future__ import annotations

from course_utils.world.definitions import Entity, load_domain
from course_utils.world.grammar import Literal, compile_template
from course_utils.world.tasks import held_out_entities
from course_utils.world.text import words


def entity_classes(domain: str = "clinical", entity_type: str = "drug", attribute: str = "class") -> dict[str, str]:
    """Each entity's attribute as the domain file states it (drug -> class for the clinical world)."""
    return {e.text: str(e.attrs[attribute]) for e in load_domain(domain).entities[entity_type]}


def drug_specialties(domain: str = "clinical") -> dict[str, str]:
    """Each drug's specialty, reached through its class (drug -> class -> specialty) as the domain file says."""
    world = load_domain(domain)
    facts = {}
    for drug in world.entities["drug"]:
        specialty = world.follow(drug, ("class", "specialty"))
        facts[drug.text] = specialty.text if isinstance(specialty, Entity) else str(specialty)
    return facts


def unseen_entities(domain: str = "clinical", seed: int = 0, entity_type: str = "drug") -> list[str]:
    """Entities of ``entity_type`` kept out of the labeled task for this seed (only the corpus names them)."""
    names = {e.text for e in load_domain(domain).entities[entity_type]}
    return [e for e in held_out_entities(domain, seed) if e in names]


def knowledge_words(domain: str) -> list[str]:
    """The words that carry a domain's facts: entity names and attribute values, less the frame words.

    A word that also appears in a template's fixed text or a word list ("the", "patient") is left
    out, so entity-aware masking targets "bravinolol", "beta", "cardiology" and "heron", not the
    words around them.
    """
    world = load_domain(domain)
    frame = {w for phrases in world.lexicon.values() for phrase in phrases for w in phrase}
    for _, text in world.corpus:
        for element in compile_template(world, text).elements:
            if isinstance(element, Literal):
                frame.update(element.tokens)
    found: set[str] = set()
    for entities in world.entities.values():
        for entity in entities:
            found.update(entity.tokens)
            for value in entity.attrs.values():
                for item in value if isinstance(value, list) else [value]:
                    found.update(words(item.text if isinstance(item, Entity) else str(item)))
    return sorted(found - frame)
