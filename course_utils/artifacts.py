"""The course's cached models: each built from its recipe (``course_utils.recipes``) and kept in the cache.

    get("dapt_bert", profile, seed)   # load it, or build it (and what it starts from) first

``get`` loads an entry from the cache (``course_utils.cache``) or builds it with the same functions
the notebook that teaches it uses, showing a progress bar and printing one line that says which
happened. The entry's key (``cache_config``) is derived from its recipe, the profile fields the recipe
declares, the seed, the domain or task it is built for, its parent's key, and a fingerprint of the
code its builder runs; so changing the tokenizer, or a line of ``train_mlm``, also gives a new
general BERT. The builders train on the device ``setup()`` chose, unless ``device`` says otherwise.
The ``get_*`` functions are one-liners over ``get`` that the notebooks call.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import BertForMaskedLM, PreTrainedTokenizerFast

from course_utils.cache import fingerprint, get_or_build, source_files
from course_utils.classifier import (
    EncodedSplit,
    SequenceClassifier,
    classifier_from,
    encode_split,
    load_classifier,
    predict_logits,
    save_classifier,
)
from course_utils.data import corpus_texts, counterexamples, evaluation_texts, load_task, task_domain, task_texts
from course_utils.distillation import distill, random_student, student_config
from course_utils.domain_pretraining import continue_pretraining, pppl_eval_fn
from course_utils.env import course_device
from course_utils.finetuning import train_classifier
from course_utils.linear_probe import warm_start_head
from course_utils.mlm import (
    average_unread_rows,
    encode_texts,
    heldout_mlm_loss,
    make_bert_config,
    occurring_token_ids,
    train_mlm,
)
from course_utils.paths import data_dir
from course_utils.profiles import Profile, get_profile
from course_utils.recipes import (
    GENERAL_BERT_VALID_TEXTS,
    RECIPES,
    REPLAY_RATIO,
    TOKENIZER_DOMAINS,
    Recipe,
    RecipeProfile,
    restricted,
)
from course_utils.strategies import apply_strategy
from course_utils.tokenization import train_wordpiece
from course_utils.world import knowledge_words

#: The modules each builder runs besides this file and the recipe table. Their source, that of every
#: course_utils module they import, and this file's own make the code part of the entry's key.
BUILDER_CODE = {
    "tokenizer": ("course_utils.data", "course_utils.tokenization"),
    "general_bert": ("course_utils.data", "course_utils.env", "course_utils.mlm", "course_utils.world"),
    "dapt_bert": ("course_utils.data", "course_utils.domain_pretraining", "course_utils.env", "course_utils.world"),
    "replay_bert": ("course_utils.data", "course_utils.domain_pretraining", "course_utils.env", "course_utils.world"),
    "tapt_bert": ("course_utils.data", "course_utils.domain_pretraining", "course_utils.env", "course_utils.world"),
    "teacher": ("course_utils.data", "course_utils.env", "course_utils.finetuning", "course_utils.linear_probe"),
    "classifier_random": (
        "course_utils.data",
        "course_utils.env",
        "course_utils.finetuning",
        "course_utils.strategies",
    ),
    "classifier_general": (
        "course_utils.data",
        "course_utils.env",
        "course_utils.finetuning",
        "course_utils.strategies",
    ),
    "classifier_dapt_head_only": (
        "course_utils.data",
        "course_utils.env",
        "course_utils.finetuning",
        "course_utils.strategies",
    ),
    "classifier_dapt_lora": (
        "course_utils.data",
        "course_utils.env",
        "course_utils.finetuning",
        "course_utils.strategies",
    ),
    "classifier_dapt_counterexamples": (
        "course_utils.data",
        "course_utils.env",
        "course_utils.finetuning",
        "course_utils.strategies",
    ),
    "student": ("course_utils.data", "course_utils.distillation", "course_utils.env", "course_utils.finetuning"),
}
#: What each entry is called in the line that says whether it was loaded or built.
DESCRIBE = {
    "tokenizer": "the course tokenizer",
    "general_bert": "the general BERT",
    "dapt_bert": "the {scope} DAPT BERT",
    "replay_bert": "the {scope} DAPT BERT with replay",
    "tapt_bert": "the {scope} TAPT BERT",
    "teacher": "the {scope} teacher",
    "classifier_random": "the {scope} classifier from random weights",
    "classifier_general": "the {scope} classifier from the general BERT",
    "classifier_dapt_head_only": "the {scope} classifier, DAPT BERT, head only",
    "classifier_dapt_lora": "the {scope} classifier, DAPT BERT, LoRA",
    "classifier_dapt_counterexamples": "the {scope} classifier, DAPT BERT, with counterexamples",
    "student": "the {scope} distilled student",
}
#: What each continued-pretraining run's progress bar says.
PROGRESS = {
    "dapt_bert": "DAPT on {scope} text",
    "replay_bert": f"DAPT on {{scope}} text with {REPLAY_RATIO:.0%} replay",
    "tapt_bert": "TAPT on {scope} task text",
}
HISTORY_FILE = "training_history.json"


def code_fingerprint(name: str) -> str:
    """A hash of the code that builds ``name``: this file, the recipe table and the modules its builder
    runs, followed through their imports. Any edit to that code gives new keys, so a stale entry is never loaded."""
    modules = ("course_utils.recipes", *BUILDER_CODE[name])
    return fingerprint(source_files(__name__, follow_imports=False) | source_files(*modules))


def world_fingerprint() -> str:
    """A hash of the domain world's definitions (``data/*.yaml``).

    The corpora are generated from these files, so an edited lexicon or template must give new
    cache keys for everything trained on them, even though the profile and seed are unchanged.
    """
    folder = data_dir()
    return fingerprint((path.name for path in folder.glob("*.yaml")), folder)


def _recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"No recipe called {name!r}; the course caches {sorted(RECIPES)}.")
    return RECIPES[name]


def _domain(recipe: Recipe, scope: str) -> str:
    """The domain an entry's scope belongs to: a task's domain for task-built entries, else the scope itself."""
    return task_domain(scope) if recipe.texts.startswith("task:") else scope


def cache_config(name: str, profile: str | Profile, seed: int = 0, scope: str = "clinical") -> dict[str, Any]:
    """Everything entry ``name``'s builder reads (its cache key): the recipe, the profile fields it
    declares, the seed, the scope where it has one, the parent's key, and the code's fingerprint."""
    recipe, p = _recipe(name), get_profile(profile)
    config: dict[str, Any] = {
        "code": code_fingerprint(name),
        "world": world_fingerprint(),
        "recipe": recipe.to_key(),
        "profile": {field: getattr(p, field) for field in recipe.profile_fields},
        "seed": seed,
    }
    if "{scope}" in recipe.texts:
        config["scope"] = scope
    if recipe.parent is not None:
        config["parent"] = cache_config(recipe.parent, p, seed, _domain(recipe, scope))
    return config


def load_bert(folder: Path) -> BertForMaskedLM:
    """A saved ``BertForMaskedLM`` in eval mode (safetensors only, no remote code)."""
    return BertForMaskedLM.from_pretrained(str(folder), use_safetensors=True).eval()


def load_history(folder: Path) -> list[dict[str, Any]]:
    return json.loads((folder / HISTORY_FILE).read_text())


def load_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(str(folder))


def _save_bert(folder: Path, model: BertForMaskedLM, history: list[dict[str, Any]]) -> None:
    """Weights (config.json + model.safetensors) and the training history (JSON) of a trained BERT."""
    model.cpu().save_pretrained(str(folder))
    (folder / HISTORY_FILE).write_text(json.dumps(history))


def new_bert(profile: Profile, tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> BertForMaskedLM:
    """A freshly initialised ``BertForMaskedLM`` sized by the profile: the starting point of pretraining."""
    torch.manual_seed(seed)
    return BertForMaskedLM(make_bert_config(profile, len(tokenizer), pad_token_id=tokenizer.pad_token_id))


# ------------------------------------------------------------------------------------- builders
# Each writes one entry into ``folder``. ``p`` is the profile as the recipe may read it, ``parent(name)``
# loads (or builds) another entry of the same profile, seed and domain, on the same device.

Parent = Callable[[str], Any]


def build_tokenizer(
    folder: Path, p: RecipeProfile, seed: int, scope: str, device: torch.device, parent: Parent
) -> None:
    """Train the course's WordPiece vocabulary on the training splits of all four domains, in equal shares."""
    texts = [text for domain in TOKENIZER_DOMAINS for text in corpus_texts(domain, p, seed)]
    train_wordpiece(texts, p.vocab_size, model_max_length=p.max_seq_len).save_pretrained(str(folder))


