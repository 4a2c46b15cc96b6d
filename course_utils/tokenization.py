"""Preparing domain text (notebook 04) and training WordPiece vocabularies (notebook 05).

Real domain corpora arrive dirty: markup, runs of whitespace, boilerplate headers, the same record
exported twice, and near-copies that differ by a word. A model pretrained on them memorises the
copies and leaks them across a train/validation split, so the pipeline is: normalise, clean, drop
boilerplate, filter by length, remove exact and near duplicates, and only then split.

The tokenizer is a BERT-style WordPiece model: its vocabulary is learned by the course's own small
trainer (:func:`wordpiece_vocab`, deterministic where the ``tokenizers`` library's trainer is not),
then built as a ``tokenizers`` WordPiece model and wrapped as a ``transformers.PreTrainedTokenizerFast``
so that models, collators and pipelines accept it.
"""

from __future__ import annotations

import hashlib
import heapq
import html
import re
import string
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import pairwise

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

#: BERT's special tokens, in the order they get ids 0..4 ([PAD] = 0 is what BertConfig expects).
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

#: Characters every vocabulary contains, whether or not its training text uses them. Without
#: them a word with one unseen character (a digit, a hyphen) becomes [UNK] as a whole.
BASE_ALPHABET = tuple(string.ascii_lowercase + string.digits + string.punctuation)

_TAG = re.compile(r"<[^>]{0,200}>")
_SPACES = re.compile(r"[ \t\u00a0]+")
_NEWLINES = re.compile(r"\s*\n\s*")
_WORD = re.compile(r"\w+(?:[-']\w+)*")

# ------------------------------------------------------------------------------------- cleaning


def normalize_text(text: str) -> str:
    """Unicode NFKC (full-width letters, ligatures and non-breaking spaces become plain ones) and tidy whitespace.

    Normalising first means that two copies of a record that differ only in invisible characters
    hash to the same value in exact deduplication.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _SPACES.sub(" ", text)
    return _NEWLINES.sub("\n", text).strip()


def strip_markup(text: str) -> str:
    """Remove HTML tags and decode entities (``&amp;`` -> ``&``): export formats, not language."""
    return html.unescape(_TAG.sub(" ", text))


def clean_text(text: str, boilerplate: Iterable[str] = ()) -> str:
    """Strip markup, drop boilerplate lines, normalise, and join the remaining lines with spaces.

    ``boilerplate`` is a set of lines (as returned by :func:`find_boilerplate`) removed wherever they occur.
    """
    drop = set(boilerplate)
    lines = [normalize_text(line) for line in normalize_text(strip_markup(text)).split("\n")]
    return " ".join(line for line in lines if line and line not in drop)


def find_boilerplate(texts: Sequence[str], min_fraction: float = 0.05, min_count: int = 3) -> set[str]:
    """Lines that occur in at least ``min_fraction`` of the documents (and ``min_count`` of them).

    A line of real content (in a record export, often a whole note) rarely repeats verbatim across
    many records, while headers, footers and disclaimers repeat in all of them; counting lines finds
    them without a list. Short sentences do repeat, so lines are counted, not sentences.
    """
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update({normalize_text(line) for line in normalize_text(strip_markup(text)).split("\n")} - {""})
    threshold = max(min_count, min_fraction * len(texts))
    return {line for line, n in counts.items() if n >= threshold}


def word_count(text: str) -> int:
    """Words in ``text`` (letters, digits, inner hyphens and apostrophes): the unit of length filters."""
    return len(_WORD.findall(text))


# ---------------------------------------------------------------------------------- deduplication


def text_fingerprint(text: str) -> str:
    """SHA-1 of the lower-cased, whitespace-normalised text: equal fingerprints are exact duplicates."""
    return hashlib.sha1(" ".join(normalize_text(text).lower().split()).encode()).hexdigest()


def exact_duplicate_mask(texts: Sequence[str]) -> list[bool]:
    """``True`` for the first occurrence of each distinct text (after normalisation), ``False`` for repeats."""
    seen: set[str] = set()
    keep = []
    for text in texts:
        fingerprint = text_fingerprint(text)
        keep.append(fingerprint not in seen)
        seen.add(fingerprint)
    return keep


def shingles(text: str, n: int = 3) -> set[str]:
    """The set of ``n``-word windows of the lower-cased text (the whole text if it is shorter)."""
    tokens = _WORD.findall(text.lower())
    if len(tokens) <= n:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    """|a ∩ b| / |a ∪ b|: 1 for identical shingle sets, 0 for disjoint ones."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


_PRIME = (1 << 31) - 1  # a Mersenne prime: (a·x + b) stays below 2**63, so uint64 arithmetic is exact


