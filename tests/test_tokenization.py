"""Cleaning, deduplication and WordPiece helpers (course_utils.tokenization)."""

from __future__ import annotations

import pytest

from course_utils.tokenization import (
    BASE_ALPHABET,
    SPECIAL_TOKENS,
    clean_text,
    exact_duplicate_mask,
    find_boilerplate,
    jaccard,
    minhash_signatures,
    near_duplicate_clusters,
    normalize_text,
    pieces_per_word,
    shingles,
    train_wordpiece,
    word_count,
)

TEXTS = [
    "The patient reports wheezing and chest tightness.",
    "Bravinolol was started at 10 mg once daily.",
    "Asthma is managed by pulmonology.",
    "The teacher slept this morning.",
] * 20


def test_normalize_and_clean():
    assert normalize_text("  a\u00a0\u00a0b \t c \n\n d ") == "a b c\nd"
    assert normalize_text("ﬁne ｆｕｌｌ") == "fine full"  # ligature and full-width letters
    messy = "<p>CONFIDENTIAL</p>\n<b>Asthma</b> &amp; wheezing\n\n  was   ruled out. "
    assert clean_text(messy, {"CONFIDENTIAL"}) == "Asthma & wheezing was ruled out."
    assert word_count("chest-pain, 10 mg; it's fine.") == 5


def test_find_boilerplate_finds_repeated_lines_only():
    docs = [f"HEADER - do not distribute\nnote number {i} says something" for i in range(40)]
    assert find_boilerplate(docs, min_fraction=0.5) == {"HEADER - do not distribute"}


def test_exact_duplicates_keep_first_after_normalisation():
    assert exact_duplicate_mask(["A b", "a  B", "c", "A b"]) == [True, False, True, False]


def test_minhash_estimates_jaccard():
    a = shingles("the patient denies chest pain and reports wheezing since last week at home")
    b = shingles("the patient denies chest pain and reports wheezing since last month at home")
    signatures = minhash_signatures([a, b], num_perm=512, seed=0)
    estimate = float((signatures[0] == signatures[1]).mean())
    assert abs(estimate - jaccard(a, b)) < 0.1
    assert jaccard(a, a) == 1.0 and jaccard(a, set()) == 0.0


def test_near_duplicate_clusters():
    texts = [
        "the patient denies chest pain and reports wheezing since last week at home",
        "an entirely different sentence about a teacher who slept in the garden today",
        "the patient denies chest pain and reports wheezing since last week at home today",
        "the patient denies chest pain and reports wheezing since last week at home",
    ]
    assert near_duplicate_clusters(texts, threshold=0.7) == [0, 1, 0, 0]
    with pytest.raises(ValueError):
        near_duplicate_clusters(texts, num_perm=10, bands=3)


def test_train_wordpiece_is_a_bert_tokenizer():
    tokenizer = train_wordpiece(TEXTS, vocab_size=300, model_max_length=32)
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    encoded = tokenizer("Asthma was ruled out.")["input_ids"]
    assert encoded[0] == tokenizer.cls_token_id and encoded[-1] == tokenizer.sep_token_id
    assert tokenizer.tokenize("ASTHMA") == ["asthma"]  # lower-cased
    # unseen letters still tokenize (no [UNK]): every character is in the vocabulary, also as ##piece
    assert "[UNK]" not in tokenizer.tokenize("zyxjq quizzical 42")
    assert all(f"##{c}" in tokenizer.get_vocab() for c in BASE_ALPHABET)
    assert pieces_per_word(tokenizer, ["asthma", "zyxjq"]) == [1, 5]


def test_save_and_load_round_trip(tmp_path):
    from transformers import PreTrainedTokenizerFast

    tokenizer = train_wordpiece(TEXTS, vocab_size=300)
    tokenizer.save_pretrained(str(tmp_path))
    loaded = PreTrainedTokenizerFast.from_pretrained(str(tmp_path))
    assert loaded("Bravinolol was started.")["input_ids"] == tokenizer("Bravinolol was started.")["input_ids"]
    assert loaded.mask_token == "[MASK]" and loaded.pad_token_id == 0
