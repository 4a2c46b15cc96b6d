"""Read a domain's definition (``data/<domain>.yaml``) and check it, with errors that say what to fix.

A definition has word lists (``lexicon``), typed ``entities`` with attributes, weighted clause
templates for the unlabeled ``corpus`` and, optionally, a labeled ``task``. An attribute whose
value is the text of another entity refers to that entity, so relations read as plain data
(``{text: bravinolol, class: beta blocker}``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from course_utils.paths import data_dir
from course_utils.world.text import words


class DefinitionError(ValueError):
    """A domain file that the generator cannot use; the message names the file and the fix."""


@dataclass(frozen=True, eq=False)
class Entity:
    """One named thing of a domain (a drug, a company, a term) and its attributes as written."""

    type: str
    text: str
    tokens: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Entity({self.type}: {self.text!r})"


@dataclass(frozen=True)
class TaskSpec:
    """How labeled texts of a domain are built (see the ``task`` section of a domain file)."""

    name: str
    description: str
    label_type: str
    label_paths: dict[str, tuple[str, ...]]
    labels: dict[str, float]
    label_noise: float
    held_out_type: str
    held_out_fraction: float
    cues_per_text: tuple[int, int]
    cue_types: dict[str, float]
    distractor_probability: float
    fillers_per_text: tuple[int, int]
    opening: tuple[str, ...]
    filler: tuple[str, ...]
    affirmed: dict[str, tuple[str, ...]]
    negated: dict[str, tuple[str, ...]]


@dataclass(frozen=True, eq=False)
class Domain:
    """A validated domain definition, ready for the grammar."""

    name: str
    description: str
    source: str
    continue_probability: float
    zipf: float
    lexicon: dict[str, tuple[tuple[str, ...], ...]]
    entities: dict[str, tuple[Entity, ...]]
    by_text: dict[str, Entity]
    corpus: tuple[tuple[float, str], ...]
    task: TaskSpec | None
    #: Entity type -> attribute path of its theme (``{symptom: ("specialty",)}``). A domain with a theme
    #: writes documents whose sentences keep to the first sentence's theme; empty means no theme.
    theme: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def resolve(self, value: Any) -> Any:
        """An attribute value as an ``Entity`` when it names one, else the value itself (lists element-wise)."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, str) and value in self.by_text:
            return self.by_text[value]
        return value

    def theme_of(self, entity: Entity) -> str | None:
        """The theme an entity belongs to (a symptom's specialty), or ``None`` for a type without one."""
        path = self.theme.get(entity.type)
        if path is None:
            return None
        if path == ("text",):  # the entity is a theme itself (a specialty)
            return entity.text
        value = self.follow(entity, path)
        return value.text if isinstance(value, Entity) else str(value)

    def follow(self, entity: Entity, path: tuple[str, ...]) -> Any:
        """Follow attribute names from ``entity`` (``("class", "specialty")``); a clear error where one is missing."""
        value: Any = entity
        for step in path:
            if not isinstance(value, Entity):
                raise DefinitionError(
                    f"{self.source}: cannot read '{step}' of {value!r} (path {'.'.join(path)} from {entity.text!r}); "
                    "only entities have attributes."
                )
            if step not in value.attrs:
                raise DefinitionError(
                    f"{self.source}: {value.type} {value.text!r} has no attribute '{step}' "
                    f"(needed by the path {'.'.join(path)}); add it to the entity or fix the template."
                )
            value = self.resolve(value.attrs[step])
        return value


def _fail(source: str, message: str) -> DefinitionError:
    return DefinitionError(f"{source}: {message}")


def _probability(source: str, where: str, value: Any, *, allow_one: bool = False) -> float:
    ok = isinstance(value, (int, float)) and 0 <= value < 1 or (allow_one and value == 1)
    if not ok:
        raise _fail(source, f"{where} must be a number in [0, 1), got {value!r}.")
    return float(value)


def _range(source: str, where: str, value: Any) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)):
        raise _fail(source, f"{where} must be a list [low, high] of two integers, got {value!r}.")
    low, high = value
    if not 0 <= low <= high:
        raise _fail(source, f"{where} needs 0 <= low <= high, got {value!r}.")
    return low, high