def build_general_bert(
    folder: Path, p: RecipeProfile, seed: int, scope: str, device: torch.device, parent: Parent, progress: bool = True
) -> None:
    """Pretrain a tiny BERT on the general corpus with ``train_mlm`` (notebook 06)."""
    recipe, tokenizer = RECIPES["general_bert"], parent("tokenizer")
    model = new_bert(p, tokenizer, seed)
    texts = corpus_texts("general", p, seed)
    max_length = model.config.max_position_embeddings
    read = occurring_token_ids(encode_texts(tokenizer, texts, max_length), len(tokenizer))  # what train_mlm reads
    steps = recipe.steps_for(p)
    valid = heldout_mlm_loss(
        tokenizer,
        corpus_texts("general", p, seed, split="validation")[:GENERAL_BERT_VALID_TEXTS],
        max_length=max_length,
        readable=read.clone(),
        salient_words=knowledge_words("general"),
        seed=seed,
    )
    history = train_mlm(
        model,
        tokenizer,
        texts,
        steps=steps,
        batch_size=p.pretrain_batch_size,
        lr=recipe.lr,
        warmup_ratio=recipe.warmup_ratio,
        salient_words=knowledge_words("general"),  # entity-aware masking (notebook 07 measures why)
        eval_every=max(1, steps // recipe.evaluations),
        eval_fn=valid,  # the loss on held-out general documents (notebook 06 plots it)
        device=device,
        seed=seed,
        progress=progress,
        desc="Pretraining the general BERT",
    )
    # The domain words it never read start as the average word, not as tiny random vectors (notebook 06).
    read[tokenizer.all_special_ids] = True
    average_unread_rows(model, read, seed=seed)
    _save_bert(folder, model, history)


def build_continued(
    recipe: Recipe,
    folder: Path,
    p: RecipeProfile,
    seed: int,
    scope: str,
    device: torch.device,
    parent: Parent,
    progress: bool = True,
) -> None:
    """Continue the general BERT on ``recipe``'s texts (DAPT, replay, TAPT) with ``continue_pretraining``, the
    function notebook 07 runs inline; save weights, tokenizer and the history with its evaluations."""
    tokenizer, model = parent("tokenizer"), parent("general_bert")
    domain = _domain(recipe, scope)
    texts = task_texts(scope, p, seed) if recipe.texts.startswith("task:") else corpus_texts(scope, p, seed)
    history = continue_pretraining(
        model,
        tokenizer,
        texts,
        p,
        seed,
        mix_texts=corpus_texts("general", p, seed) if recipe.replay_ratio > 0 else None,
        mix_ratio=recipe.replay_ratio,
        salient_words=knowledge_words(domain) if recipe.salient_masking else None,
        eval_fn=pppl_eval_fn(tokenizer, evaluation_texts(p, seed, domain)),
        steps=recipe.steps_for(p),
        device=device,
        progress=progress,
        desc=PROGRESS[recipe.name].format(scope=scope),
    )
    _save_bert(folder, model, history)
    tokenizer.save_pretrained(str(folder))  # the same vocabulary, so the entry stands on its own


def build_classifier(
    recipe: Recipe,
    folder: Path,
    p: RecipeProfile,
    seed: int,
    scope: str,
    device: torch.device,
    parent: Parent,
    progress: bool = True,
) -> None:
    """Fine-tune ``recipe.parent`` (random weights when it is the tokenizer) on every labeled note of task
    ``scope`` with ``recipe.strategy``: the teacher (notebook 08's full fine-tuning run) and the classifiers of 12–15."""
    tokenizer = parent("tokenizer")
    data = load_task(scope, p, seed)
    train = encode_split(tokenizer, data["train"]["text"], data["train"]["label"], p.max_seq_len)
    if recipe.counterexamples:  # as many as there are labeled notes, from training entities only
        extra = counterexamples(scope, p.task_train, seed)
        train = EncodedSplit.concat(train, encode_split(tokenizer, extra["text"], extra["label"], p.max_seq_len))
    names = data["train"].features["label"].names
    source = new_bert(p, tokenizer, seed) if recipe.parent == "tokenizer" else parent(recipe.parent)
    model = apply_strategy(classifier_from(source, len(names), pooling=recipe.pooling, seed=seed), recipe.strategy)
    model.to(device)  # the probe's features are computed where the model will train
    if recipe.warm_start_head:
        warm_start_head(model, train, seed=seed)  # LP-FT, as every run from a pretrained encoder in notebook 08
    train_classifier(
        model,
        train,
        lr=recipe.lr,
        epochs=recipe.epoch_factor * p.finetune_epochs if recipe.epochs is None else recipe.epochs,
        batch_size=p.batch_size,
        min_steps=recipe.min_steps,
        warmup_ratio=recipe.warmup_ratio,
        seed=seed,
        device=device,
        progress=progress,
        desc=f"Fine-tuning {DESCRIBE[recipe.name].format(scope=scope).removeprefix('the ')}",
    )
    save_classifier(model.cpu(), folder, names)
    tokenizer.save_pretrained(str(folder))


def build_student(
    recipe: Recipe,
    folder: Path,
    p: RecipeProfile,
    seed: int,
    scope: str,
    device: torch.device,
    parent: Parent,
    progress: bool = True,
) -> None:
    """Distil the teacher into a narrower student on the labeled notes plus teacher-labeled corpus texts (11)."""
    tokenizer, teacher = parent("tokenizer"), parent("teacher")
    data = load_task(scope, p, seed)
    names = data["train"].features["label"].names
    extra = round(recipe.unlabeled_share * p.task_train)
    corpus = corpus_texts(task_domain(scope), p, seed)
    random.Random(seed).shuffle(corpus)
    transfer_set = EncodedSplit.concat(
        encode_split(tokenizer, data["train"]["text"], data["train"]["label"], p.max_seq_len),
        # Every corpus text gets hard label 0, which the loss's cross-entropy half does read: kept as notebook
        # 12's inline run had it, so its numbers stand. Notebook 11 labels them with the teacher's top prediction.
        encode_split(tokenizer, corpus[:extra], [0] * extra, p.max_seq_len),
    )
    width = int(p.hidden_size * recipe.width_share)
    student = random_student(
        student_config(teacher.config, hidden_size=width, num_layers=p.num_layers), len(names), seed=seed
    )
    distill(
        student,
        transfer_set,
        predict_logits(teacher, transfer_set),
        lr=recipe.lr,
        epochs=recipe.epochs,
        min_steps=recipe.min_steps,
        warmup_ratio=recipe.warmup_ratio,
        batch_size=p.batch_size,
        seed=seed,
        device=device,
        progress=progress,
        desc=f"Distilling the {scope} student",
    )
    save_classifier(student.cpu(), folder, names)
    tokenizer.save_pretrained(str(folder))


def load_strategy_classifier(folder: Path, strategy: str | None) -> SequenceClassifier:
    """A saved classifier; one whose strategy added modules (LoRA, adapters) is rebuilt with them first."""
    adds_modules = strategy in ("lora", "adapter")
    return load_classifier(folder, (lambda model: apply_strategy(model, strategy)) if adds_modules else None)


def _builder(name: str) -> Callable[..., None]:
    recipe = RECIPES[name]
    if name in ("tokenizer", "general_bert"):
        return {"tokenizer": build_tokenizer, "general_bert": build_general_bert}[name]
    if name == "student":
        return lambda *args, **kwargs: build_student(recipe, *args, **kwargs)
    if recipe.strategy is not None:
        return lambda *args, **kwargs: build_classifier(recipe, *args, **kwargs)
    return lambda *args, **kwargs: build_continued(recipe, *args, **kwargs)


def _loader(name: str, history: bool) -> Callable[[Path], Any]:
    recipe = RECIPES[name]
    if history:
        return load_history
    if name == "tokenizer":
        return load_tokenizer
    if recipe.strategy is not None or name == "student":
        return lambda folder: load_strategy_classifier(folder, recipe.strategy)
    return load_bert


def get(
    name: str,
    profile: str | Profile = "auto",
    seed: int = 0,
    scope: str = "clinical",
    *,
    device: str | torch.device | None = None,
    verbose: bool = True,
    history: bool = False,
) -> Any:
    """Cached entry ``name`` (see ``RECIPES``) for ``profile``, ``seed`` and ``scope`` (a domain, or a task
    for TAPT and the teacher), built on ``device`` (default: the one ``setup()`` chose) if not cached.
    With ``history=True``, the training history saved beside a BERT instead of the model."""
    recipe, p = _recipe(name), get_profile(profile)
    chosen = torch.device(device) if device is not None else course_device()
    if history and (name == "tokenizer" or recipe.pooling is not None):
        raise ValueError(f"The {name} entry keeps no training history.")

    def parent(other: str) -> Any:
        return get(other, p, seed, _domain(recipe, scope), device=chosen, verbose=verbose or history)

    def build(folder: Path) -> None:
        options = {} if name == "tokenizer" else {"progress": verbose or history}
        _builder(name)(folder, restricted(p, recipe), seed, scope, chosen, parent, **options)

    label = DESCRIBE[name].format(scope=scope)
    return get_or_build(
        name,
        build,
        _loader(name, history),
        config=cache_config(name, p, seed, scope),
        describe=f"{label} ({p.name} profile, seed {seed})",
        verbose=verbose and not history,
        device=chosen,
    )


def get_tokenizer(profile: str | Profile, seed: int = 0, *, verbose: bool = True) -> PreTrainedTokenizerFast:
    """The course tokenizer: BERT WordPiece trained on general, clinical, finance and legal text (notebook 05)."""
    return get("tokenizer", profile, seed, verbose=verbose)


def get_general_bert(profile: str | Profile, seed: int = 0, *, verbose: bool = True) -> BertForMaskedLM:
    """The general BERT: the course tokenizer plus ``profile.pretrain_steps`` MLM steps on general text (notebook 06)."""
    return get("general_bert", profile, seed, verbose=verbose)


def get_general_bert_history(profile: str | Profile, seed: int = 0) -> list[dict[str, Any]]:
    """The general BERT's training history (one record per step), saved with it when it was built."""
    return get("general_bert", profile, seed, history=True)


def get_dapt_bert(
    profile: str | Profile, seed: int = 0, domain: str = "clinical", *, verbose: bool = True
) -> BertForMaskedLM:
    """The general BERT after ``profile.dapt_steps`` more MLM steps on ``domain``'s corpus (notebook 07)."""
    return get("dapt_bert", profile, seed, domain, verbose=verbose)


def get_dapt_bert_history(profile: str | Profile, seed: int = 0, domain: str = "clinical") -> list[dict[str, Any]]:
    """The DAPT run's history (one record per step, pseudo-perplexities at the evaluated steps)."""
    return get("dapt_bert", profile, seed, domain, history=True)


def get_replay_bert(
    profile: str | Profile, seed: int = 0, domain: str = "clinical", *, verbose: bool = True
) -> BertForMaskedLM:
    """DAPT with ``REPLAY_RATIO`` of general text in every batch, which forgets less general text (07)."""
    return get("replay_bert", profile, seed, domain, verbose=verbose)


def get_replay_bert_history(profile: str | Profile, seed: int = 0, domain: str = "clinical") -> list[dict[str, Any]]:
    """The replay run's history (one record per step, pseudo-perplexities at the evaluated steps)."""
    return get("replay_bert", profile, seed, domain, history=True)


def get_tapt_bert(
    profile: str | Profile, seed: int = 0, task: str = "clinical", *, verbose: bool = True
) -> BertForMaskedLM:
    """The general BERT after a quarter of DAPT's steps on the task's unlabeled training texts (07)."""
    return get("tapt_bert", profile, seed, task, verbose=verbose)


def get_tapt_bert_history(profile: str | Profile, seed: int = 0, task: str = "clinical") -> list[dict[str, Any]]:
    """The TAPT run's history (one record per step, pseudo-perplexities at the evaluated steps)."""
    return get("tapt_bert", profile, seed, task, history=True)


def get_teacher(
    profile: str | Profile, seed: int = 0, task: str = "clinical", *, verbose: bool = True
) -> SequenceClassifier:
    """The DAPT BERT fully fine-tuned on every labeled note of ``task`` (notebook 08's full fine-tuning row), in eval mode (11–15)."""
    return get("teacher", profile, seed, task, verbose=verbose)


def get_classifier(
    start: str, profile: str | Profile, seed: int = 0, task: str = "clinical", *, verbose: bool = True
) -> SequenceClassifier:
    """A classifier of the evaluation notebooks (12–15): ``start`` is ``random``, ``general``, ``dapt_head_only``,
    ``dapt_lora`` or ``dapt_counterexamples``."""
    return get(f"classifier_{start}", profile, seed, task, verbose=verbose)


def get_student(
    profile: str | Profile, seed: int = 0, task: str = "clinical", *, verbose: bool = True
) -> SequenceClassifier:
    """The teacher distilled into a student a quarter of its width, with teacher-labeled corpus text (11–15)."""
    return get("student", profile, seed, task, verbose=verbose)
