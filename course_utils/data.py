"""One way to get text into a notebook (the generated world, a local file or a hub dataset), and the
texts every model is trained or scored on, chosen once.

``load_corpus`` gives a ``datasets.Dataset`` with a ``text`` column (and ``logprob`` when the
text comes from the generator); ``load_task`` gives a ``datasets.DatasetDict`` with ``text`` and a
``ClassLabel`` ``label``. Swapping the course's data for your own changes one argument::

    load_task("clinical")                 # the generated clinical notes (all six splits)
    load_task("my_notes.csv")             # a local file with text,label columns
    load_task("some-user/some-dataset")   # a hub dataset (needs the network)

The shared texts are a cleaned corpus split (``corpus_texts``), the held-out samples every model
is scored on (``evaluation_texts``) and a task's texts without labels (``task_texts``, TAPT's corpus).
"""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path
from typing import Any

import datasets

from course_utils.profiles import Profile, get_profile
from course_utils.tokenization import clean_text
from course_utils.world import (
    SPLITS,
    EntropyFloor,
    TaskTruth,
    WorldTruth,
    clean_task_labels,
    counterexample_texts,
    domain_names,
    entropy_floor,
    generate_corpus,
    generate_task,
    load_domain,
    task_truth,
    world_truth,
)

__all__ = [
    "CORPUS_SPLITS",
    "EntropyFloor",
    "TaskTruth",
    "WorldTruth",
    "clean_labels",
    "corpus_floor",
    "corpus_texts",
    "counterexamples",
    "evaluation_texts",
    "held_out_task_texts",
    "held_out_texts",
    "list_domains",
    "list_tasks",
    "task_info",
    "load_corpus",
    "load_task",
    "task_domain",
    "task_texts",
    "world_truth",
]

#: Share of a generated corpus in each split (``load_corpus(..., split=...)``).
CORPUS_SPLITS = {"train": 0.8, "validation": 0.1, "test": 0.1}

_LOCAL_SUFFIXES = (".txt", ".jsonl", ".csv")
_OFFLINE_VARS = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")


def list_domains() -> list[str]:
    """The generated domains (one ``data/<domain>.yaml`` each): valid ``load_corpus`` sources."""
    return domain_names()


def list_tasks() -> dict[str, str]:
    """Task name -> domain for every domain that defines a labeled task; ``load_task`` takes either name."""
    return {load_domain(d).task.name: d for d in domain_names() if load_domain(d).task is not None}


# ----------------------------------------------------------------------------------------- helpers


def _check_seed(seed: Any) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    return seed


def _is_local(source: str | os.PathLike) -> bool:
    path = Path(source)
    return isinstance(source, os.PathLike) or path.suffix.lower() in _LOCAL_SUFFIXES or path.exists()


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in _OFFLINE_VARS)


def _decode(path: Path, data: bytes, encoding: str, loader: str) -> str:
    """The file's text; bytes that are not valid ``encoding`` are an error naming the line and the byte."""
    # A UTF-8 file may start with a byte-order mark (spreadsheet exports do); it is not part of the text.
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        return data.decode(codec)
    except LookupError as error:
        raise ValueError(f"{path.name}: unknown encoding {encoding!r}; try 'utf-8', 'latin-1' or 'cp1252'.") from error
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        byte = data[error.start]
        raise ValueError(
            f"{path.name}, line {line}: byte 0x{byte:02x} (byte {column} of the line) is not valid {encoding} "
            f"({error.reason}). Re-encode the file as UTF-8 (for example `iconv -f latin1 -t utf-8 {path.name} > "
            f"fixed{path.suffix}`), or tell {loader}() the file's encoding: {loader}(path, encoding='latin-1')."
        ) from error


