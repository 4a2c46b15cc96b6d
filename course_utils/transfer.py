"""The transfer benchmark: does pretraining pay off when a classifier is fine-tuned on the clinical task?

For each starting point (random init, the general BERT, the DAPT and TAPT BERTs), each head
(full fine-tuning, a linear probe on the frozen encoder, and on request the other strategies of
``course_utils.strategies``: LoRA, adapters, BitFit, top-k layers, head only), each labeled-set size and each seed, it
keeps the run that is best on ``validation`` and scores it on ``test``, ``unseen_entities`` and
``negation``. Full fine-tuning runs once per learning rate of a small grid and per way of
starting the head (at random, or from a linear probe: LP-FT), so every starting point gets its
own tuned recipe; the probe is a logistic regression on the frozen
encoder's mean-pooled hidden states (every layer's by default), its regularisation tuned the same way. The numbers decide the course's design, so they come from
this one function that anyone can rerun::

    python -m course_utils.transfer --profile fast --seeds 0 1 2 --out build/transfer.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from tqdm.auto import tqdm

from course_utils import artifacts
from course_utils.classifier import (
    classifier_from,
    encode_split,
    labeled_subset,
    predict_logits,
    trainable_parameters,
)
from course_utils.data import load_task
from course_utils.env import course_device
from course_utils.finetuning import train_classifier
from course_utils.linear_probe import PROBE_LAYERS, fit_linear_probe, frozen_features, warm_start_head
from course_utils.profiles import Profile, get_profile
from course_utils.strategies import STRATEGIES, apply_strategy

INITS = ("random", "general", "dapt", "tapt")
#: How the classifier trains: ``full`` fine-tuning and a ``linear_probe`` by default; the other
#: strategies of ``course_utils.strategies`` (``--heads lora bitfit ...``) on request.
HEADS = ("full", "linear_probe")
ALL_HEADS = ("full", "linear_probe", *(s for s in STRATEGIES if s != "full"))
SPLITS = ("test", "unseen_entities", "negation")
#: Labeled notes per class in the low-resource runs (``None`` means the whole training split).
LABELED_PER_CLASS: tuple[int | None, ...] = (20, None)
#: The learning rates full fine-tuning chooses from on validation, the same grid for every starting
#: point (a random encoder often wants larger steps than a pretrained one).
LEARNING_RATES = (3e-4, 1e-3, 3e-3)
#: Strategies that train few parameters take larger steps (LoRA and adapters are usually tuned at 1e-3 or more).
PEFT_LEARNING_RATES = (1e-3, 3e-3, 1e-2)
#: How the new head starts: at random, or fitted as a linear probe first (LP-FT). Both are tried
#: and validation picks, so a random encoder is not handicapped by a probe on random features.
WARM_STARTS = (False, True)
#: Fewest optimiser steps of any run, so that 20 notes per class are fitted at all.
MIN_STEPS = 150
POOLING = "mean"


def _encoder_source(init: str, profile: Profile, seed: int) -> Any:
    if init == "random":
        return artifacts.get_general_bert(profile, seed, verbose=False).config
    getters = {"general": artifacts.get_general_bert, "dapt": artifacts.get_dapt_bert, "tapt": artifacts.get_tapt_bert}
    if init not in getters:
        raise ValueError(f"Unknown init {init!r}; choose from {INITS}.")
    return getters[init](profile, seed, verbose=False)


def _scores(labels: Sequence[int], predicted: Sequence[int]) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
    }


def _fine_tune(
    source: Any,
    split: dict[str, Any],
    train: Any,
    num_labels: int,
    p: Profile,
    seed: int,
    device: Any,
    strategy: str = "full",
) -> tuple[dict[str, list[int]], dict[str, Any], float]:
    """Fine-tuning with ``strategy`` at each learning rate, with the head started at random or from a
    linear probe (``warm_start_head``); the run best on validation predicts every split."""
    best: tuple[float, tuple[float, bool], Any, float] | None = None
    grid = [
        (lr, warm) for lr in (LEARNING_RATES if strategy == "full" else PEFT_LEARNING_RATES) for warm in WARM_STARTS
    ]
    for lr, warm in grid:
        start = time.perf_counter()
        model = apply_strategy(classifier_from(source, num_labels, pooling=POOLING, seed=seed), strategy).to(device)
        if warm:
            warm_start_head(model, train, seed=seed)
        train_classifier(
            model,
            train,
            lr=lr,
            epochs=p.finetune_epochs,
            batch_size=p.batch_size,
            min_steps=MIN_STEPS,
            seed=seed,
            device=device,
            progress=False,
        )
        seconds = time.perf_counter() - start
        valid = _scores(split["validation"].labels.tolist(), predict_logits(model, split["validation"]).argmax(-1))
        if best is None or valid["accuracy"] > best[0]:
            best = (valid["accuracy"], (lr, warm), model, seconds)
    assert best is not None
    _, (lr, warm), model, seconds = best
    predicted = {name: predict_logits(model, split[name]).argmax(-1).tolist() for name in SPLITS}
    trainable, total = trainable_parameters(model)
    return predicted, {"lr": lr, "warm_start": warm, "trainable": trainable, "parameters": total}, seconds


def _probe(
    features: dict[str, np.ndarray], split: dict[str, Any], chosen: list[int], seed: int
) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """A logistic regression on the ``chosen`` training rows' frozen features, its ``C`` chosen on validation."""
    probe, c = fit_linear_probe(
        features["train"][chosen],
        split["train"].labels[chosen].tolist(),
        features["validation"],
        split["validation"].labels.tolist(),
        seed=seed,
    )
    return {name: probe.predict(features[name]).tolist() for name in SPLITS}, {"C": c}


