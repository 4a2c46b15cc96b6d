"""The course's GPU path, checked in a few minutes: ``make gpu-check`` (``python -m course_utils.gpu_check``).

Colab learners run the ``full`` profile on CUDA, a path the CPU machines of CI never take. This
runs each piece of it at tiny sizes on the GPU: the cached-model builders (tokenizer, general,
DAPT, replay, TAPT BERT and the teacher) in a temporary cache, one step of each builder at the
``full`` profile's real model sizes, every fine-tuning strategy applied to a model already on the
GPU (and in bf16), notebook 08's save-and-reload, notebook 11's distillation ``Trainer`` cell, and
prompt-based fine-tuning. Without CUDA it says so and exits 0; it is never part of ``make test``.
The same checks run on the CPU in the unit tests, so they cannot rot unnoticed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from transformers import BertConfig, BertForMaskedLM, PrinterCallback, TrainingArguments

from course_utils import artifacts
from course_utils.classifier import EncodedSplit, SequenceClassifier, classifier_from, predict_logits
from course_utils.distillation import DistillationTrainer, distillation_loss
from course_utils.finetuning import train_classifier
from course_utils.paths import ARTIFACTS_ENV
from course_utils.profiles import Profile, get_profile
from course_utils.prompting import prompt_fine_tune
from course_utils.strategies import STRATEGIES, apply_strategy, load_trainable, save_trainable
from course_utils.tokenization import train_wordpiece

#: Tiny sizes for the builders' run: enough text and steps to exercise every line, in seconds.
TINY_DATA = {"corpus_sentences": 2_000, "task_train": 300, "task_eval": 60, "dapt_eval_texts": 8}
TINY_STEPS = {"pretrain_steps": 20, "dapt_steps": 8, "finetune_epochs": 1}
#: One step of each builder (TAPT included) at a profile's real model sizes.
ONE_STEP = {"pretrain_steps": 1, "dapt_steps": 4, "finetune_epochs": 1}


@contextlib.contextmanager
def temporary_cache() -> Iterator[Path]:
    """Point the artifact cache at an empty temporary folder for the duration of the block."""
    before = os.environ.get(ARTIFACTS_ENV)
    with tempfile.TemporaryDirectory(prefix="course-gpu-check-") as folder:
        os.environ[ARTIFACTS_ENV] = folder
        try:
            yield Path(folder)
        finally:
            if before is None:
                os.environ.pop(ARTIFACTS_ENV, None)
            else:
                os.environ[ARTIFACTS_ENV] = before


def check_builders(profile: Profile, seed: int = 0) -> str:
    """Build every cached model of ``profile`` (``recipes.RECIPES``) in a temporary cache; each must load with finite weights."""
    with temporary_cache():
        built = {
            "general": artifacts.get_general_bert(profile, seed, verbose=False),
            "dapt": artifacts.get_dapt_bert(profile, seed, verbose=False),
            "replay": artifacts.get_replay_bert(profile, seed, verbose=False),
            "tapt": artifacts.get_tapt_bert(profile, seed, verbose=False),
            "teacher": artifacts.get_teacher(profile, seed, verbose=False),
            **{
                f"classifier ({start})": artifacts.get_classifier(start, profile, seed, verbose=False)
                for start in ("random", "general", "dapt_head_only", "dapt_lora")
            },
            "student": artifacts.get_student(profile, seed, verbose=False),
        }
    for name, model in built.items():
        bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise AssertionError(f"{name}: non-finite weights in {bad[:3]}")
    width = built["general"].config.hidden_size
    return f"built every cached model: {', '.join(built)} (width {width}, {profile.name} sizes)"


def _tiny_split(n: int = 48, seed: int = 0) -> EncodedSplit:
    """Random texts whose token at position 3 (5 or 6) is the label."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 60, (n, 8), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    ids[:, 3] = 5 + labels
    return EncodedSplit(ids, torch.ones_like(ids), labels)