def minhash_signatures(shingle_sets: Sequence[set[str]], num_perm: int = 64, seed: int = 0) -> np.ndarray:
    """One MinHash signature per set, shape (n_sets, num_perm).

    Each column is a random hash function h(x) = (a·x + b) mod p; the minimum over a set's
    shingles collides for two sets with probability equal to their Jaccard similarity, so the
    share of equal columns estimates it without comparing the sets themselves.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(1, _PRIME, size=(num_perm, 1), dtype=np.uint64)  # (num_perm, 1)
    b = rng.integers(0, _PRIME, size=(num_perm, 1), dtype=np.uint64)  # (num_perm, 1)
    signatures = np.full((len(shingle_sets), num_perm), _PRIME, dtype=np.uint64)  # empty sets keep p
    for row, items in enumerate(shingle_sets):
        if items:
            # crc32 is stable across runs (Python's hash() is salted per process)
            x = np.array([zlib.crc32(s.encode()) % _PRIME for s in sorted(items)], dtype=np.uint64)  # (n_shingles,)
            signatures[row] = ((a * x[None, :] + b) % _PRIME).min(axis=1)  # (num_perm,)
    return signatures


def near_duplicate_clusters(
    texts: Sequence[str], threshold: float = 0.7, *, n: int = 3, num_perm: int = 64, bands: int = 16, seed: int = 0
) -> list[int]:
    """A cluster id per text: texts whose shingle Jaccard is at least ``threshold`` share one (the smallest index).

    Comparing every pair costs n²; locality-sensitive hashing splits each MinHash signature into
    ``bands`` bands and only compares texts that agree on a whole band. The candidate pairs are
    then confirmed with the exact Jaccard similarity, so the estimate never decides alone.
    """
    if num_perm % bands:
        raise ValueError(f"num_perm ({num_perm}) must be a multiple of bands ({bands}).")
    sets = [shingles(t, n) for t in texts]
    signatures = minhash_signatures(sets, num_perm, seed)
    rows = num_perm // bands
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for band in range(bands):
        buckets: dict[bytes, list[int]] = {}
        for i, signature in enumerate(signatures[:, band * rows : (band + 1) * rows]):
            if sets[i]:
                buckets.setdefault(signature.tobytes(), []).append(i)
        for members in buckets.values():
            for position, first in enumerate(members):
                for other in members[position + 1 :]:
                    if root(first) != root(other) and jaccard(sets[first], sets[other]) >= threshold:
                        low, high = sorted((root(first), root(other)))
                        parent[high] = low
    return [root(i) for i in range(len(texts))]


# ---------------------------------------------------------------------------------------- WordPiece


def _bert_normalizer() -> normalizers.Normalizer:
    return normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)


def word_counts(texts: Iterable[str]) -> Counter[str]:
    """How often each word occurs, after BERT's normaliser and pre-tokenizer (the units WordPiece splits).

    Identical texts are normalised once and counted as often as they occur, which matters for the
    course's generated corpora, where short sentences repeat many times.
    """
    normalizer, pre_tokenizer = _bert_normalizer(), pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text, repeats in Counter(texts).items():
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            counts[word] += repeats
    return counts


def _merge_word(symbols: list[str], a: str, b: str, merged: str) -> list[str]:
    """``symbols`` with every non-overlapping ``a, b`` (left to right) replaced by ``merged``."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
            out.append(merged)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def wordpiece_vocab(
    counts: dict[str, int], vocab_size: int, *, min_frequency: int = 2, alphabet: Iterable[str] = BASE_ALPHABET
) -> list[str]:
    """Learn a WordPiece vocabulary (specials, characters, then merged pieces in the order learned).

    1. The vocabulary starts as ``SPECIAL_TOKENS``, then every character of the words and of
       ``alphabet`` (sorted by code point), then each character's ``##`` continuation form that
       occurs inside a word (sorted): a word is split into its first character and ``##`` pieces.
    2. Count every adjacent pair of pieces, weighted by how often its word occurs.
    3. Merge the most frequent pair everywhere (``brav`` + ``##in`` -> ``bravin``) and add the merged
       piece; a tie between equally frequent pairs goes to the pair whose pieces come first in code
       point order, so the result depends on nothing but ``counts`` (not on hash order or the process).
    4. Repeat until the vocabulary has ``vocab_size`` entries, no pair occurs ``min_frequency`` times,
       or every word is a single piece.

    Only pairs inside a word merge, and the score is the pair's frequency: the rule of the
    ``tokenizers`` library's ``WordPieceTrainer``, whose ties fall in hash-map order instead.
    """
    vocab = list(SPECIAL_TOKENS)
    known = set(vocab)
    words = sorted(counts)  # a fixed order, so that every step below is reproducible
    characters = sorted({c for word in words for c in word} | set(alphabet))
    continuations = sorted({f"##{c}" for word in words for c in word[1:]})
    for piece in [*characters, *continuations]:
        if piece not in known:
            vocab.append(piece)
            known.add(piece)
    symbols = [[word[0], *(f"##{c}" for c in word[1:])] for word in words]
    frequency = [counts[word] for word in words]

    pair_counts: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = {}  # pair -> the words that contain it (possibly stale)
    for index, pieces in enumerate(symbols):
        for pair in pairwise(pieces):
            pair_counts[pair] += frequency[index]
            where.setdefault(pair, set()).add(index)
    heap = [(-count, a, b) for (a, b), count in pair_counts.items()]  # most frequent first, then code point order
    heapq.heapify(heap)

    while len(vocab) < vocab_size and heap:
        negative, a, b = heapq.heappop(heap)
        if pair_counts.get((a, b), 0) != -negative:
            continue  # an outdated entry; the pair's current count was pushed when it changed
        if -negative < min_frequency:
            break
        merged = a + b.removeprefix("##")
        if merged not in known:
            vocab.append(merged)
            known.add(merged)
        changed: set[tuple[str, str]] = set()
        for index in sorted(where.pop((a, b))):
            old = symbols[index]
            new = _merge_word(old, a, b, merged)
            if new == old:
                continue
            for pair in pairwise(old):
                pair_counts[pair] -= frequency[index]
                changed.add(pair)
            for pair in pairwise(new):
                pair_counts[pair] += frequency[index]
                where.setdefault(pair, set()).add(index)
                changed.add(pair)
            symbols[index] = new
        for pair in sorted(changed):
            if pair_counts[pair] > 0:
                heapq.heappush(heap, (-pair_counts[pair], *pair))
            else:
                del pair_counts[pair]
    return vocab