def _phrase(source: str, where: str, text: Any) -> tuple[str, ...]:
    """Words of a lexicon entry or entity text; these may not hold the sentence punctuation ; or ."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str) or not text.strip():
        raise _fail(source, f"{where}: expected a non-empty string, got {text!r}.")
    if text != text.lower():
        raise _fail(source, f"{where}: {text!r} must be lower case (sentences are capitalised when written).")
    tokens = tuple(words(text))
    if ";" in tokens or "." in tokens:
        raise _fail(source, f"{where}: {text!r} may not contain ';' or '.', which end clauses and sentences.")
    return tokens


def _with_borrowed(source: str, raw: dict[str, Any]) -> Any:
    """The file's entities, after the types it borrows from other domains (``borrow: {clinical: [symptom]}``).

    Borrowing keeps one definition of shared vocabulary: the general domain talks about everyday
    symptoms with the clinical domain's own entities, not with a copy that could drift from them.
    """
    borrow = raw.get("borrow") or {}
    own = raw.get("entities") or {}
    if not isinstance(borrow, dict):
        raise _fail(source, "'borrow' must map a domain to entity types, e.g. borrow: {clinical: [symptom]}.")
    if not isinstance(own, dict):
        return own  # _entities explains what 'entities' must be
    merged: dict[str, Any] = {}
    for other, types in borrow.items():
        if not isinstance(types, list):
            raise _fail(source, f"borrow.{other} must list entity types, e.g. borrow: {{{other}: [symptom]}}.")
        path = domain_path(other)
        with path.open(encoding="utf-8") as handle:
            theirs = (yaml.safe_load(handle) or {}).get("entities") or {}
        for type_name in types:
            if type_name not in theirs:
                raise _fail(source, f"borrow.{other}: {path.name} defines no entity type {type_name!r}.")
            if type_name in own:
                raise _fail(source, f"entities.{type_name} is both borrowed from {other} and defined here; keep one.")
            merged[type_name] = theirs[type_name]
    merged.update(own)
    return merged


def _entities(source: str, raw: Any) -> tuple[dict[str, tuple[Entity, ...]], dict[str, Entity]]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _fail(source, "'entities' must map a type name to a list of entities.")
    entities: dict[str, tuple[Entity, ...]] = {}
    by_text: dict[str, Entity] = {}
    for type_name, items in raw.items():
        if not isinstance(items, list) or not items:
            raise _fail(source, f"entities.{type_name} must be a non-empty list.")
        made = []
        for item in items:
            attrs = dict(item) if isinstance(item, dict) else {"text": item}
            text = attrs.pop("text", None)
            tokens = _phrase(source, f"entities.{type_name}", text)
            text = str(text)
            if text in by_text:
                raise _fail(
                    source,
                    f"entity text {text!r} is used twice ({by_text[text].type} and {type_name}); texts must be unique.",
                )
            entity = Entity(type=type_name, text=text, tokens=tokens, attrs=attrs)
            by_text[text] = entity
            made.append(entity)
        entities[type_name] = tuple(made)
    return entities, by_text


def _check_references(domain: Domain) -> None:
    """Every list attribute that names entities names existing ones; stems match the names that carry them."""
    for items in domain.entities.values():
        for entity in items:
            for key, value in entity.attrs.items():
                resolved = domain.resolve(value)
                if isinstance(resolved, Entity) and "stem" in resolved.attrs:
                    stem = str(resolved.attrs["stem"])
                    if not entity.text.endswith(stem):
                        raise _fail(
                            domain.source,
                            f"{entity.type} {entity.text!r} has {key} {resolved.text!r}, whose stem is '-{stem}', "
                            f"but the name does not end in it; rename it or change its {key}.",
                        )
                if isinstance(resolved, list):
                    missing = [v for v in resolved if not isinstance(v, Entity)]
                    if missing and len(missing) < len(resolved):
                        raise _fail(
                            domain.source,
                            f"{entity.type} {entity.text!r}: {key} lists {missing!r}, which are not entities of this "
                            "domain (check the spelling against the entity texts).",
                        )


def _task(source: str, raw: Any, entities: dict[str, tuple[Entity, ...]]) -> TaskSpec:
    if not isinstance(raw, dict):
        raise _fail(source, "'task' must be a mapping (see data/README.md for its keys).")
    required = [
        "name",
        "label_type",
        "label_paths",
        "labels",
        "label_noise",
        "held_out",
        "cue_types",
        "opening",
        "affirmed",
        "negated",
    ]
    missing = [k for k in required if k not in raw]
    if missing:
        raise _fail(source, f"task is missing {missing}; see data/README.md for the task keys.")
    label_type = raw["label_type"]
    if label_type not in entities:
        raise _fail(source, f"task.label_type {label_type!r} is not an entity type ({sorted(entities)}).")
    labels = raw["labels"]
    names = {e.text for e in entities[label_type]}
    if not isinstance(labels, dict) or set(labels) != names:
        raise _fail(source, f"task.labels must give a prior for each {label_type}: {sorted(names)}.")
    if any(not isinstance(p, (int, float)) or p <= 0 for p in labels.values()):
        raise _fail(source, "task.labels: every prior must be a positive number.")
    held = raw["held_out"]
    if not isinstance(held, dict) or held.get("type") not in entities:
        raise _fail(source, f"task.held_out must be {{type: <entity type>, fraction: <0..1>}}, got {held!r}.")
    cue_types = {str(k): float(v) for k, v in dict(raw["cue_types"]).items()}
    for t in cue_types:
        if t not in entities:
            raise _fail(source, f"task.cue_types names {t!r}, which is not an entity type.")
        if t not in raw["label_paths"]:
            raise _fail(source, f"task.label_paths needs a path for cue type {t!r}.")
        if t not in raw["affirmed"]:
            raise _fail(source, f"task.affirmed needs templates for cue type {t!r}.")
    if held["type"] not in cue_types:
        raise _fail(source, f"task.held_out.type {held['type']!r} must be one of the cue_types {sorted(cue_types)}.")
    if not any(t in cue_types for t in raw["negated"]):
        raise _fail(source, "task.negated needs templates for at least one cue type.")
    total = sum(labels.values())
    return TaskSpec(
        name=str(raw["name"]),
        description=str(raw.get("description", "")),
        label_type=label_type,
        label_paths={str(k): tuple(str(v).split(".")) for k, v in raw["label_paths"].items()},
        labels={k: v / total for k, v in labels.items()},
        label_noise=_probability(source, "task.label_noise", raw["label_noise"]),
        held_out_type=held["type"],
        held_out_fraction=_probability(source, "task.held_out.fraction", held.get("fraction", 0.25)),
        cues_per_text=_range(source, "task.cues_per_text", raw.get("cues_per_text", [1, 2])),
        cue_types=cue_types,
        distractor_probability=_probability(
            source, "task.distractor_probability", raw.get("distractor_probability", 0.3)
        ),
        fillers_per_text=_range(source, "task.fillers_per_text", raw.get("fillers_per_text", [0, 1])),
        opening=tuple(raw["opening"]),
        filler=tuple(raw.get("filler", ())),
        affirmed={str(k): tuple(v) for k, v in raw["affirmed"].items()},
        negated={str(k): tuple(v) for k, v in raw["negated"].items()},
    )


def _theme(source: str, raw: Any, entities: dict[str, tuple[Entity, ...]]) -> dict[str, tuple[str, ...]]:
    """``theme: {symptom: specialty, drug: class.specialty}``: each themed type and the path to its theme
    (``text`` for a type whose entities are themes themselves, such as the specialties)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise _fail(
            source, "'theme' must map entity types to the attribute that is their theme, e.g. {symptom: specialty}."
        )
    theme = {}
    for type_name, path in raw.items():
        if type_name not in entities:
            raise _fail(source, f"theme names {type_name!r}, which is not an entity type ({sorted(entities)}).")
        if not isinstance(path, str) or not path:
            raise _fail(source, f"theme.{type_name} must be an attribute path such as 'specialty', got {path!r}.")
        theme[str(type_name)] = tuple(path.split("."))
    return theme


