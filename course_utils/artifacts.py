"""The course's artifacts and their builders, in dependency order.

    tokenizer (04) ──► general BERT (05) ──► DAPT / TAPT BERT (06) ──► teacher (07) ──► students (08)

Each ``get_*`` function loads its artifact from the cache (``course_utils.cache``) or builds it
with the same functions the notebook that teaches it uses, showing a progress bar and printing one
line that says which happened. A cache key holds everything the builder reads: the profile fields,
the seed, a recipe version (raise it when the recipe changes) and the key of each artifact it
builds on, so changing the tokenizer also gives a new general BERT.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import BertForMaskedLM, PreTrainedTokenizerFast

from course_utils.cache import get_or_build
from course_utils.data import load_corpus
from course_utils.env import pick_device
from course_utils.paths import data_dir
from course_utils.profiles import Profile, get_profile
from course_utils.tokenization import clean_text, train_wordpiece
from course_utils.training import make_bert_config, train_mlm

#: The domains whose text the course vocabulary is trained on (see notebook 04 for why all four).
TOKENIZER_DOMAINS = ("general", "clinical", "finance", "legal")
TOKENIZER_RECIPE = 1
GENERAL_BERT_RECIPE = 1

#: Pretraining hyperparameters of the general BERT that the profile does not set.
GENERAL_BERT_LR = 2e-3
GENERAL_BERT_WARMUP = 0.1

HISTORY_FILE = "training_history.json"


def _profile(profile: str | Profile) -> Profile:
    return get_profile(profile)


def corpus_texts(domain: str, profile: str | Profile, seed: int, split: str = "train") -> list[str]:
    """A split of a domain's corpus, cleaned with the same ``clean_text`` notebook 04 teaches.

    The generated corpora are clean already, so cleaning changes nothing there; it matters when
    ``load_corpus`` reads your own files. Sentences are not deduplicated: in the generated world a
    repeated sentence is a genuine second draw from the domain's distribution, and removing repeats
    would change the distribution whose entropy floor the course knows.
    """
    return [clean_text(text) for text in load_corpus(domain, profile, seed, split=split)["text"]]


@functools.cache
def world_fingerprint() -> str:
    """A hash of the domain world's definitions (``data/*.yaml``).

    The corpora are generated from these files, so an edited lexicon or template must give new
    cache keys for everything trained on them, even though the profile and seed are unchanged.
    """
    digest = hashlib.sha256()
    for path in sorted(data_dir().glob("*.yaml")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------- tokenizer


def tokenizer_config(profile: str | Profile, seed: int = 0) -> dict[str, Any]:
    """Everything the course tokenizer's builder reads (its cache key)."""
    p = _profile(profile)
    return {
        "recipe": TOKENIZER_RECIPE,
        "world": world_fingerprint(),
        "domains": list(TOKENIZER_DOMAINS),
        "corpus_sentences": p.corpus_sentences,
        "vocab_size": p.vocab_size,
        "max_seq_len": p.max_seq_len,
        "seed": seed,
    }


def tokenizer_training_texts(profile: str | Profile, seed: int = 0) -> list[str]:
    """The training splits of all four domains, in equal shares: the course vocabulary's text."""
    return [text for domain in TOKENIZER_DOMAINS for text in corpus_texts(domain, profile, seed)]


def build_tokenizer(folder: Path, profile: str | Profile, seed: int = 0) -> None:
    """Train the course's WordPiece vocabulary and save it as JSON files (``save_pretrained``)."""
    p = _profile(profile)
    tokenizer = train_wordpiece(tokenizer_training_texts(p, seed), p.vocab_size, model_max_length=p.max_seq_len)
    tokenizer.save_pretrained(str(folder))


def load_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(str(folder))


def get_tokenizer(profile: str | Profile, seed: int = 0, *, verbose: bool = True) -> PreTrainedTokenizerFast:
    """The course tokenizer: BERT WordPiece trained on general, clinical, finance and legal text (notebook 04)."""
    p = _profile(profile)
    return get_or_build(
        "tokenizer",
        lambda folder: build_tokenizer(folder, p, seed),
        load_tokenizer,
        config=tokenizer_config(p, seed),
        describe=f"the course tokenizer ({p.name} profile, seed {seed})",
        verbose=verbose,
    )


# ---------------------------------------------------------------------------------- general BERT


