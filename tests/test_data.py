"""Loading data: the generated world, local files and the hub, all as datasets objects with clear errors."""

from __future__ import annotations

import json

import datasets
import pytest

from course_utils.data import (
    corpus_floor,
    corpus_texts,
    evaluation_texts,
    list_domains,
    list_tasks,
    load_corpus,
    load_task,
    task_domain,
    task_info,
    task_texts,
)
from course_utils.profiles import get_profile
from course_utils.tokenization import clean_text
from course_utils.world import SPLITS


def test_lists_name_the_domains_and_tasks():
    assert {"general", "clinical", "finance", "legal"} <= set(list_domains())
    assert set(list_tasks().values()) == {"clinical", "finance", "legal"}


def test_generated_corpus_has_text_logprob_splits_and_a_floor():
    profile = get_profile("fast")
    whole = load_corpus("clinical", profile, 0)
    assert isinstance(whole, datasets.Dataset) and whole.column_names == ["text", "logprob"]
    assert len(whole) == profile.corpus_sentences and all(lp < 0 for lp in whole["logprob"])
    parts = [load_corpus("clinical", "fast", 0, split) for split in ("train", "validation", "test")]
    assert [len(p) for p in parts] == [round(0.8 * len(whole)), round(0.1 * len(whole)), round(0.1 * len(whole))]
    assert sum((list(p["text"]) for p in parts), []) == list(whole["text"])
    floor = corpus_floor(parts[2])
    assert 1 < floor.perplexity < 10
    assert json.loads(parts[2].info.description)["floor_perplexity"] == pytest.approx(floor.perplexity)
    with pytest.raises(ValueError, match="Unknown corpus split"):
        load_corpus("clinical", "fast", 0, "dev")


def test_generated_task_has_all_splits_and_a_class_label():
    task = load_task("clinical_specialty", "fast", 1)
    assert isinstance(task, datasets.DatasetDict) and list(task) == list(SPLITS)
    label = task["train"].features["label"]
    assert isinstance(label, datasets.ClassLabel) and label.num_classes >= 5
    assert len(task["train"]) == get_profile("fast").task_train
    info = task_info(task)
    assert info["bayes_ceiling"] == pytest.approx(1 - info["label_noise"]) and info["seed"] == 1
    assert list(load_task("clinical", "fast", 1)["test"]["text"]) == list(task["test"]["text"])  # domain or task name


def test_bad_profile_and_seed_are_rejected_clearly():
    with pytest.raises(ValueError, match="Unknown profile"):
        load_corpus("general", "huge")
    with pytest.raises(ValueError, match="seed"):
        load_task("clinical", "fast", -1)
    with pytest.raises(ValueError, match="has no labeled task"):
        load_task("general")


def test_local_text_file_becomes_a_corpus(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("First line.\n\nSecond line.\n")
    corpus = load_corpus(path)
    assert list(corpus["text"]) == ["First line.", "Second line."] and "logprob" not in corpus.column_names
    with pytest.raises(ValueError, match="no 'logprob' column"):
        corpus_floor(corpus)


def test_local_jsonl_and_csv_corpora_and_their_errors(tmp_path):
    good = tmp_path / "c.jsonl"
    good.write_text('{"text": "one"}\n{"text": "two", "source": "x"}\n')
    assert list(load_corpus(str(good))["text"]) == ["one", "two"]
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "one"}\n{"text": "two"\n')
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        load_corpus(broken)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("sentence\nhello\n")
    with pytest.raises(ValueError, match=r"Expected columns \['text'\]; found \['sentence'\]"):
        load_corpus(wrong)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        load_corpus(empty)
    with pytest.raises(FileNotFoundError, match="No file"):
        load_corpus(tmp_path / "missing.jsonl")
    odd = tmp_path / "odd.parquet"
    odd.write_text("x")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_corpus(odd)


def test_local_task_files_are_split_and_labeled(tmp_path):
    rows = [{"text": f"note {i}", "label": ["cardiology", "neurology"][i % 2]} for i in range(50)]
    jsonl = tmp_path / "task.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows))
    task = load_task(jsonl, seed=3)
    assert list(task) == ["train", "validation", "test"] and [len(task[s]) for s in task] == [40, 5, 5]
    assert task["train"].features["label"].names == ["cardiology", "neurology"]
    assert list(load_task(jsonl, seed=3)["test"]["text"]) == list(task["test"]["text"])
    csv_path = tmp_path / "task.csv"
    csv_path.write_text("body,category\n" + "\n".join(f'"note, {i}",{i % 3}' for i in range(30)))
    renamed = load_task(csv_path, text_column="body", label_column="category")
    assert renamed["train"].features["label"].names == ["0", "1", "2"]
    with pytest.raises(ValueError, match=r"missing column\(s\) \['text', 'label'\]. Expected columns"):
        load_task(csv_path)
    with pytest.raises(ValueError, match="only text"):
        txt = tmp_path / "t.txt"
        txt.write_text("a\nb\n")
        load_task(txt)
    one_label = tmp_path / "one.jsonl"
    one_label.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "x"}\n')
    with pytest.raises(ValueError, match="at least two labels"):
        load_task(one_label)


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv"])
def test_a_file_that_is_not_utf8_names_the_line_and_byte_and_says_how_to_fix_it(tmp_path, suffix):
    lines = {
        ".txt": [b"First line.", b"Coffee at the caf\xe9."],
        ".jsonl": [b'{"text": "one", "label": "a"}', b'{"text": "caf\xe9", "label": "b"}'],
        ".csv": [b"text,label", b"caf\xe9,b"],
    }[suffix]
    path = tmp_path / f"latin1{suffix}"
    path.write_bytes(b"\n".join(lines) + b"\n")
    loader = load_corpus if suffix == ".txt" else load_task
    with pytest.raises(ValueError) as info:
        loader(path)
    message = str(info.value)
    assert f"latin1{suffix}, line 2" in message and "0xe9" in message and "not valid utf-8" in message
    assert "Re-encode the file as UTF-8" in message and f"{loader.__name__}(path, encoding='latin-1')" in message
    if suffix == ".txt":  # the advice works: with the right encoding the file loads
        assert list(load_corpus(path, encoding="latin-1")["text"]) == ["First line.", "Coffee at the café."]
    with pytest.raises(ValueError, match="unknown encoding"):
        loader(path, encoding="no-such-codec")


