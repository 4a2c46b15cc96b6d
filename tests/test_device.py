"""The device travels with the call: helpers compute where the model is and never move a caller's model."""

from __future__ import annotations

import pytest
import torch
from tiny import CONFIG, keyword_split
from transformers import BertForMaskedLM

from course_utils import env
from course_utils.classifier import classifier_from, predict_logits
from course_utils.lm_metrics import masked_token_accuracy, pseudo_perplexity
from course_utils.strategies import STRATEGIES, apply_strategy
from course_utils.tokenization import train_wordpiece


def test_setup_decides_the_device_the_builders_use(monkeypatch):
    monkeypatch.setattr(env, "_CHOSEN_DEVICE", None)
    assert env.course_device() == env.pick_device()
    env.setup("fast", 0, device="cpu", verbose=False)
    assert env.course_device() == torch.device("cpu")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_new_weights_follow_the_wrapped_layers_dtype(strategy):
    torch.manual_seed(0)
    model = apply_strategy(classifier_from(BertForMaskedLM(CONFIG), 2).to(torch.bfloat16), strategy)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    batch = keyword_split(4)
    assert predict_logits(model, batch).shape == (4, 2)


def test_a_probe_asked_for_another_device_says_so_instead_of_moving_the_model():
    texts = ["the patient reports wheezing .", "the nurse noted a fever ."] * 4
    tokenizer = train_wordpiece(texts, vocab_size=80, model_max_length=16)
    config = CONFIG.__class__(**{**CONFIG.to_dict(), "vocab_size": len(tokenizer)})
    model = BertForMaskedLM(config).train()
    assert pseudo_perplexity(model, tokenizer, texts[:2]) > 1 and model.training, "mode restored"
    assert 0 <= masked_token_accuracy(model, tokenizer, texts) <= 1
    with pytest.raises(ValueError, match="move it there first"):
        pseudo_perplexity(model, tokenizer, texts[:2], device="meta")
    assert next(model.parameters()).device.type == "cpu"
