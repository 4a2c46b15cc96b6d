"""The course's teacher: the best clinical classifier of notebook 07, cached for notebooks 08 and 09.

    DAPT BERT (06) ──► teacher: full fine-tuning on every labeled note (07's best row)

Notebook 07's table shows full fine-tuning from the DAPT BERT as the most accurate classifier on
``test`` and on ``unseen_entities``. ``get_teacher`` trains exactly that run, with the same
head warm start (``warm_start_head``), ``train_classifier`` call and settings, and caches it like every other artifact: its key holds the
DAPT BERT's key, the profile fields and seed it reads, and a fingerprint of this code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from course_utils import artifacts
from course_utils.cache import fingerprint, get_or_build, source_files
from course_utils.data import load_task, task_domain
from course_utils.env import course_device
from course_utils.finetuning import (
    SequenceClassifier,
    classifier_from,
    encode_split,
    load_classifier,
    save_classifier,
    train_classifier,
    warm_start_head,
)
from course_utils.profiles import Profile, get_profile

#: The teacher's recipe: notebook 07's full fine-tuning of the DAPT BERT.
TEACHER_LR = 1e-3
TEACHER_MIN_STEPS = 150
TEACHER_POOLING = "mean"
TEACHER_CODE = ("course_utils.teacher", "course_utils.finetuning", "course_utils.data")


def teacher_config(profile: Profile, seed: int = 0, task: str = "clinical") -> dict[str, Any]:
    """Everything the teacher's builder reads (its cache key), the DAPT BERT's key included."""
    return {
        "code": fingerprint(source_files(*TEACHER_CODE)),
        "dapt_bert": artifacts.dapt_bert_config(profile, seed, task_domain(task)),
        "task": task,
        "task_train": profile.task_train,
        "task_eval": profile.task_eval,
        "max_seq_len": profile.max_seq_len,
        "batch_size": profile.batch_size,
        "epochs": profile.finetune_epochs,
        "lr": TEACHER_LR,
        "min_steps": TEACHER_MIN_STEPS,
        "pooling": TEACHER_POOLING,
        "seed": seed,
    }


def build_teacher(
    folder: Path, profile: Profile, seed: int = 0, task: str = "clinical", *, progress: bool = True
) -> None:
    """Fine-tune the DAPT BERT on all of ``task``'s training notes; save the classifier and tokenizer."""
    tokenizer = artifacts.get_tokenizer(profile, seed, verbose=progress)
    dapt = artifacts.get_dapt_bert(profile, seed, task_domain(task), verbose=progress)
    data = load_task(task, profile, seed)
    train = encode_split(tokenizer, data["train"]["text"], data["train"]["label"], profile.max_seq_len)
    names = data["train"].features["label"].names
    model = classifier_from(dapt, len(names), pooling=TEACHER_POOLING, seed=seed)
    warm_start_head(model, train, seed=seed)  # LP-FT, as every run from a pretrained encoder in notebook 07
    train_classifier(
        model,
        train,
        lr=TEACHER_LR,
        epochs=profile.finetune_epochs,
        batch_size=profile.batch_size,
        min_steps=TEACHER_MIN_STEPS,
        seed=seed,
        device=course_device(),
        progress=progress,
        desc=f"Fine-tuning the {task} teacher",
    )
    save_classifier(model.cpu(), folder, names)
    tokenizer.save_pretrained(str(folder))


def get_teacher(
    profile: str | Profile, seed: int = 0, task: str = "clinical", *, verbose: bool = True
) -> SequenceClassifier:
    """The DAPT BERT fully fine-tuned on every labeled note of ``task`` (notebook 07's best), in eval mode."""
    p = get_profile(profile)
    return get_or_build(
        "teacher",
        lambda folder: build_teacher(folder, p, seed, task, progress=verbose),
        load_classifier,
        config=teacher_config(p, seed, task),
        describe=f"the {task} teacher ({p.name} profile, seed {seed})",
        verbose=verbose,
    )
