"""Cleaning, deduplication and WordPiece helpers (course_utils.tokenization)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

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
    word_counts,
    wordpiece_vocab,
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


def test_wordpiece_merges_the_most_frequent_pair_first():
    counts = {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}
    learned = wordpiece_vocab(counts, vocab_size=1000, alphabet=())[len(SPECIAL_TOKENS) :]
    base = ["b", "g", "h", "n", "p", "s", "u", "##g", "##n", "##s", "##u"]  # characters, then ## forms
    assert learned[: len(base)] == base
    # u+g occurs 20 times, then u+n 16, h+ug 15, p+un 12; hug+s and p+ug tie at 5 ("hug" < "p"); b+un 4
    assert learned[len(base) :] == ["##ug", "##un", "hug", "pun", "hugs", "pug", "bun"]
    assert wordpiece_vocab(counts, vocab_size=17, alphabet=())[-1:] == ["##ug"]  # 16 base entries + 1 merge
    assert "##un" not in wordpiece_vocab(counts, vocab_size=1000, min_frequency=17, alphabet=())


def test_wordpiece_ties_go_by_code_point_whatever_the_input_order():
    forward = wordpiece_vocab({"ab": 3, "cd": 3, "ef": 3}, vocab_size=1000, alphabet=())
    backward = wordpiece_vocab({"ef": 3, "cd": 3, "ab": 3}, vocab_size=1000, alphabet=())
    assert forward == backward and forward[-3:] == ["ab", "cd", "ef"]
    assert word_counts(["Asthma, asthma!"]) == {"asthma": 2, ",": 1, "!": 1}


def test_the_same_texts_give_a_byte_identical_tokenizer_in_separate_processes(tmp_path):
    """tokenizers' own trainer breaks ties in hash-map order, which changes from process to process."""
    script = textwrap.dedent(
        """
        import sys
        from course_utils.tokenization import train_wordpiece
        texts = open(sys.argv[1], encoding="utf-8").read().splitlines()
        train_wordpiece(texts, vocab_size=150).save_pretrained(sys.argv[2])
        """
    )
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS + ["Pravastatin and bravinolol, brevinolol and pravinolol."] * 3))
    saved = []
    for run, hash_seed in enumerate(("1", "2")):
        folder = tmp_path / f"run{run}"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", script, str(texts), str(folder)], check=True, env=env, timeout=120)
        saved.append((folder / "tokenizer.json").read_bytes())
    assert saved[0] == saved[1]
    in_process = tmp_path / "here"
    train_wordpiece(texts.read_text().splitlines(), vocab_size=150).save_pretrained(str(in_process))
    assert (in_process / "tokenizer.json").read_bytes() == saved[0]
