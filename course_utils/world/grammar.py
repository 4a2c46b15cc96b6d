"""Templates compiled into small programs that write a clause and know its exact probability.

A clause template such as ``"{d=drug} is a drug of the {d.class} class"`` becomes a list of
elements: literal words, a choice from a word list, a choice of an entity (uniform), or an
attribute of an entity chosen earlier (no choice at all). Writing a clause multiplies the
probabilities of its choices; ``parse`` goes the other way and sums the probability of every
derivation of a text, so a test can check that each text has exactly one derivation.
"""

from __future__ import annotations

import bisect
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

from course_utils.world.definitions import DefinitionError, Domain, Entity

_SLOT = re.compile(r"\{([^{}]*)\}")
_PICK = re.compile(r"^(\w+)=(\w+)(?:\s+in\s+(\w+)((?:\.\w+)+)|\s+where\s+(\w+)=(\w+))?$")
_NAME = re.compile(r"^(\w+)((?:\.\w+)*)$")


@dataclass(frozen=True)
class Literal:
    tokens: tuple[str, ...]


@dataclass(frozen=True)
class WordChoice:
    """Pick one entry of a word list with Zipf weights (fixed by the list's order)."""

    name: str
    options: tuple[tuple[str, ...], ...]
    cumulative: tuple[float, ...]
    logprobs: tuple[float, ...]


@dataclass(frozen=True)
class Pick:
    """Pick an entity of ``type`` uniformly, from all, from a list attribute, or where an attribute matches."""

    var: str
    type: str
    mode: str  # "all", "in" or "where"
    source_var: str = ""
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attribute:
    """Write the entity or value reached from a bound variable: no choice, probability one."""

    var: str
    path: tuple[str, ...]


Element = Literal | WordChoice | Pick | Attribute


@dataclass(frozen=True)
class Template:
    text: str
    elements: tuple[Element, ...]


def zipf_weights(n: int, exponent: float) -> list[float]:
    """Normalised weights 1/(rank+1)**exponent: a few entries are common, most are rare, as in real text."""
    raw = [1.0 / (rank + 1) ** exponent for rank in range(n)]
    total = sum(raw)
    return [w / total for w in raw]


def _word_choice(domain: Domain, name: str) -> WordChoice:
    options = domain.lexicon[name]
    weights = zipf_weights(len(options), domain.zipf)
    cumulative, running = [], 0.0
    for w in weights:
        running += w
        cumulative.append(running)
    return WordChoice(name, options, tuple(cumulative), tuple(math.log(w) for w in weights))


def compile_template(domain: Domain, text: str, bound: dict[str, str] | None = None) -> Template:
    """Turn template text into elements, checking every name against the domain (``bound``: variable -> type)."""
    from course_utils.world.text import words

    types = dict(bound or {})
    elements: list[Element] = []
    where = f"{domain.source}: template {text!r}"
    position = 0
    for match in _SLOT.finditer(text):
        literal = words(text[position : match.start()])
        if literal:
            elements.append(Literal(tuple(literal)))
        position = match.end()
        slot = match.group(1).strip()
        pick = _PICK.match(slot)
        if pick:
            var, type_name, in_var, in_path, where_attr, where_var = pick.groups()
            if type_name not in domain.entities:
                raise DefinitionError(f"{where}: '{type_name}' is not an entity type ({sorted(domain.entities)}).")
            if var in types or var in domain.lexicon:
                raise DefinitionError(f"{where}: the variable '{var}' is already used; give it another name.")
            if in_var is not None:
                if in_var not in types:
                    raise DefinitionError(f"{where}: '{in_var}' is used before it is chosen.")
                path = tuple(in_path.strip(".").split("."))
                for entity in domain.entities[types[in_var]]:
                    listed = domain.follow(entity, path)
                    if not isinstance(listed, list) or not all(
                        isinstance(e, Entity) and e.type == type_name for e in listed
                    ):
                        raise DefinitionError(
                            f"{where}: {entity.text!r}.{'.'.join(path)} must list {type_name} entities."
                        )
                elements.append(Pick(var, type_name, "in", in_var, path))
            elif where_attr is not None:
                if where_var not in types:
                    raise DefinitionError(f"{where}: '{where_var}' is used before it is chosen.")
                elements.append(Pick(var, type_name, "where", where_var, (where_attr,)))
            else:
                elements.append(Pick(var, type_name, "all"))
            types[var] = type_name
            continue
        name = _NAME.match(slot)
        if not name:
            raise DefinitionError(f"{where}: cannot read the slot {{{slot}}}; see data/README.md for the slot forms.")
        head, rest = name.group(1), tuple(name.group(2).strip(".").split(".")) if name.group(2) else ()
        if head in types:
            for entity in domain.entities[types[head]]:
                domain.follow(entity, rest)  # raises a clear error if a path is missing
            elements.append(Attribute(head, rest))
        elif head in domain.lexicon and not rest:
            elements.append(_word_choice(domain, head))
        else:
            raise DefinitionError(
                f"{where}: '{slot}' is neither a word list ({sorted(domain.lexicon)}) nor a chosen variable."
            )
    literal = words(text[position:])
    if literal:
        elements.append(Literal(tuple(literal)))
    for element in elements:
        if isinstance(element, Literal) and (";" in element.tokens or "." in element.tokens):
            raise DefinitionError(f"{where}: templates may not contain ';' or '.'; the generator adds them.")
    if not elements:
        raise DefinitionError(f"{where}: the template is empty.")
    return Template(text, tuple(elements))


