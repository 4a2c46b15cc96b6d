"""One word tokenizer for the whole course: n-gram models, the entropy floor and the generator agree on it.

A sentence's probability is only comparable with an n-gram model's if both count the same
words, so everything that counts words calls ``words`` and nothing else.
"""

from __future__ import annotations

import re

#: Punctuation the generator writes; each is its own word and sticks to the word before it.
PUNCTUATION = frozenset(".,;:?!")

_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*|[^\sa-z0-9]")


def words(text: str) -> list[str]:
    """Lower-case ``text`` and split it into words and single punctuation marks.

    >>> words("Started on Bravinolol; no chest-pain.")
    ['started', 'on', 'bravinolol', ';', 'no', 'chest-pain', '.']
    """
    if not isinstance(text, str):
        raise TypeError(f"words() takes a string, got {type(text).__name__}.")
    return _WORD.findall(text.lower())


def detokenize(tokens: list[str] | tuple[str, ...]) -> str:
    """Join generated words into readable text: punctuation sticks to the left, sentences start upper case.

    ``words(detokenize(t)) == t`` for every token list the generator makes, which is what lets
    the generator's probability of a derivation be the probability of the text.
    """
    out: list[str] = []
    for token in tokens:
        if token in PUNCTUATION and out:
            out[-1] += token
        else:
            out.append(token)
    for i, token in enumerate(out):
        if i == 0 or out[i - 1][-1] in ".?!":
            out[i] = token[:1].upper() + token[1:]
    return " ".join(out)