def general_bert_config(profile: str | Profile, seed: int = 0) -> dict[str, Any]:
    """Everything the general BERT's builder reads (its cache key), the tokenizer's key included."""
    p = _profile(profile)
    return {
        "recipe": GENERAL_BERT_RECIPE,
        "tokenizer": tokenizer_config(p, seed),
        "corpus_sentences": p.corpus_sentences,
        "hidden_size": p.hidden_size,
        "num_layers": p.num_layers,
        "num_heads": p.num_heads,
        "intermediate_size": p.intermediate_size,
        "max_seq_len": p.max_seq_len,
        "batch_size": p.batch_size,
        "pretrain_steps": p.pretrain_steps,
        "lr": GENERAL_BERT_LR,
        "warmup_ratio": GENERAL_BERT_WARMUP,
        "seed": seed,
    }


def new_bert(profile: str | Profile, tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> BertForMaskedLM:
    """A freshly initialised ``BertForMaskedLM`` sized by the profile: the starting point of pretraining."""
    torch.manual_seed(seed)
    return BertForMaskedLM(make_bert_config(_profile(profile), len(tokenizer), pad_token_id=tokenizer.pad_token_id))


def build_general_bert(folder: Path, profile: str | Profile, seed: int = 0, *, progress: bool = True) -> None:
    """Pretrain a tiny BERT on the general corpus with ``train_mlm``; save weights (safetensors) and history (JSON)."""
    p = _profile(profile)
    tokenizer = get_tokenizer(p, seed)
    model = new_bert(p, tokenizer, seed)
    history = train_mlm(
        model,
        tokenizer,
        corpus_texts("general", p, seed),
        steps=p.pretrain_steps,
        batch_size=p.batch_size,
        lr=GENERAL_BERT_LR,
        warmup_ratio=GENERAL_BERT_WARMUP,
        device=pick_device(),  # a GPU when there is one: the full profile is meant for it
        seed=seed,
        progress=progress,
        desc="Pretraining the general BERT",
    )
    model.cpu().save_pretrained(str(folder))  # config.json + model.safetensors
    (folder / HISTORY_FILE).write_text(json.dumps(history))


def load_bert(folder: Path) -> BertForMaskedLM:
    """A saved ``BertForMaskedLM`` in eval mode (safetensors only, no remote code)."""
    return BertForMaskedLM.from_pretrained(str(folder), use_safetensors=True).eval()


def load_history(folder: Path) -> list[dict[str, Any]]:
    return json.loads((folder / HISTORY_FILE).read_text())


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


def get_general_bert(profile: str | Profile, seed: int = 0, *, verbose: bool = True) -> BertForMaskedLM:
    """The general BERT: the course tokenizer plus ``profile.pretrain_steps`` MLM steps on general text (notebook 05)."""
    p = _profile(profile)
    return _bert_entry(
        "general_bert",
        lambda folder: build_general_bert(folder, p, seed, progress=verbose),
        general_bert_config(p, seed),
        f"the general BERT ({p.name} profile, seed {seed})",
        history=False,
        verbose=verbose,
    )


def get_general_bert_history(profile: str | Profile, seed: int = 0) -> list[dict[str, Any]]:
    """The general BERT's training history (one record per step), saved with it when it was built."""
    p = _profile(profile)
    return _bert_entry(
        "general_bert",
        lambda folder: build_general_bert(folder, p, seed),
        general_bert_config(p, seed),
        "",
        history=True,
        verbose=False,
    )


# ------------------------------------------------------------------------------ further artifacts
# Later notebooks add their builders below, each on top of the ones above and in the same pattern
# (a *_config function naming the profile fields, the seed, a recipe version and the config of the
# artifact it starts from; a build_* function; a get_* function calling _bert_entry):
#   get_dapt_bert / get_tapt_bert (06): continue get_general_bert's model with train_mlm on domain or task text
#   get_teacher (07): fine-tune the DAPT BERT on the clinical task


# ----------------------------------------------------------------------------- DAPT / TAPT BERT (06)
# Continued pretraining of the general BERT with course_utils.domain_pretraining.continue_pretraining,
# the function notebook 06 calls for its inline runs (replay). Each entry also saves the run's
# history, whose evaluations (pseudo-perplexity on held-out general, domain and task text) the
# notebook plots as curves.

DAPT_RECIPE = 1
TAPT_RECIPE = 1


def _continued_config(kind: str, recipe: int, text_source: str, profile: Profile, seed: int) -> dict[str, Any]:
    """The cache key of a continued-pretraining run: its text, the profile fields it reads, the base model's key."""
    from course_utils import domain_pretraining as dp

    return {
        "recipe": recipe,
        "kind": kind,
        "text": text_source,
        "general_bert": general_bert_config(profile, seed),
        "corpus_sentences": profile.corpus_sentences,
        "task_train": profile.task_train,
        "task_eval": profile.task_eval,
        "batch_size": profile.batch_size,
        "dapt_steps": profile.dapt_steps,
        "dapt_eval_texts": profile.dapt_eval_texts,
        "lr": dp.CONTINUED_LR,
        "warmup_ratio": dp.CONTINUED_WARMUP,
        "evaluations": dp.EVALUATIONS_PER_RUN,
        "seed": seed,
    }


def dapt_bert_config(profile: str | Profile, seed: int = 0, domain: str = "clinical") -> dict[str, Any]:
    """Everything the DAPT BERT's builder reads (its cache key), the general BERT's key included."""
    return _continued_config("dapt", DAPT_RECIPE, f"corpus:{domain}", _profile(profile), seed)


def tapt_bert_config(profile: str | Profile, seed: int = 0, task: str = "clinical") -> dict[str, Any]:
    """Everything the TAPT BERT's builder reads (its cache key), the general BERT's key included."""
    return _continued_config("tapt", TAPT_RECIPE, f"task:{task}", _profile(profile), seed)


def _build_continued(
    folder: Path, profile: Profile, seed: int, texts: list[str], domain: str, desc: str, progress: bool
) -> None:
    """Continue the general BERT on ``texts``; save weights, tokenizer and history (with its evaluations)."""
    from course_utils import domain_pretraining as dp

    tokenizer = get_tokenizer(profile, seed, verbose=progress)
    model = get_general_bert(profile, seed, verbose=progress)
    eval_fn = dp.pppl_eval_fn(tokenizer, dp.evaluation_texts(profile, seed, domain))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    history = dp.continue_pretraining(
        model, tokenizer, texts, profile, seed, eval_fn=eval_fn, device=device, progress=progress, desc=desc
    )
    model.cpu().save_pretrained(str(folder))  # config.json + model.safetensors
    tokenizer.save_pretrained(str(folder))  # the same vocabulary, so the entry stands on its own
    (folder / HISTORY_FILE).write_text(json.dumps(history))


def build_dapt_bert(
    folder: Path, profile: str | Profile, seed: int = 0, domain: str = "clinical", *, progress: bool = True
) -> None:
    """DAPT: continue the general BERT's MLM training on the train split of ``domain``'s corpus."""
    p = _profile(profile)
    _build_continued(folder, p, seed, corpus_texts(domain, p, seed), domain, f"DAPT on {domain} text", progress)


def build_tapt_bert(
    folder: Path, profile: str | Profile, seed: int = 0, task: str = "clinical", *, progress: bool = True
) -> None:
    """TAPT: continue the general BERT's MLM training on the task's training texts, without their labels."""
    from course_utils import domain_pretraining as dp

    p = _profile(profile)
    texts = dp.task_texts(task, p, seed)
    _build_continued(folder, p, seed, texts, dp.task_domain(task), f"TAPT on {task} task text", progress)


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
    return _dapt_entry(_profile(profile), seed, domain, history=False, verbose=verbose)


def get_dapt_bert_history(profile: str | Profile, seed: int = 0, domain: str = "clinical") -> list[dict[str, Any]]:
    """The DAPT run's history (one record per step, pseudo-perplexities at the evaluated steps)."""
    return _dapt_entry(_profile(profile), seed, domain, history=True, verbose=False)


def get_tapt_bert(
    profile: str | Profile, seed: int = 0, task: str = "clinical", *, verbose: bool = True
) -> BertForMaskedLM:
    """The general BERT after ``profile.dapt_steps`` more MLM steps on the task's unlabeled training texts (06)."""
    return _tapt_entry(_profile(profile), seed, task, history=False, verbose=verbose)


def get_tapt_bert_history(profile: str | Profile, seed: int = 0, task: str = "clinical") -> list[dict[str, Any]]:
    """The TAPT run's history (one record per step, pseudo-perplexities at the evaluated steps)."""
    return _tapt_entry(_profile(profile), seed, task, history=True, verbose=False)
