"""The course's artifacts and their builders, in dependency order.

    tokenizer (04) ──► general BERT (05) ──► DAPT / TAPT BERT (06)

Each ``get_*`` function loads its artifact from the cache (``course_utils.cache``) or builds it
with the same functions the notebook that teaches it uses, showing a progress bar and printing one
line that says which happened. A cache key holds everything the builder reads: the profile fields,
the seed, a fingerprint of the code it runs (this file and the modules it calls, with all they
import) and the key of each artifact it builds on, so changing the tokenizer, or a line of
``train_mlm``, also gives a new general BERT. Only the ``get_*`` functions take a profile's name;
they resolve it once and hand the ``Profile`` down.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import BertForMaskedLM, PreTrainedTokenizerFast

from course_utils.cache import fingerprint, get_or_build, source_files
from course_utils.data import corpus_texts, evaluation_texts, task_domain, task_texts
from course_utils.domain_pretraining import (
    CONTINUED_LR,
    CONTINUED_WARMUP,
    EVALUATIONS_PER_RUN,
    continue_pretraining,
    pppl_eval_fn,
    tapt_steps,
)
from course_utils.env import course_device
from course_utils.mlm import average_unread_rows, encode_texts, make_bert_config, occurring_token_ids, train_mlm
from course_utils.paths import data_dir
from course_utils.profiles import Profile, get_profile
from course_utils.tokenization import train_wordpiece
from course_utils.world import knowledge_words

#: The domains whose text the course vocabulary is trained on (see notebook 04 for why all four).
TOKENIZER_DOMAINS = ("general", "clinical", "finance", "legal")

#: The modules each builder calls besides this file. Their source, that of every course_utils module
#: they import and this file's own make the code part of the artifact's key (``code_fingerprint``).
TOKENIZER_CODE = ("course_utils.data", "course_utils.tokenization")
GENERAL_BERT_CODE = ("course_utils.data", "course_utils.env", "course_utils.mlm", "course_utils.world")
CONTINUED_CODE = ("course_utils.data", "course_utils.domain_pretraining", "course_utils.env", "course_utils.world")

#: Pretraining hyperparameters of the general BERT that the profile does not set.
GENERAL_BERT_LR = 2e-3
GENERAL_BERT_WARMUP = 0.1

#: Share of every batch taken from general text when DAPT replays (notebook 06's third run).
REPLAY_RATIO = 0.25
HISTORY_FILE = "training_history.json"


def code_fingerprint(*modules: str) -> str:
    """A hash of the code a builder runs: this file (every builder lives here) and ``modules``, followed
    through their imports. Any edit to that code gives new keys, so a stale entry is never loaded."""
    return fingerprint(source_files(__name__, follow_imports=False) | source_files(*modules))


def world_fingerprint() -> str:
    """A hash of the domain world's definitions (``data/*.yaml``).

    The corpora are generated from these files, so an edited lexicon or template must give new
    cache keys for everything trained on them, even though the profile and seed are unchanged.
    """
    folder = data_dir()
    return fingerprint((path.name for path in folder.glob("*.yaml")), folder)


def load_bert(folder: Path) -> BertForMaskedLM:
    """A saved ``BertForMaskedLM`` in eval mode (safetensors only, no remote code)."""
    return BertForMaskedLM.from_pretrained(str(folder), use_safetensors=True).eval()


def load_history(folder: Path) -> list[dict[str, Any]]:
    return json.loads((folder / HISTORY_FILE).read_text())


def _save_bert(folder: Path, model: BertForMaskedLM, history: list[dict[str, Any]]) -> None:
    """Weights (config.json + model.safetensors) and the training history (JSON) of a trained BERT."""
    model.cpu().save_pretrained(str(folder))
    (folder / HISTORY_FILE).write_text(json.dumps(history))


def _bert_entry(
    name: str, build: Callable[[Path], None], config: dict[str, Any], describe: str, *, history: bool, verbose: bool
) -> Any:
    """A cached BERT entry: the model itself, or (``history=True``) the training history saved beside it."""
    return get_or_build(
        name,
        build,
        load_history if history else load_bert,
        config=config,
        describe=describe,
        verbose=verbose and not history,
    )


# ------------------------------------------------------------------------------------- tokenizer


def tokenizer_config(profile: Profile, seed: int = 0) -> dict[str, Any]:
    """Everything the course tokenizer's builder reads (its cache key)."""
    return {
        "code": code_fingerprint(*TOKENIZER_CODE),
        "world": world_fingerprint(),
        "domains": list(TOKENIZER_DOMAINS),
        "corpus_sentences": profile.corpus_sentences,
        "vocab_size": profile.vocab_size,
        "max_seq_len": profile.max_seq_len,
        "seed": seed,
    }


