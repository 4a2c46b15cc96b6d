"""MLM masking (course_utils.mlm) and the training loop (course_utils.training)."""

from __future__ import annotations

import pytest
import torch
from transformers import BertForMaskedLM, DataCollatorForLanguageModeling

from course_utils.mlm import (
    IGNORE_INDEX,
    make_bert_config,
    mask_tokens,
    occurring_token_ids,
    pad_batch,
    salient_token_ids,
    train_mlm,
)
from course_utils.profiles import get_profile
from course_utils.tokenization import train_wordpiece
from course_utils.training import linear_warmup_decay

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = [
    "the patient reports wheezing and chest tightness .",
    "bravinolol was started at 10 mg once daily .",
    "asthma is managed by pulmonology .",
    "the teacher slept this morning in the garden .",
    "a student sold the kettle at the market .",
] * 8


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece(TEXTS, vocab_size=200, model_max_length=32)


@pytest.fixture(scope="module")
def batch(tokenizer):
    ids, _ = pad_batch(tokenizer(TEXTS)["input_ids"], tokenizer.pad_token_id)
    return ids


def _rates(original: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor, tokenizer, maskable: torch.Tensor):
    chosen = labels != IGNORE_INDEX
    return {
        "chosen": (chosen.sum() / maskable.sum()).item(),
        "mask": ((inputs == tokenizer.mask_token_id) & chosen).sum().item() / chosen.sum().item(),
        "kept": ((inputs == original) & chosen).sum().item() / chosen.sum().item(),
    }


def test_masking_rates_match_the_data_collator(tokenizer, batch):
    special = torch.isin(batch, torch.tensor(tokenizer.all_special_ids))
    ours = torch.Generator().manual_seed(0)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=0)
    totals = {"ours": [], "hf": []}
    for _ in range(200):
        inputs, labels = mask_tokens(batch, tokenizer, generator=ours)
        totals["ours"].append(_rates(batch, inputs, labels, tokenizer, ~special))
        hf_inputs, hf_labels = collator.torch_mask_tokens(batch.clone())
        totals["hf"].append(_rates(batch, hf_inputs, hf_labels, tokenizer, ~special))
    mean = {k: {r: sum(d[r] for d in v) / len(v) for r in v[0]} for k, v in totals.items()}
    for who in ("ours", "hf"):
        assert mean[who]["chosen"] == pytest.approx(0.15, abs=0.01)
        assert mean[who]["mask"] == pytest.approx(0.80, abs=0.02)
        assert mean[who]["kept"] == pytest.approx(0.10, abs=0.02)  # plus the rare random draw of the same id
    for rate in ("chosen", "mask", "kept"):
        assert mean["ours"][rate] == pytest.approx(mean["hf"][rate], abs=0.02)


def test_special_and_padding_tokens_are_never_masked(tokenizer, batch):
    special = torch.isin(batch, torch.tensor(tokenizer.all_special_ids))
    assert (batch == tokenizer.pad_token_id).any()  # the batch does contain padding
    generator = torch.Generator().manual_seed(1)
    for _ in range(50):
        inputs, labels = mask_tokens(batch, tokenizer, mlm_probability=0.9, generator=generator)
        assert (labels[special] == IGNORE_INDEX).all()
        assert torch.equal(inputs[special], batch[special])
        random_ids = inputs[(labels != IGNORE_INDEX) & (inputs != batch) & (inputs != tokenizer.mask_token_id)]
        assert not torch.isin(random_ids, torch.tensor(tokenizer.all_special_ids)).any()


