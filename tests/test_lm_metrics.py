"""Pseudo-perplexity and masked-token accuracy (course_utils.lm_metrics)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import BertForMaskedLM

from course_utils.lm_metrics import (
    evaluating,
    masked_token_accuracy,
    most_frequent_token,
    pseudo_log_likelihoods,
    pseudo_perplexity,
    unigram_baseline_accuracy,
)
from course_utils.mlm import make_bert_config
from course_utils.profiles import get_profile
from course_utils.tokenization import train_wordpiece

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = [
    "the patient reports wheezing and chest tightness.",
    "bravinolol was started at 10 mg once daily.",
    "asthma is managed by pulmonology.",
    "the teacher slept this morning in the garden.",
    "a student sold the kettle at the market.",
] * 6


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece(TEXTS, vocab_size=200, model_max_length=32)


class Constant(nn.Module):
    """A stand-in MLM whose prediction ignores its input: logits ``bonus`` for one token, 0 for the rest."""

    def __init__(self, vocab_size: int, token: int | None = None, bonus: float = 30.0) -> None:
        super().__init__()
        self.config = SimpleNamespace(max_position_embeddings=32)
        self.dummy = nn.Parameter(torch.zeros(1))
        self.vocab_size, self.token, self.bonus = vocab_size, token, bonus

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, self.vocab_size)
        if self.token is not None:
            logits[..., self.token] = self.bonus
        return SimpleNamespace(logits=logits)


def test_matches_a_slow_reference_loop(tokenizer):
    profile = get_profile("fast", hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_seq_len=32)
    torch.manual_seed(0)
    model = BertForMaskedLM(make_bert_config(profile, len(tokenizer))).eval()
    texts = TEXTS[:5]
    total, count = 0.0, 0
    with torch.no_grad():
        for text in texts:  # one masked copy at a time, no batching, no padding
            ids = tokenizer(text)["input_ids"]
            for pos in range(1, len(ids) - 1):
                masked = torch.tensor([ids[:pos] + [tokenizer.mask_token_id] + ids[pos + 1 :]])
                total += torch.log_softmax(model(input_ids=masked).logits[0, pos], -1)[ids[pos]].item()
                count += 1
    assert pseudo_perplexity(model, tokenizer, texts, batch_size=7) == pytest.approx(math.exp(-total / count), rel=1e-5)
    per_text = pseudo_log_likelihoods(model, tokenizer, texts, batch_size=3)
    assert [n for _, n in per_text] == [len(tokenizer(t)["input_ids"]) - 2 for t in texts]


def test_uniform_and_perfect_models(tokenizer):
    vocab = len(tokenizer)
    assert pseudo_perplexity(Constant(vocab), tokenizer, TEXTS) == pytest.approx(vocab, rel=1e-6)
    the = tokenizer.convert_tokens_to_ids("the")
    assert pseudo_perplexity(Constant(vocab, the), tokenizer, ["the the the"]) == pytest.approx(1.0, abs=1e-6)


def test_accuracy_of_a_constant_guess_is_the_unigram_baseline(tokenizer):
    guess = most_frequent_token(tokenizer, TEXTS)
    assert tokenizer.convert_ids_to_tokens(guess) == "the"
    baseline = unigram_baseline_accuracy(tokenizer, TEXTS, TEXTS)
    accuracy = masked_token_accuracy(Constant(len(tokenizer), guess), tokenizer, TEXTS * 20, seed=0)
    assert accuracy == pytest.approx(baseline, abs=0.03)
    assert masked_token_accuracy(Constant(len(tokenizer), 1), tokenizer, TEXTS, seed=0) == 0.0  # [UNK] is never right


def test_evaluating_switches_to_eval_and_restores_the_mode_even_after_an_error():
    model = torch.nn.Dropout(0.5)
    with evaluating(model):
        assert not model.training
    assert model.training
    with pytest.raises(RuntimeError), evaluating(model):
        raise RuntimeError("a failing probe")
    assert model.training
    model.eval()
    with evaluating(model):
        pass
    assert not model.training