def tokenizer_training_texts(profile: Profile, seed: int = 0) -> list[str]:
    """The training splits of all four domains, in equal shares: the course vocabulary's text."""
    return [text for domain in TOKENIZER_DOMAINS for text in corpus_texts(domain, profile, seed)]


def build_tokenizer(folder: Path, profile: Profile, seed: int = 0) -> None:
    """Train the course's WordPiece vocabulary and save it as JSON files (``save_pretrained``)."""
    texts = tokenizer_training_texts(profile, seed)
    tokenizer = train_wordpiece(texts, profile.vocab_size, model_max_length=profile.max_seq_len)
    tokenizer.save_pretrained(str(folder))


def load_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(str(folder))


def _tokenizer_entry(p: Profile, seed: int, *, verbose: bool) -> PreTrainedTokenizerFast:
    return get_or_build(
        "tokenizer",
        lambda folder: build_tokenizer(folder, p, seed),
        load_tokenizer,
        config=tokenizer_config(p, seed),
        describe=f"the course tokenizer ({p.name} profile, seed {seed})",
        verbose=verbose,
    )


def get_tokenizer(profile: str | Profile, seed: int = 0, *, verbose: bool = True) -> PreTrainedTokenizerFast:
    """The course tokenizer: BERT WordPiece trained on general, clinical, finance and legal text (notebook 04)."""
    return _tokenizer_entry(get_profile(profile), seed, verbose=verbose)


# ---------------------------------------------------------------------------------- general BERT


def general_bert_config(profile: Profile, seed: int = 0) -> dict[str, Any]:
    """Everything the general BERT's builder reads (its cache key), the tokenizer's key included."""
    return {
        "code": code_fingerprint(*GENERAL_BERT_CODE),
        "tokenizer": tokenizer_config(profile, seed),
        "corpus_sentences": profile.corpus_sentences,
        "hidden_size": profile.hidden_size,
        "num_layers": profile.num_layers,
        "num_heads": profile.num_heads,
        "intermediate_size": profile.intermediate_size,
        "max_seq_len": profile.max_seq_len,
        "pretrain_batch_size": profile.pretrain_batch_size,
        "pretrain_steps": profile.pretrain_steps,
        "lr": GENERAL_BERT_LR,
        "warmup_ratio": GENERAL_BERT_WARMUP,
        "seed": seed,
    }


