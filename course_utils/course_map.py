"""The course map: every notebook, what it teaches, and which cached artifacts it builds or reads.

Notebook 00 and the README show this table; a test checks that it lists every notebook.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chapter:
    notebook: str  # file name in notebooks/
    title: str
    teaches: str
    builds: tuple[str, ...] = ()  # artifact-cache entries this notebook creates
    needs: tuple[str, ...] = ()  # entries it loads (or builds on demand with the same code)


COURSE_MAP: tuple[Chapter, ...] = (
    Chapter(
        "00_setup_and_course_map.ipynb",
        "Setup and course map",
        "environment check, profiles, the artifact cache, the domain world",
    ),
    Chapter(
        "01_ngram_language_models.ipynb",
        "N-gram language models",
        "counting, smoothing, Kneser-Ney, perplexity vs the entropy floor, domain shift",
    ),
    Chapter(
        "02_attention_from_scratch.ipynb",
        "Attention from scratch",
        "scaled dot-product and multi-head attention, masks, why √d_k, cost",
    ),
    Chapter(
        "03_transformer_encoder.ipynb",
        "The Transformer encoder",
        "embeddings, layer norm, FFN, residuals; matching Hugging Face's BertLayer",
    ),
    Chapter(
        "04_domain_data.ipynb",
        "Domain data",
        "cleaning with datasets, exact and near-duplicate removal (MinHash, LSH), splits without leaks",
    ),
    Chapter(
        "05_tokenization.ipynb",
        "Tokenization",
        "WordPiece, how a general vocabulary fragments domain terms, the course tokenizer, adding tokens",
        builds=("tokenizer",),
    ),
    Chapter(
        "06_bert_masked_lm_pretraining.ipynb",
        "BERT masked-LM pretraining",
        "80/10/10 masking, pretraining a tiny BERT, pseudo-perplexity",
        builds=("general_bert",),
        needs=("tokenizer",),
    ),
    Chapter(
        "07_domain_adaptive_pretraining.ipynb",
        "Domain-adaptive pretraining",
        "DAPT and TAPT, forgetting and replay",
        builds=("dapt_bert", "replay_bert", "tapt_bert"),
        needs=("general_bert",),
    ),
    Chapter(
        "08_finetuning_full_partial_adapters.ipynb",
        "Fine-tuning: full, partial, adapters",
        "full, head-only, top-k, BitFit, adapters, LoRA in one table; LP-FT; saving only what trained",
        needs=("general_bert", "dapt_bert"),
    ),
    Chapter(
        "09_training_craft.ipynb",
        "The craft of training",
        "the Trainer, early stopping and overfitting, dropout, optimisers and learning rates",
        needs=("dapt_bert",),
    ),
    Chapter(
        "10_prompting.ipynb",
        "Prompting",
        "cloze prompts and verbalisers, zero-shot classification, prompt-based fine-tuning (PET)",
        needs=("dapt_bert",),
    ),
    Chapter(
        "11_knowledge_distillation.ipynb",
        "Knowledge distillation",
        "soft targets, temperature, T² scaling, student size vs speed vs accuracy",
        builds=("teacher",),
        needs=("dapt_bert",),
    ),
    Chapter(
        "12_metrics_and_uncertainty.ipynb",
        "Metrics and uncertainty",
        "P/R/F1 and the confusion matrix under imbalance, bootstrap intervals, seeds, paired tests",
        builds=(
            "classifier_random",
            "classifier_general",
            "classifier_dapt_head_only",
            "classifier_dapt_lora",
            "student",
        ),  # fmt: skip
        needs=("general_bert", "dapt_bert", "teacher"),
    ),
    Chapter(
        "13_calibration.ipynb",
        "Calibration",
        "reliability diagrams, expected calibration error, temperature scaling",
        needs=(
            "classifier_random",
            "classifier_general",
            "classifier_dapt_head_only",
            "classifier_dapt_lora",
            "teacher",
            "student",
        ),  # fmt: skip
    ),
    Chapter(
        "14_robustness.ipynb",
        "Robustness",
        "challenge sets, counterexamples, the cross-domain matrix, language models per domain",
        builds=("classifier_dapt_counterexamples",),
        needs=("general_bert", "dapt_bert", "replay_bert", "teacher", "student"),
    ),
    Chapter(
        "15_interpretability_and_report_card.ipynb",
        "Interpretability and the report card",
        "attention maps, input × gradient, confident mistakes against clean labels, the report card",
        needs=("teacher", "student", "classifier_dapt_counterexamples"),
    ),
)