def parse_domain(raw: Any, source: str) -> Domain:
    """Check a definition already read from YAML (a dict) and turn it into a ``Domain``."""
    if not isinstance(raw, dict):
        raise _fail(source, "a domain file must be a YAML mapping with name, lexicon, entities and corpus.")
    for key in ("name", "corpus"):
        if key not in raw:
            raise _fail(source, f"missing the top-level key '{key}'.")
    lexicon_raw = raw.get("lexicon") or {}
    if not isinstance(lexicon_raw, dict):
        raise _fail(source, "'lexicon' must map a list name to a list of words or phrases.")
    lexicon: dict[str, tuple[tuple[str, ...], ...]] = {}
    for name, items in lexicon_raw.items():
        if not isinstance(items, list) or not items:
            raise _fail(source, f"lexicon.{name} must be a non-empty list.")
        phrases = tuple(_phrase(source, f"lexicon.{name}", item) for item in items)
        if len(set(phrases)) != len(phrases):
            raise _fail(source, f"lexicon.{name} lists an entry twice; entries must be distinct.")
        lexicon[str(name)] = phrases
    entities, by_text = _entities(source, _with_borrowed(source, raw))
    clash = set(lexicon) & set(entities)
    if clash:
        raise _fail(source, f"{sorted(clash)} are both a word list and an entity type; rename one.")
    corpus = []
    for i, item in enumerate(raw["corpus"] or []):
        if not isinstance(item, dict) or "template" not in item:
            raise _fail(source, f"corpus[{i}] must be {{weight: <number>, template: <text>}}.")
        weight = item.get("weight", 1)
        if not isinstance(weight, (int, float)) or weight <= 0:
            raise _fail(source, f"corpus[{i}].weight must be a positive number, got {weight!r}.")
        corpus.append((float(weight), str(item["template"])))
    if not corpus:
        raise _fail(source, "corpus needs at least one template.")
    domain = Domain(
        name=str(raw["name"]),
        description=" ".join(str(raw.get("description", "")).split()),
        source=source,
        continue_probability=_probability(source, "continue_probability", raw.get("continue_probability", 0.3)),
        zipf=float(raw.get("zipf", 0.0)),
        lexicon=lexicon,
        entities=entities,
        by_text=by_text,
        corpus=tuple(corpus),
        task=_task(source, raw["task"], entities) if raw.get("task") is not None else None,
        theme=_theme(source, raw.get("theme"), entities),
    )
    _check_references(domain)
    for items in (domain.entities[t] for t in domain.theme):
        for entity in items:
            domain.theme_of(entity)  # a clear error where a themed entity lacks the attribute
    return domain


def domain_path(name_or_path: str | Path) -> Path:
    """The file of a built-in domain name (``"clinical"``) or a path to a domain file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"No domain file at {path}.")
        return path
    candidate = data_dir() / f"{name_or_path}.yaml"
    if not candidate.is_file():
        raise ValueError(f"Unknown domain {str(name_or_path)!r}. Known domains: {', '.join(domain_names())}.")
    return candidate


def domain_names() -> list[str]:
    """The domains defined in ``data/`` (one YAML file each; add a file to add a domain)."""
    return sorted(p.stem for p in data_dir().glob("*.yaml"))


@functools.lru_cache(maxsize=32)
def _load(path: str, mtime: float) -> Domain:
    with open(path, encoding="utf-8") as handle:
        try:
            raw = yaml.safe_load(handle)
        except yaml.YAMLError as error:
            raise DefinitionError(f"{Path(path).name}: not valid YAML ({error}).") from error
    return parse_domain(raw, Path(path).name)


def load_domain(name_or_path: str | Path) -> Domain:
    """The validated definition of a domain; re-read only when its file changes."""
    path = domain_path(name_or_path)
    return _load(str(path), path.stat().st_mtime)