def train_wordpiece(
    texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2, model_max_length: int = 512
) -> PreTrainedTokenizerFast:
    """Train a lower-casing BERT WordPiece vocabulary on ``texts`` and wrap it for ``transformers``.

    Training is the course's own :func:`wordpiece_vocab`: BERT's normaliser and pre-tokenizer cut the
    text into words (:func:`word_counts`); starting from single characters (a word's first one
    alone, the others as ``##`` pieces), the most *frequent* adjacent pair of pieces is merged,
    again and again, until the vocabulary has ``vocab_size`` entries (specials and characters
    included), no pair occurs ``min_frequency`` times, or every word is one piece, so the
    vocabulary may be smaller than asked. Frequency is the rule of the ``tokenizers`` library's
    ``WordPieceTrainer``; the original WordPiece (Schuster and Nakajima, 2012) instead merges the
    pair that most increases the training text's likelihood under a unigram model of the pieces
    (``count(ab) / (count(a) count(b))``). Unlike ``WordPieceTrainer``, which breaks ties between
    equally frequent pairs in an order that changes from process to process, ties here go by code
    point order, so the same texts and size give a byte-identical ``tokenizer.json`` on every run
    and machine. The vocabulary also holds every character of ``BASE_ALPHABET``, alone and as a
    ``##`` piece, so no word of plain English text becomes [UNK].

    The result is a ``tokenizers`` WordPiece model (greedy longest-match-first), with BERT's
    normaliser, pre-tokenizer, decoder and a post-processor that adds [CLS] ... [SEP], wrapped as a
    ``PreTrainedTokenizerFast`` with the special-token attributes that models,
    ``DataCollatorForLanguageModeling`` and ``pipeline("fill-mask")`` look for.
    """
    learned = wordpiece_vocab(word_counts(texts), vocab_size, min_frequency=min_frequency)
    vocab = {piece: index for index, piece in enumerate(learned)}
    # Every character also as a "##" continuation piece: a letter never seen inside a word would
    # otherwise turn a whole word into [UNK].
    for piece in [*BASE_ALPHABET, *(f"##{c}" for c in BASE_ALPHABET)]:
        vocab.setdefault(piece, len(vocab))
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = _bert_normalizer()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


def pieces_per_word(tokenizer: PreTrainedTokenizerFast, words: Iterable[str]) -> list[int]:
    """How many WordPiece pieces each word becomes (1 = in the vocabulary as a whole word).

    The average over a domain's terms measures fragmentation: more pieces mean longer inputs
    and meanings the model has to assemble from fragments it learned in other words.
    """
    return [len(tokenizer.tokenize(word)) for word in words]