def _tokens_of(value: object) -> tuple[str, ...]:
    from course_utils.world.text import words

    if isinstance(value, Entity):
        return value.tokens
    if isinstance(value, list):
        raise DefinitionError(f"cannot write the list {value!r} into a sentence; pick one entry with 'x=type in ...'.")
    return tuple(words(str(value)))


def themed_picks(domain: Domain, template: Template) -> list[Pick]:
    """The picks that set a clause's theme: free choices ("all") of an entity type that has a theme."""
    return [e for e in template.elements if isinstance(e, Pick) and e.mode == "all" and e.type in domain.theme]


def candidates(domain: Domain, pick: Pick, bindings: dict[str, Entity], theme: str | None = None) -> list[Entity]:
    """The entities ``pick`` may choose from, given what was chosen before (and the document's ``theme``)."""
    if pick.mode == "all":
        if theme is not None and pick.type in domain.theme:
            return [e for e in domain.entities[pick.type] if domain.theme_of(e) == theme]
        return list(domain.entities[pick.type])
    if pick.mode == "in":
        return domain.follow(bindings[pick.source_var], pick.path)
    target = bindings[pick.source_var]
    chosen = []
    for entity in domain.entities[pick.type]:
        value = domain.resolve(entity.attrs.get(pick.path[0]))
        if value is target or (isinstance(value, list) and any(v is target for v in value)):
            chosen.append(entity)
    return chosen


class Writer:
    """Writes clauses of one domain with a seeded ``random.Random``; caches candidate lists for speed."""

    def __init__(self, domain: Domain):
        self.domain = domain
        self._cache: dict[tuple[Pick, int], list[Entity]] = {}

    def _candidates(self, pick: Pick, bindings: dict[str, Entity], theme: str | None) -> list[Entity]:
        key = (pick, id(bindings.get(pick.source_var)), theme)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = candidates(self.domain, pick, bindings, theme)
        return found

    def write(
        self, template: Template, rng: random.Random, bindings: dict[str, Entity] | None = None
    ) -> tuple[list[str], float]:
        """Tokens of one clause and the natural log of the probability of the choices made."""
        tokens, logprob, _ = self.write_on_theme(template, rng, bindings)
        return tokens, logprob

    def write_on_theme(
        self,
        template: Template,
        rng: random.Random,
        bindings: dict[str, Entity] | None = None,
        theme: str | None = None,
    ) -> tuple[list[str], float, str | None]:
        """Like ``write``, keeping every themed entity on ``theme`` (if given); also returns the clause's theme."""
        bound = dict(bindings or {})
        clause_theme = None
        tokens: list[str] = []
        logprob = 0.0
        for element in template.elements:
            if isinstance(element, Literal):
                tokens.extend(element.tokens)
            elif isinstance(element, WordChoice):
                i = bisect.bisect_left(element.cumulative, rng.random() * element.cumulative[-1])
                i = min(i, len(element.options) - 1)
                tokens.extend(element.options[i])
                logprob += element.logprobs[i]
            elif isinstance(element, Pick):
                pool = self._candidates(element, bound, theme)
                if not pool:
                    raise DefinitionError(
                        f"{self.domain.source}: nothing to choose for {element} in {template.text!r}"
                        + (f" on the theme {theme!r}." if theme is not None else ".")
                    )
                entity = pool[rng.randrange(len(pool))]
                bound[element.var] = entity
                tokens.extend(entity.tokens)
                logprob -= math.log(len(pool))
                if element.mode == "all" and element.type in self.domain.theme:
                    clause_theme = self.domain.theme_of(entity)
            else:
                tokens.extend(_tokens_of(self.domain.follow(bound[element.var], element.path)))
        return tokens, logprob, clause_theme


def derivations(
    domain: Domain, template: Template, tokens: tuple[str, ...], theme: str | None = None
) -> Iterator[tuple[float, str | None]]:
    """Every way ``template`` can write exactly ``tokens`` (usually none or one), on ``theme`` if given:
    the log-probability of each and the theme of the clause it writes (``None`` for a clause without one)."""

    def walk(i: int, pos: int, bound: dict[str, Entity], logprob: float) -> Iterator[tuple[float, str | None]]:
        if i == len(template.elements):
            if pos == len(tokens):
                picks = themed_picks(domain, template)
                yield logprob, domain.theme_of(bound[picks[0].var]) if picks else None
            return
        element = template.elements[i]
        if isinstance(element, Literal):
            options = [(element.tokens, 0.0, None)]
        elif isinstance(element, WordChoice):
            options = [(o, lp, None) for o, lp in zip(element.options, element.logprobs, strict=True)]
        elif isinstance(element, Pick):
            pool = candidates(domain, element, bound, theme)
            options = [(e.tokens, -math.log(len(pool)), e) for e in pool]
        else:
            options = [(_tokens_of(domain.follow(bound[element.var], element.path)), 0.0, None)]
        for option, lp, entity in options:
            if tokens[pos : pos + len(option)] == option:
                nxt = bound if entity is None else {**bound, element.var: entity}
                yield from walk(i + 1, pos + len(option), nxt, logprob + lp)

    yield from walk(0, 0, {}, 0.0)