def _tiny_classifier(seed: int = 0) -> SequenceClassifier:
    config = BertConfig(
        vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(seed)
    return classifier_from(BertForMaskedLM(config), 2, seed=seed)


def check_strategies(device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """Every strategy on a model already on ``device`` in ``dtype``: new weights land there, and it trains."""
    split = _tiny_split()
    for strategy in STRATEGIES:
        model = apply_strategy(_tiny_classifier().to(device, dtype), strategy)
        misplaced = [n for n, p in model.named_parameters() if p.device.type != device.type or p.dtype != dtype]
        if misplaced:
            raise AssertionError(f"{strategy}: weights not on {device}/{dtype}: {misplaced[:3]}")
        history = train_classifier(model, split, lr=1e-2, epochs=1, batch_size=16, min_steps=3, progress=False)
        if not all(torch.isfinite(torch.tensor(r["loss"])) for r in history):
            raise AssertionError(f"{strategy}: the loss is not finite in {dtype}")
    return f"every strategy applied and trained on {device.type} in {str(dtype).removeprefix('torch.')}"


def check_save_and_reload(device: torch.device) -> str:
    """Notebook 08: train LoRA on ``device``, keep it on the CPU, save what trained, reload it exactly."""
    split = _tiny_split()
    model = apply_strategy(_tiny_classifier().to(device), "lora")
    train_classifier(model, split, lr=1e-2, epochs=1, batch_size=16, min_steps=5, progress=False)
    kept = model.cpu()
    with tempfile.TemporaryDirectory() as folder:
        path = save_trainable(kept, Path(folder) / "lora.safetensors")
        fresh = load_trainable(apply_strategy(_tiny_classifier(), "lora"), path)
    if not torch.equal(predict_logits(fresh, split), predict_logits(kept, split)):
        raise AssertionError("the reloaded LoRA model does not predict what the trained one did")
    return "LoRA trained on the device, saved and reloaded exactly"


def check_distillation_trainer(device: torch.device) -> str:
    """Notebook 11: a ``DistillationTrainer``'s loss on a batch moved to its device equals the loss by hand."""
    split, teacher_model = _tiny_split(), _tiny_classifier(seed=1)
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(), max_steps=2, per_device_train_batch_size=8, report_to="none",
        use_cpu=device.type == "cpu", disable_tqdm=True, save_strategy="no",
    )  # fmt: skip
    rows = [
        {"input_ids": split.input_ids[i], "attention_mask": split.attention_mask[i], "labels": split.labels[i]}
        for i in range(16)
    ]
    trainer = DistillationTrainer(model=_tiny_classifier(), args=args, train_dataset=rows, teacher=teacher_model)
    trainer.remove_callback(PrinterCallback)
    batch = {key: torch.stack([row[key] for row in rows[:8]]).to(trainer.args.device) for key in rows[0]}
    trainer.model.eval()
    by_hand = distillation_loss(
        trainer.model(batch["input_ids"], batch["attention_mask"]).logits,
        teacher_model(batch["input_ids"], batch["attention_mask"]).logits,
        batch["labels"],
    )
    torch.testing.assert_close(trainer.compute_loss(trainer.model, dict(batch)), by_hand)
    trainer.train()
    return f"distillation Trainer on {trainer.args.device.type}: loss by hand agrees, two steps trained"


def check_pet(device: torch.device) -> str:
    """Prompt-based fine-tuning of a masked LM on ``device``: a few steps, finite losses."""
    texts = ["the lungs are wheezing", "the heart is racing", "a cough and wheezing", "chest pain and palpitations"] * 4
    tokenizer = train_wordpiece(texts * 4, vocab_size=200, model_max_length=24)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=24, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    mlm = BertForMaskedLM(config).to(device)
    history = prompt_fine_tune(
        mlm, tokenizer, texts, [0, 1, 0, 1] * 4, "it is [MASK] .", ["lungs", "heart"],
        max_length=24, lr=1e-3, steps=4, batch_size=4, progress=False,
    )  # fmt: skip
    if not all(torch.isfinite(torch.tensor(r["loss"])) for r in history):
        raise AssertionError("PET's loss is not finite")
    return f"PET trained on {device.type}"


def run_checks(device: torch.device, profiles: list[Profile]) -> list[tuple[str, float]]:
    """Every check on ``device``, then the builders at each of ``profiles``; (what it showed, seconds) each."""
    checks: list[Callable[[], str]] = [
        lambda: check_strategies(device),
        lambda: check_save_and_reload(device),
        lambda: check_distillation_trainer(device),
        lambda: check_pet(device),
    ]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        checks.insert(1, lambda: check_strategies(device, torch.bfloat16))
    checks += [lambda p=p: check_builders(p) for p in profiles]
    results = []
    for check in checks:
        start = time.perf_counter()
        line = check()
        results.append((line, time.perf_counter() - start))
        print(f"ok  {results[-1][1]:6.1f} s  {line}", flush=True)
    return results


def main() -> int:
    if not torch.cuda.is_available():
        print(
            "No CUDA device here: the GPU check needs one (Colab with a GPU runtime, or a GPU machine). Nothing was run."
        )
        return 0
    from course_utils.env import setup

    setup("full", 0, verbose=True)
    print(f"GPU: {torch.cuda.get_device_name(0)}")
    profiles = [get_profile("fast", **TINY_DATA, **TINY_STEPS), get_profile("full", **TINY_DATA, **ONE_STEP)]
    start = time.perf_counter()
    run_checks(torch.device("cuda"), profiles)
    print(f"The GPU path works: every check passed in {time.perf_counter() - start:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
