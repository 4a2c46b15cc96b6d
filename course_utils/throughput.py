"""MLM training throughput: the course's training core against Hugging Face's ``Trainer``, same model and data.

Both train a fresh BERT of the profile's size on the general corpus with 15% masking, AdamW,
linear warm-up and decay and the same batch size, for the same number of steps; the course loop
runs the prediction head only on the masked positions, the ``Trainer`` (with
``DataCollatorForLanguageModeling``) on every position. It reports optimiser steps per second and
non-padding tokens per second of each::

    python -m course_utils.throughput --profile fast --steps 200
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import torch
from transformers import DataCollatorForLanguageModeling, PrinterCallback, Trainer, TrainingArguments

from course_utils.artifacts import get_tokenizer, new_bert
from course_utils.data import corpus_texts
from course_utils.env import course_device
from course_utils.mlm import encode_texts, train_mlm
from course_utils.profiles import Profile, get_profile


class _Texts(torch.utils.data.Dataset):
    """Token ids of each text, as the dicts ``DataCollatorForLanguageModeling`` pads and masks."""

    def __init__(self, ids: list[list[int]]):
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.ids[i]}


def compare(profile: str | Profile = "fast", steps: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """One row per loop: steps, seconds, steps per second, non-padding tokens per second."""
    p = get_profile(profile)
    device = course_device()
    tokenizer = get_tokenizer(p, seed, verbose=False)
    texts = corpus_texts("general", p, seed)
    batch_size = p.pretrain_batch_size
    rows = []

    model = new_bert(p, tokenizer, seed)
    history = train_mlm(model, tokenizer, texts, steps=steps, batch_size=batch_size, lr=1e-3, seed=seed,
                        restrict_softmax=False, device=device, progress=False)  # fmt: skip
    seconds = history[-1]["seconds"]
    rows.append({"loop": "course core (train_mlm)", "steps": steps, "seconds": seconds,
                 "steps_per_s": steps / seconds, "tokens_per_s": history[-1]["tokens"] / seconds})  # fmt: skip

    ids = encode_texts(tokenizer, texts, p.max_seq_len)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(), max_steps=steps, per_device_train_batch_size=batch_size,
        learning_rate=1e-3, warmup_steps=0.1, lr_scheduler_type="linear", weight_decay=0.01,
        save_strategy="no", report_to="none", disable_tqdm=True, seed=seed, use_cpu=device.type == "cpu",
        dataloader_num_workers=0, logging_strategy="no",
    )  # fmt: skip
    trainer = Trainer(model=new_bert(p, tokenizer, seed), args=args, train_dataset=_Texts(ids), data_collator=collator)
    trainer.remove_callback(PrinterCallback)
    tokens = 0
    original = trainer.training_step

    def counting_step(model: Any, inputs: dict[str, torch.Tensor], *rest: Any) -> torch.Tensor:
        nonlocal tokens
        tokens += int(inputs["attention_mask"].sum())
        return original(model, inputs, *rest)

    trainer.training_step = counting_step  # type: ignore[method-assign]
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    rows.append({"loop": "transformers Trainer + DataCollatorForLanguageModeling", "steps": steps,
                 "seconds": seconds, "steps_per_s": steps / seconds, "tokens_per_s": tokens / seconds})  # fmt: skip
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="fast")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"{'loop':55s} {'steps':>6s} {'seconds':>8s} {'steps/s':>8s} {'tokens/s':>9s}  ({course_device().type})")
    for row in compare(args.profile, args.steps, args.seed):
        print(
            f"{row['loop']:55s} {row['steps']:6d} {row['seconds']:8.1f} {row['steps_per_s']:8.2f} {row['tokens_per_s']:9,.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