def run_benchmark(
    profile: str | Profile = "fast",
    seeds: Sequence[int] = (0, 1, 2),
    *,
    inits: Sequence[str] = INITS,
    heads: Sequence[str] = HEADS,
    labeled_per_class: Sequence[int | None] = LABELED_PER_CLASS,
    task: str = "clinical",
    probe_layers: str = "all",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Every (init, head, labeled_per_class, seed) run, one row per evaluated split (see the module docstring)."""
    unknown = sorted(set(heads) - set(ALL_HEADS))
    if unknown:
        raise ValueError(f"Unknown head {unknown}; choose from {ALL_HEADS}.")
    p = get_profile(profile)
    device = course_device()
    rows: list[dict[str, Any]] = []
    jobs = [(seed, init, head, n) for seed in seeds for init in inits for head in heads for n in labeled_per_class]
    bar = tqdm(jobs, desc="Transfer benchmark", disable=not progress)
    encoded: dict[int, tuple[Any, dict[str, Any]]] = {}  # seed -> (dataset, encoded splits): tokenise once
    features: dict[tuple[int, str], tuple[dict[str, np.ndarray], float]] = {}  # latest (seed, init): features, seconds
    for seed, init, head, n in bar:
        bar.set_postfix_str(f"seed {seed} {init} {head} {n or 'all'}")
        if seed not in encoded:
            tokenizer = artifacts.get_tokenizer(p, seed, verbose=False)
            dataset = load_task(task, p, seed)
            encoded[seed] = (
                dataset,
                {
                    name: encode_split(tokenizer, dataset[name]["text"], dataset[name]["label"], p.max_seq_len)
                    for name in ("train", "validation", *SPLITS)
                },
            )
        dataset, split = encoded[seed]
        chosen = labeled_subset(split["train"].labels.tolist(), n, seed)
        source = _encoder_source(init, p, seed)
        num_labels = dataset["train"].features["label"].num_classes
        if head == "linear_probe":
            if (seed, init) not in features:  # a frozen encoder's features serve every labeled-set size
                start = time.perf_counter()
                encoder = classifier_from(source, num_labels, pooling=POOLING, seed=seed).encoder
                computed = {k: frozen_features(encoder, v, layers=probe_layers) for k, v in split.items()}
                features = {(seed, init): (computed, time.perf_counter() - start)}
            computed, extraction_seconds = features[seed, init]
            start = time.perf_counter()
            predicted, setting = _probe(computed, split, chosen, seed)
            setting["probe_layers"] = probe_layers
            seconds = extraction_seconds + time.perf_counter() - start  # as if each run extracted its own
        else:
            train = split["train"].subset(chosen)
            predicted, setting, seconds = _fine_tune(source, split, train, num_labels, p, seed, device, head)
        for name in SPLITS:
            rows.append(
                {
                    "init": init,
                    "head": head,
                    "labeled_per_class": n,
                    "split": name,
                    "seed": seed,
                    **_scores(split[name].labels.tolist(), predicted[name]),
                    **setting,
                    "seconds": round(seconds, 2),
                }
            )
    return rows


def summarise(rows: Sequence[dict[str, Any]], metric: str = "accuracy") -> list[dict[str, Any]]:
    """Mean and spread (standard deviation over seeds; 0 for one seed) of ``metric`` per init, head, size, split."""
    groups: dict[tuple[Any, ...], list[float]] = {}
    for row in rows:
        key = (row["init"], row["head"], row["labeled_per_class"], row["split"])
        groups.setdefault(key, []).append(row[metric])
    return [
        {
            "init": init,
            "head": head,
            "labeled_per_class": n,
            "split": split,
            "mean": statistics.fmean(values),
            "spread": statistics.stdev(values) if len(values) > 1 else 0.0,
            "seeds": len(values),
        }
        for (init, head, n, split), values in groups.items()
    ]


def format_table(rows: Sequence[dict[str, Any]], metric: str = "accuracy") -> str:
    """A plain-text table: one line per init, head and size, one column per split, ``mean ± spread``."""
    summary = summarise(rows, metric)
    splits = [s for s in SPLITS if any(r["split"] == s for r in summary)]
    cells = {(r["init"], r["head"], r["labeled_per_class"], r["split"]): r for r in summary}
    lines = [f"{'init':8s} {'head':13s} {'labeled':>8s}  " + "  ".join(f"{s:>16s}" for s in splits)]
    for init, head, n in dict.fromkeys((r["init"], r["head"], r["labeled_per_class"]) for r in summary):
        values = [cells.get((init, head, n, s)) for s in splits]
        text = [f"{v['mean']:.3f} ± {v['spread']:.3f}" if v else "" for v in values]
        lines.append(
            f"{init:8s} {head:13s} {('all' if n is None else f'{n}/class'):>8s}  "
            + "  ".join(f"{t:>16s}" for t in text)
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="fast")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--inits", nargs="+", default=list(INITS), choices=INITS)
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=ALL_HEADS)
    parser.add_argument("--probe-layers", default="all", choices=PROBE_LAYERS)
    parser.add_argument("--out", type=Path, default=Path("build/transfer.json"))
    args = parser.parse_args(argv)
    rows = run_benchmark(args.profile, args.seeds, inits=args.inits, heads=args.heads, probe_layers=args.probe_layers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print(format_table(rows))
    print(f"{len(rows)} rows written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