def new_bert(profile: Profile, tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> BertForMaskedLM:
    """A freshly initialised ``BertForMaskedLM`` sized by the profile: the starting point of pretraining."""
    torch.manual_seed(seed)
    return BertForMaskedLM(make_bert_config(profile, len(tokenizer), pad_token_id=tokenizer.pad_token_id))


def build_general_bert(folder: Path, profile: Profile, seed: int = 0, *, progress: bool = True) -> None:
    """Pretrain a tiny BERT on the general corpus with ``train_mlm``; save weights (safetensors) and history (JSON)."""
    tokenizer = _tokenizer_entry(profile, seed, verbose=True)
    model = new_bert(profile, tokenizer, seed)
    texts = corpus_texts("general", profile, seed)
    history = train_mlm(
        model,
        tokenizer,
        texts,
        steps=profile.pretrain_steps,
        batch_size=profile.pretrain_batch_size,
        lr=GENERAL_BERT_LR,
        warmup_ratio=GENERAL_BERT_WARMUP,
        salient_words=knowledge_words("general"),  # entity-aware masking (notebook 06 measures why)
        device=course_device(),  # the device setup() chose: a GPU when there is one
        seed=seed,
        progress=progress,
        desc="Pretraining the general BERT",
    )
    # The domain words it never read start as the average word, not as tiny random vectors (notebook 05).
    read = occurring_token_ids(encode_texts(tokenizer, texts, profile.max_seq_len), len(tokenizer))
    read[tokenizer.all_special_ids] = True
    average_unread_rows(model, read, seed=seed)
    _save_bert(folder, model, history)


def _general_entry(p: Profile, seed: int, *, history: bool, verbose: bool) -> Any:
    """The general BERT's cache entry: the model, or (``history=True``) its training history."""
    return _bert_entry(
        "general_bert",
        lambda folder: build_general_bert(folder, p, seed, progress=verbose or history),
        general_bert_config(p, seed),
        f"the general BERT ({p.name} profile, seed {seed})",
        history=history,
        verbose=verbose,
    )


def get_general_bert(profile: str | Profile, seed: int = 0, *, verbose: bool = True) -> BertForMaskedLM:
    """The general BERT: the course tokenizer plus ``profile.pretrain_steps`` MLM steps on general text (notebook 05)."""
    return _general_entry(get_profile(profile), seed, history=False, verbose=verbose)


def get_general_bert_history(profile: str | Profile, seed: int = 0) -> list[dict[str, Any]]:
    """The general BERT's training history (one record per step), saved with it when it was built."""
    return _general_entry(get_profile(profile), seed, history=True, verbose=False)


# ----------------------------------------------------------------------------- DAPT / TAPT BERT (06)
# Continued pretraining of the general BERT with course_utils.domain_pretraining.continue_pretraining,
# the function notebook 06 calls for its inline runs: DAPT, DAPT with replay, TAPT. Each entry also saves the run's
# history, whose evaluations (pseudo-perplexity on held-out general, domain and task text) the
# notebook plots as curves.


def _continued_config(kind: str, text_source: str, profile: Profile, seed: int) -> dict[str, Any]:
    """The cache key of a continued-pretraining run: its text, the profile fields it reads, the base model's key."""
    return {
        "code": code_fingerprint(*CONTINUED_CODE),
        "kind": kind,
        "text": text_source,
        "general_bert": general_bert_config(profile, seed),
        "corpus_sentences": profile.corpus_sentences,
        "task_train": profile.task_train,
        "task_eval": profile.task_eval,
        "batch_size": profile.batch_size,
        "dapt_steps": profile.dapt_steps,
        "dapt_eval_texts": profile.dapt_eval_texts,
        "lr": CONTINUED_LR,
        "warmup_ratio": CONTINUED_WARMUP,
        "evaluations": EVALUATIONS_PER_RUN,
        "seed": seed,
    }


def dapt_bert_config(profile: Profile, seed: int = 0, domain: str = "clinical") -> dict[str, Any]:
    """Everything the DAPT BERT's builder reads (its cache key), the general BERT's key included."""
    return _continued_config("dapt", f"corpus:{domain}", profile, seed)


def tapt_bert_config(profile: Profile, seed: int = 0, task: str = "clinical") -> dict[str, Any]:
    """Everything the TAPT BERT's builder reads (its cache key), the general BERT's key included."""
    return {**_continued_config("tapt", f"task:{task}", profile, seed), "steps": tapt_steps(profile)}


def replay_bert_config(profile: Profile, seed: int = 0, domain: str = "clinical") -> dict[str, Any]:
    """Everything the replay BERT's builder reads (its cache key), the general BERT's key included."""
    return {**_continued_config("replay", f"corpus:{domain}", profile, seed), "replay_ratio": REPLAY_RATIO}


def _build_continued(
    folder: Path,
    profile: Profile,
    seed: int,
    texts: list[str],
    domain: str,
    desc: str,
    progress: bool,
    replay_ratio: float = 0.0,
    steps: int | None = None,
) -> None:
    """Continue the general BERT on ``texts``; save weights, tokenizer and history (with its evaluations).

    With ``replay_ratio`` > 0 that share of every batch is general text (replay against forgetting);
    ``steps`` (default ``profile.dapt_steps``) is how long the run lasts.
    """
    tokenizer = _tokenizer_entry(profile, seed, verbose=progress)
    model = _general_entry(profile, seed, history=False, verbose=progress)
    eval_fn = pppl_eval_fn(tokenizer, evaluation_texts(profile, seed, domain))
    history = continue_pretraining(
        model,
        tokenizer,
        texts,
        profile,
        seed,
        mix_texts=corpus_texts("general", profile, seed) if replay_ratio > 0 else None,
        mix_ratio=replay_ratio,
        salient_words=knowledge_words(domain),
        eval_fn=eval_fn,
        steps=steps,
        device=course_device(),
        progress=progress,
        desc=desc,
    )
    _save_bert(folder, model, history)
    tokenizer.save_pretrained(str(folder))  # the same vocabulary, so the entry stands on its own


def build_dapt_bert(
    folder: Path, profile: Profile, seed: int = 0, domain: str = "clinical", *, progress: bool = True
) -> None:
    """DAPT: continue the general BERT's MLM training on the train split of ``domain``'s corpus."""
    texts = corpus_texts(domain, profile, seed)
    _build_continued(folder, profile, seed, texts, domain, f"DAPT on {domain} text", progress)


def build_replay_bert(
    folder: Path, profile: Profile, seed: int = 0, domain: str = "clinical", *, progress: bool = True
) -> None:
    """DAPT with replay: like DAPT, but ``REPLAY_RATIO`` of every batch is general text."""
    texts = corpus_texts(domain, profile, seed)
    desc = f"DAPT on {domain} text with {REPLAY_RATIO:.0%} replay"
    _build_continued(folder, profile, seed, texts, domain, desc, progress, replay_ratio=REPLAY_RATIO)


def build_tapt_bert(
    folder: Path, profile: Profile, seed: int = 0, task: str = "clinical", *, progress: bool = True
) -> None:
    """TAPT: continue the general BERT's MLM training on the task's training texts, without their labels."""
    texts = task_texts(task, profile, seed)
    desc = f"TAPT on {task} task text"
    _build_continued(folder, profile, seed, texts, task_domain(task), desc, progress, steps=tapt_steps(profile))


def _dapt_entry(p: Profile, seed: int, domain: str, *, history: bool, verbose: bool) -> Any:
    """The DAPT cache entry: the model, or (``history=True``) its training history."""
    return _bert_entry(
        "dapt_bert",
        lambda folder: build_dapt_bert(folder, p, seed, domain, progress=verbose or history),
        dapt_bert_config(p, seed, domain),
        f"the {domain} DAPT BERT ({p.name} profile, seed {seed})",
        history=history,
        verbose=verbose,
    )


def _replay_entry(p: Profile, seed: int, domain: str, *, history: bool, verbose: bool) -> Any:
    """The replay cache entry: the model, or (``history=True``) its training history."""
    return _bert_entry(
        "replay_bert",
        lambda folder: build_replay_bert(folder, p, seed, domain, progress=verbose or history),
        replay_bert_config(p, seed, domain),
        f"the {domain} DAPT BERT with replay ({p.name} profile, seed {seed})",
        history=history,
        verbose=verbose,
    )


def _tapt_entry(p: Profile, seed: int, task: str, *, history: bool, verbose: bool) -> Any:
    """The TAPT cache entry: the model, or (``history=True``) its training history."""
    return _bert_entry(
        "tapt_bert",
        lambda folder: build_tapt_bert(folder, p, seed, task, progress=verbose or history),
        tapt_bert_config(p, seed, task),
        f"the {task} TAPT BERT ({p.name} profile, seed {seed})",
        history=history,
        verbose=verbose,
    )


def get_dapt_bert(
    profile: str | Profile, seed: int = 0, domain: str = "clinical", *, verbose: bool = True
) -> BertForMaskedLM:
    """The general BERT after ``profile.dapt_steps`` more MLM steps on ``domain``'s corpus (notebook 06)."""
    return _dapt_entry(get_profile(profile), seed, domain, history=False, verbose=verbose)


def get_dapt_bert_history(profile: str | Profile, seed: int = 0, domain: str = "clinical") -> list[dict[str, Any]]:
    """The DAPT run's history (one record per step, pseudo-perplexities at the evaluated steps)."""
    return _dapt_entry(get_profile(profile), seed, domain, history=True, verbose=False)


def get_replay_bert(
    profile: str | Profile, seed: int = 0, domain: str = "clinical", *, verbose: bool = True
) -> BertForMaskedLM:
    """DAPT with ``REPLAY_RATIO`` of general text in every batch, which forgets less general text (06)."""
    return _replay_entry(get_profile(profile), seed, domain, history=False, verbose=verbose)


def get_replay_bert_history(profile: str | Profile, seed: int = 0, domain: str = "clinical") -> list[dict[str, Any]]:
    """The replay run's history (one record per step, pseudo-perplexities at the evaluated steps)."""
    return _replay_entry(get_profile(profile), seed, domain, history=True, verbose=False)


def get_tapt_bert(
    profile: str | Profile, seed: int = 0, task: str = "clinical", *, verbose: bool = True
) -> BertForMaskedLM:
    """The general BERT after ``tapt_steps(profile)`` more MLM steps on the task's unlabeled training texts (06)."""
    return _tapt_entry(get_profile(profile), seed, task, history=False, verbose=verbose)


def get_tapt_bert_history(profile: str | Profile, seed: int = 0, task: str = "clinical") -> list[dict[str, Any]]:
    """The TAPT run's history (one record per step, pseudo-perplexities at the evaluated steps)."""
    return _tapt_entry(get_profile(profile), seed, task, history=True, verbose=False)