def test_a_utf8_byte_order_mark_is_not_part_of_the_header(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbftext\nhello\n")
    assert list(load_corpus(path)["text"]) == ["hello"]


def test_a_task_file_too_small_for_every_split_is_refused_with_the_sizes(tmp_path):
    path = tmp_path / "tiny.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"note {i}", "label": "ab"[i % 2]}) for i in range(6)))
    with pytest.raises(ValueError) as info:
        load_task(path)
    message = str(info.value)
    assert "tiny.jsonl: 6 labeled rows" in message and "train 5, validation 0, test 1" in message
    assert "validation split would be empty" in message and "Add labeled rows" in message
    path.write_text("\n".join(json.dumps({"text": f"note {i}", "label": "ab"[i % 2]}) for i in range(8)))
    assert [len(part) for part in load_task(path).values()] == [6, 1, 1]  # the smallest size that works


def test_missing_columns_say_how_to_name_them(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text("body,category\nchest pain,cardiology\n")
    with pytest.raises(ValueError, match=r"load_task\(path, text_column='...' and label_column='...'\)"):
        load_task(path)
    with pytest.raises(ValueError, match="Rename the column that holds the text to 'text'"):
        load_corpus(path)


def test_csv_with_unquoted_commas_is_reported(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,label\nhello, world,1\n")
    with pytest.raises(ValueError, match="line 2: more fields"):
        load_task(path)


def test_hub_names_fail_offline_with_advice_to_use_a_local_file(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(RuntimeError, match=r"local file"):
        load_corpus("someone/some-corpus")
    with pytest.raises(RuntimeError, match=r"HF_DATASETS_OFFLINE"):
        load_task("someone/some-task")


def test_loaders_are_cached_and_repeatable():
    first = load_task("legal", "fast", 2)
    again = load_task("legal", "fast", 2)
    assert list(first["negation"]["text"]) == list(again["negation"]["text"])
    assert list(load_task("legal", "fast", 3)["negation"]["text"]) != list(first["negation"]["text"])


SMALL = get_profile("fast", corpus_sentences=300, task_train=40, task_eval=12, dapt_eval_texts=4)


def test_task_domain_takes_a_task_or_its_domain_and_refuses_others():
    assert task_domain("clinical") == task_domain("clinical_specialty") == "clinical"
    with pytest.raises(ValueError, match="Unknown task 'astrology'"):
        task_domain("astrology")


def test_the_shared_texts_come_from_the_splits_they_name():
    validation = list(load_corpus("clinical", SMALL, 0, split="validation")["text"])
    task = load_task("clinical", SMALL, 0)
    texts = evaluation_texts(SMALL, seed=0)
    assert texts == {
        "general": list(load_corpus("general", SMALL, 0, split="validation")["text"][:4]),
        "clinical": validation[:4],
        "clinical_task": list(task["validation"]["text"][:4]),
    }
    assert set(evaluation_texts(SMALL, seed=0, domain="general")) == {"general"}  # no task, no task texts
    assert task_texts("clinical", SMALL) == list(task["train"]["text"])
    # generated text is clean already, so cleaning leaves the train split as it is
    assert corpus_texts("clinical", SMALL, 0) == list(load_corpus("clinical", SMALL, 0, split="train")["text"])


def test_corpus_texts_cleans_a_local_file(tmp_path):
    raw = [f"<p>Note {i}: the patient&nbsp;is <b>well</b>.</p>" for i in range(10)]
    path = tmp_path / "notes.txt"
    path.write_text("\n".join(raw))
    cleaned = corpus_texts(path, SMALL, 0)  # the train split: the first 80%, each text as notebook 04 cleans it
    assert cleaned == [clean_text(text) for text in raw[:8]]
    assert not any("<" in text or "&nbsp;" in text for text in cleaned)