def test_masking_is_deterministic_under_a_seed(tokenizer, batch):
    first = mask_tokens(batch, tokenizer, generator=torch.Generator().manual_seed(3))
    second = mask_tokens(batch, tokenizer, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_warmup_and_decay():
    factor = linear_warmup_decay(steps=10, warmup_steps=2)
    assert [round(factor(s), 3) for s in range(10)] == [0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]


def _tiny_model(tokenizer, seed=0):
    profile = get_profile("fast", hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_seq_len=32)
    torch.manual_seed(seed)
    return BertForMaskedLM(make_bert_config(profile, len(tokenizer)))


def test_training_lowers_the_loss_and_is_deterministic(tokenizer):
    calls = []

    def evaluate(model):
        calls.append(model.training)
        return {"probe": 1.0}

    runs = []
    for _ in range(2):
        model = _tiny_model(tokenizer)
        runs.append(
            train_mlm(
                model,
                tokenizer,
                TEXTS,
                steps=60,
                batch_size=8,
                lr=3e-3,
                seed=0,
                progress=False,
                eval_every=20,
                eval_fn=evaluate,
            )
        )
    history = runs[0]
    first, last = sum(h["loss"] for h in history[:10]) / 10, sum(h["loss"] for h in history[-10:]) / 10
    assert last < 0.8 * first, (first, last)
    assert [h["loss"] for h in runs[0]] == [h["loss"] for h in runs[1]]
    assert [h["step"] for h in history if "probe" in h] == [20, 40, 60] and calls == [False] * 6
    assert history[-1]["tokens"] > 0 and history[-1]["tokens_per_s"] > 0
    assert not model.training


def test_mixing_texts_takes_a_share_of_each_batch(tokenizer):
    seen = []
    model = _tiny_model(tokenizer)
    original = model.base_model.forward  # the loop runs the encoder, then the head on the chosen rows

    def spy(*args, **kwargs):
        seen.append(kwargs["attention_mask"].shape[0])
        return original(*args, **kwargs)

    model.base_model.forward = spy
    train_mlm(model, tokenizer, TEXTS[:5], mix_texts=TEXTS[5:10], mix_ratio=0.25, steps=2, batch_size=8, progress=False)
    assert seen == [8, 8]
    with pytest.raises(ValueError):
        train_mlm(model, tokenizer, TEXTS, mix_texts=TEXTS, mix_ratio=1.5, steps=1, batch_size=2, progress=False)


def test_entity_aware_masking_chooses_salient_tokens_more_often(tokenizer, batch):
    salient = salient_token_ids(tokenizer, ["kettle", "garden"])
    generator = torch.Generator().manual_seed(0)
    big = batch.repeat(20, 1)
    _, labels = mask_tokens(big, tokenizer, salient_ids=salient, salient_probability=0.6, generator=generator)
    is_salient = torch.isin(big, salient)
    ordinary = ~is_salient & ~torch.isin(big, torch.tensor(tokenizer.all_special_ids))
    chosen = labels != IGNORE_INDEX
    assert chosen[is_salient].float().mean().item() == pytest.approx(0.6, abs=0.05)
    assert chosen[ordinary].float().mean().item() == pytest.approx(0.15, abs=0.03)


def test_rows_never_read_are_left_alone_by_a_restricted_softmax(tokenizer):
    """With tied embeddings a full softmax pushes every unread row; restricted, they never move."""
    read = occurring_token_ids(tokenizer(TEXTS)["input_ids"], len(tokenizer))
    read[tokenizer.all_special_ids] = True  # [MASK] is read at every masked position
    unread = (~read).nonzero().flatten()
    assert len(unread) > 0, "the test needs a token that no text contains"
    moved = {}
    for restrict in (True, False):
        torch.manual_seed(0)
        model = BertForMaskedLM(
            make_bert_config(get_profile("fast"), len(tokenizer), pad_token_id=tokenizer.pad_token_id)
        )
        before = model.get_input_embeddings().weight[unread].detach().clone()
        train_mlm(model, tokenizer, TEXTS, steps=5, batch_size=8, seed=0, restrict_softmax=restrict, progress=False)
        after = model.get_input_embeddings().weight[unread].detach()
        moved[restrict] = ((after - before).norm() / before.norm()).item()
    assert moved[True] < 1e-3, moved  # only AdamW's weight decay touches them: a common shrink of 1e-5 per step
    assert moved[False] > 0.05, moved


def test_the_loss_on_chosen_rows_equals_the_models_own_loss(tokenizer, batch):
    from course_utils.mlm import masked_lm_loss

    torch.manual_seed(0)
    model = BertForMaskedLM(make_bert_config(get_profile("fast"), len(tokenizer), pad_token_id=tokenizer.pad_token_id))
    inputs, labels = mask_tokens(batch, tokenizer, generator=torch.Generator().manual_seed(0))
    attention = (batch != tokenizer.pad_token_id).long()
    expected = model(input_ids=inputs, attention_mask=attention, labels=labels).loss
    loss, count = masked_lm_loss(model, {"input_ids": inputs, "attention_mask": attention, "labels": labels})
    assert torch.allclose(loss, expected, atol=1e-5)
    assert count == int((labels != IGNORE_INDEX).sum())


def test_the_held_out_loss_scores_fixed_positions_and_leaves_out_tokens_never_read(tokenizer):
    """Two evaluations of one model agree exactly; a held-out token outside the softmax does not make it infinite."""
    from course_utils.mlm import heldout_mlm_loss

    read = occurring_token_ids(tokenizer(TEXTS[:3])["input_ids"], len(tokenizer))  # the teacher sentences stay unread
    held_out = TEXTS[:5] * 4
    evaluate = heldout_mlm_loss(tokenizer, held_out, max_length=32, readable=read, mlm_probability=0.5, seed=0)
    model = _tiny_model(tokenizer).eval()
    with torch.no_grad():
        first, second = evaluate(model)["valid_loss"], evaluate(model)["valid_loss"]
    assert first == second and 0 < first < 20, first
    unrestricted = heldout_mlm_loss(tokenizer, held_out, max_length=32, mlm_probability=0.5, seed=0)
    with torch.no_grad():
        assert unrestricted(model)["valid_loss"] != first  # the unread targets count there
    history = train_mlm(
        model, tokenizer, TEXTS[:3], steps=40, batch_size=8, lr=3e-3, progress=False, eval_every=20, eval_fn=evaluate
    )
    losses = [h["valid_loss"] for h in history if "valid_loss" in h]
    assert len(losses) == 2 and losses[-1] < first, (first, losses)