def _read_rows(
    path: Path,
    required: tuple[str, ...],
    *,
    encoding: str = "utf-8",
    loader: str = "load_corpus",
    column_options: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Rows of a .txt (one text per line), .jsonl (one JSON object per line) or .csv (with a header) file.

    ``column_options`` names the loader's keyword argument for each required column (``text_column``,
    ``label_column``), so that an error about a missing column can say how to name another one.
    """
    if not path.is_file():
        raise FileNotFoundError(f"No file at {path}. Pass a .txt, .jsonl or .csv file, or a domain/task name.")
    suffix = path.suffix.lower()
    if suffix not in _LOCAL_SUFFIXES:
        raise ValueError(f"{path.name}: unsupported file type {suffix!r}; use .txt, .jsonl or .csv.")
    raw = _decode(path, path.read_bytes(), encoding, loader)
    rows: list[dict[str, Any]] = []
    if suffix == ".txt":
        if required != ("text",):
            raise ValueError(
                f"{path.name}: a .txt file holds only text (one per line); a task needs columns {list(required)}, "
                "so use a .jsonl or .csv file with those columns."
            )
        rows = [{"text": line.strip()} for line in raw.splitlines() if line.strip()]
    elif suffix == ".jsonl":
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{path.name}, line {number}: not valid JSON ({error.msg}). Each line must be one JSON object."
                ) from error
            if not isinstance(row, dict):
                raise ValueError(
                    f'{path.name}, line {number}: expected a JSON object like {{"text": ...}}, got {type(row).__name__}.'
                )
            rows.append(row)
    else:
        try:
            reader = csv.DictReader(raw.splitlines())
            rows = [dict(r) for r in reader]
        except csv.Error as error:
            raise ValueError(f"{path.name}: not a readable CSV file ({error}).") from error
        if reader.fieldnames is None:
            raise ValueError(f"{path.name}: the CSV file is empty; it needs a header row with {list(required)}.")
        if any(None in r for r in rows):
            bad = next(i for i, r in enumerate(rows, start=2) if None in r)
            raise ValueError(
                f"{path.name}, line {bad}: more fields than the header has; quote texts that contain commas."
            )
    if not rows:
        raise ValueError(f"{path.name}: the file has no rows.")
    for number, row in enumerate(rows, start=1):
        missing = [c for c in required if c not in row or row[c] in (None, "")]
        if missing:
            if column_options:
                options = " and ".join(f"{option}='...'" for option in column_options)
                advice = f"If the file names them differently, say which columns to read: {loader}(path, {options})."
            else:
                advice = f"Rename the column that holds the text to {required[0]!r}."
            raise ValueError(
                f"{path.name}, row {number}: missing column(s) {missing}. Expected columns {list(required)}; "
                f"found {sorted(row)}. {advice}"
            )
        if not isinstance(row[required[0]], str):
            raise ValueError(
                f"{path.name}, row {number}: '{required[0]}' must be a string, got {type(row[required[0]]).__name__}."
            )
    return rows


def _from_hub(name: str, what: str, config: str | None = None) -> datasets.DatasetDict | datasets.Dataset:
    hint = (
        f"To use your own data offline, save it as a local file and pass its path: {what}('my_data.jsonl') "
        "with one JSON object per line, or a .csv with a header"
    )
    if _offline():
        raise RuntimeError(
            f"{name!r} is not a generated domain ({', '.join(list_domains())}) and the hub is off "
            f"(HF_DATASETS_OFFLINE / HF_HUB_OFFLINE is set). {hint}."
        )
    try:
        return datasets.load_dataset(name, config)
    except Exception as error:  # the hub raises many kinds; all need the same advice
        raise RuntimeError(
            f"Could not load the hub dataset {name!r} ({type(error).__name__}: {error}). {hint}."
        ) from error


def _info(description: dict[str, Any], features: datasets.Features | None = None) -> datasets.DatasetInfo:
    """Dataset metadata whose description is the JSON record of where the data came from (and its known truth)."""
    return datasets.DatasetInfo(description=json.dumps(description, sort_keys=True), features=features)


# ------------------------------------------------------------------------------------------ corpora


def _split_slice(n: int, split: str | None) -> slice:
    if split is None:
        return slice(0, n)
    if split not in CORPUS_SPLITS:
        raise ValueError(f"Unknown corpus split {split!r}; choose one of {list(CORPUS_SPLITS)} or None for all.")
    start = 0.0
    for name, share in CORPUS_SPLITS.items():
        if name == split:
            return slice(round(start * n), round((start + share) * n))
        start += share
    raise AssertionError("unreachable")


def load_corpus(
    source: str | os.PathLike = "general",
    profile: str | Profile = "fast",
    seed: int = 0,
    split: str | None = None,
    *,
    hub_config: str | None = None,
    encoding: str = "utf-8",
) -> datasets.Dataset:
    """Unlabeled sentences as a ``Dataset``: a generated domain (columns text, logprob), a file or a hub dataset (text).

    ``split`` ("train", "validation", "test": 80/10/10) picks a part; ``None`` gives the whole corpus.
    ``hub_config`` is the configuration name some hub datasets need (``"wikitext-2-raw-v1"``).
    ``encoding`` is a local file's text encoding (UTF-8 unless you say otherwise, e.g. ``"latin-1"``).
    """
    seed = _check_seed(seed)
    if isinstance(source, str) and source in list_domains():
        chosen = get_profile(profile)
        rows = generate_corpus(source, chosen.corpus_sentences, seed)
        rows = rows[_split_slice(len(rows), split)]
        texts = [t for t, _ in rows]
        logprobs = [lp for _, lp in rows]
        floor = entropy_floor(texts, logprobs) if rows else None
        info = {
            "source": "world",
            "domain": source,
            "profile": chosen.name,
            "seed": seed,
            "split": split,
            "floor_nats_per_word": floor.nats_per_word if floor else None,
            "floor_perplexity": floor.perplexity if floor else None,
        }
        features = datasets.Features({"text": datasets.Value("string"), "logprob": datasets.Value("float64")})
        return datasets.Dataset.from_dict(
            {"text": texts, "logprob": logprobs}, features=features, info=_info(info, features)
        )
    if _is_local(source):
        path = Path(source)
        rows = _read_rows(path, ("text",), encoding=encoding, loader="load_corpus")
        texts = [r["text"] for r in rows]
        texts = texts[_split_slice(len(texts), split)]
        return datasets.Dataset.from_dict(
            {"text": texts}, info=_info({"source": "file", "path": path.name, "split": split})
        )
    loaded = _from_hub(str(source), "load_corpus", hub_config)
    if isinstance(loaded, datasets.DatasetDict):
        part = split or ("train" if "train" in loaded else next(iter(loaded)))
        if part not in loaded:
            raise ValueError(f"The hub dataset {source!r} has splits {list(loaded)}, not {part!r}.")
        loaded = loaded[part]
    if "text" not in loaded.column_names:
        raise ValueError(
            f"The hub dataset {source!r} has columns {loaded.column_names}; rename the text column to 'text'."
        )
    return loaded


def corpus_floor(dataset: datasets.Dataset) -> EntropyFloor:
    """The entropy floor of a generated corpus (or part of one): what no language model can beat on it."""
    if "logprob" not in dataset.column_names:
        raise ValueError(
            "This corpus has no 'logprob' column: only text from the course's generator has a known floor."
        )
    return entropy_floor(dataset["text"], dataset["logprob"])


# -------------------------------------------------------------------------------------------- tasks


def _task_domain(source: str) -> str | None:
    tasks = list_tasks()
    if source in tasks:
        return tasks[source]
    if source in tasks.values():
        return source
    return None


def task_domain(task: str) -> str:
    """The domain a generated task belongs to (``"clinical_specialty"`` and ``"clinical"`` both give ``"clinical"``)."""
    domain = _task_domain(task)
    if domain is None:
        raise ValueError(f"Unknown task {task!r}; the generated tasks are {sorted(list_tasks())} (or their domains).")
    return domain


def _task_dict(
    splits: dict[str, list[tuple[str, Any]]], names: list[str], info: dict[str, Any]
) -> datasets.DatasetDict:
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    index = {name: i for i, name in enumerate(names)}
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {"text": [t for t, _ in rows], "label": [index[str(lab)] for _, lab in rows]},
                features=features,
                info=_info({**info, "split": split}, features),
            )
            for split, rows in splits.items()
        }
    )


def load_task(
    source: str | os.PathLike = "clinical",
    profile: str | Profile = "fast",
    seed: int = 0,
    *,
    text_column: str = "text",
    label_column: str = "label",
    hub_config: str | None = None,
    encoding: str = "utf-8",
) -> datasets.DatasetDict:
    """A labeled task as a ``DatasetDict`` with columns text and label (a ``ClassLabel``).

    A generated task (``"clinical"``, ``"finance"``, ``"legal"`` or its task name) has the splits
    train, validation, test, unseen_entities, negation and typos, and its known truth in
    ``world_truth``/``task_info``. A local .jsonl/.csv file (columns text and label) is split
    80/10/10 into train, validation and test with ``seed``; one too small to give every split a row
    is refused. ``text_column``/``label_column`` name a file's or hub dataset's columns if they are not
    text and label; ``encoding`` is a local file's text encoding (UTF-8 unless you say otherwise).
    A hub dataset keeps its own splits.
    """
    seed = _check_seed(seed)
    domain = _task_domain(source) if isinstance(source, str) else None
    if domain is not None:
        chosen = get_profile(profile)
        splits = generate_task(domain, chosen.task_train, chosen.task_eval, seed)
        truth = task_truth(domain, chosen.task_train, chosen.task_eval, seed)
        info = {
            "source": "world",
            "task": truth.task,
            "domain": domain,
            "profile": chosen.name,
            "seed": seed,
            "label_noise": truth.label_noise,
            "bayes_ceiling": truth.bayes_ceiling,
        }
        return _task_dict({s: list(splits[s]) for s in SPLITS}, list(truth.labels), info)
    if isinstance(source, str) and source in list_domains():
        raise ValueError(
            f"The domain {source!r} has no labeled task (its file has no 'task' section). "
            f"Tasks: {', '.join(f'{t} ({d})' for t, d in list_tasks().items())}."
        )
    if _is_local(source):
        path = Path(source)
        rows = _read_rows(
            path,
            (text_column, label_column),
            encoding=encoding,
            loader="load_task",
            column_options=("text_column", "label_column"),
        )
        pairs = [(r[text_column], r[label_column]) for r in rows]
        names = sorted({str(lab) for _, lab in pairs}, key=lambda s: (len(s), s) if s.isdigit() else (0, s))
        if len(names) < 2:
            raise ValueError(f"{path.name}: a classification task needs at least two labels, found {names}.")
        random.Random(seed).shuffle(pairs)
        n = len(pairs)
        cut1, cut2 = round(0.8 * n), round(0.9 * n)
        splits = {"train": pairs[:cut1], "validation": pairs[cut1:cut2], "test": pairs[cut2:]}
        empty = [name for name, part in splits.items() if not part]
        if empty:
            sizes = ", ".join(f"{name} {len(part)}" for name, part in splits.items())
            raise ValueError(
                f"{path.name}: {n} labeled rows split 80/10/10 give {sizes}, so the {' and '.join(empty)} "
                f"split{'s' if len(empty) > 1 else ''} would be empty and nothing could be measured on "
                f"{'them' if len(empty) > 1 else 'it'}. Add labeled rows: with 8 or more every split gets at least one "
                "(a validation or test set whose accuracy means anything needs hundreds)."
            )
        return _task_dict(splits, names, {"source": "file", "path": path.name, "seed": seed})
    loaded = _from_hub(str(source), "load_task", hub_config)
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    for split, part in loaded.items():
        missing = [c for c in (text_column, label_column) if c not in part.column_names]
        if missing:
            raise ValueError(
                f"The hub dataset {source!r} split {split!r} has columns {part.column_names}; pass "
                "text_column=... and label_column=... to name its text and label columns."
            )
    if text_column != "text":
        loaded = loaded.rename_column(text_column, "text")
    if label_column != "label":
        loaded = loaded.rename_column(label_column, "label")
    return loaded


def clean_labels(task: str, profile: str | Profile = "fast", seed: int = 0, split: str = "test") -> list[int]:
    """The label id each text of a generated task's ``split`` decides, before label noise (the known truth).

    Where it differs from the ``label`` column, the annotation is wrong and the text is right:
    error analysis uses it to tell a model's mistakes from the data's.
    """
    domain = task_domain(task)
    chosen = get_profile(profile)
    splits = clean_task_labels(domain, chosen.task_train, chosen.task_eval, _check_seed(seed))
    if split not in splits:
        raise ValueError(f"Unknown split {split!r}; a generated task has {list(splits)}.")
    names = list(task_truth(domain, chosen.task_train, chosen.task_eval, seed).labels)
    return [names.index(label) for label in splits[split]]


def counterexamples(task: str, n: int, seed: int = 0) -> datasets.Dataset:
    """``n`` labeled notes that affirm one cue of their label and deny one cue of another (no label noise).

    Reading the negation is the only way to label them, so adding them to the training split is
    what a failure on the ``negation`` challenge set calls for; the set itself stays unseen.
    """
    domain = task_domain(task)
    rows = counterexample_texts(domain, n, _check_seed(seed))
    names = list(task_truth(domain, 0, 0, seed).labels)
    return _task_dict({"counterexamples": list(rows)}, names, {"source": "world", "task": task, "seed": seed})[
        "counterexamples"
    ]


def task_info(dataset: datasets.Dataset | datasets.DatasetDict) -> dict[str, Any]:
    """What a loaded dataset says about itself (source, profile, seed and, for generated tasks, noise and ceiling)."""
    part = next(iter(dataset.values())) if isinstance(dataset, datasets.DatasetDict) else dataset
    return json.loads(part.info.description or "{}")


# ------------------------------------------------------------------- texts for training and scoring


def corpus_texts(domain: str | os.PathLike, profile: Profile, seed: int, split: str = "train") -> list[str]:
    """A split of a domain's corpus, cleaned with the same ``clean_text`` notebook 04 teaches.

    The generated corpora are clean already, so cleaning changes nothing there; it matters when
    ``load_corpus`` reads your own files. Sentences are not deduplicated: in the generated world a
    repeated sentence is a genuine second draw from the domain's distribution, and removing repeats
    would change the distribution whose entropy floor the course knows.
    """
    return [clean_text(text) for text in load_corpus(domain, profile, seed, split=split)["text"]]


def held_out_texts(domain: str, profile: Profile, seed: int = 0, n: int | None = None) -> list[str]:
    """The first ``n`` sentences (default ``profile.dapt_eval_texts``) of a corpus's validation split.

    Pretraining reads only the train split, so these are sentences no model has seen; the same
    few dozen are used for every model, which makes their pseudo-perplexities comparable.
    """
    n = profile.dapt_eval_texts if n is None else n
    return list(load_corpus(domain, profile, seed, split="validation")["text"][:n])


def task_texts(task: str, profile: Profile, seed: int = 0, split: str = "train") -> list[str]:
    """The texts of a labeled task's split with the labels dropped: TAPT's corpus (``split="train"``)."""
    return list(load_task(task, profile, seed)[split]["text"])


def held_out_task_texts(task: str, profile: Profile, seed: int = 0, n: int | None = None) -> list[str]:
    """The first ``n`` validation texts of a task (default ``profile.dapt_eval_texts``): TAPT's yardstick."""
    return task_texts(task, profile, seed, "validation")[: profile.dapt_eval_texts if n is None else n]


def evaluation_texts(profile: Profile, seed: int = 0, domain: str = "clinical") -> dict[str, list[str]]:
    """The held-out samples every continued-pretraining run is scored on: general text, the domain's
    corpus and, when the domain has a task, its texts (keys ``general``, ``<domain>``, ``<domain>_task``)."""
    texts = {"general": held_out_texts("general", profile, seed), domain: held_out_texts(domain, profile, seed)}
    if domain in list_tasks().values():
        texts[f"{domain}_task"] = held_out_task_texts(domain, profile, seed)
    return texts
