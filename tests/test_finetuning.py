"""The shared fine-tuning loop and the transfer benchmark on tiny sizes (course_utils.finetuning, .transfer)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from course_utils import transfer
from course_utils.classifier import (
    EncodedSplit,
    SequenceClassifier,
    classifier_from,
    freeze_encoder,
    labeled_subset,
    predict_logits,
    trainable_parameters,
)
from course_utils.finetuning import train_classifier
from course_utils.linear_probe import PROBE_C, fit_linear_probe, frozen_features, warm_start_head
from course_utils.profiles import get_profile
from course_utils.training import LENGTH_GROUP_BATCHES, shuffled_epoch

CONFIG = BertConfig(
    vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
    max_position_embeddings=16,
)  # fmt: skip


def _keyword_split(n: int, seed: int) -> EncodedSplit:
    """Texts of random tokens 10..39 where token 5 or 6 (the keyword) decides the label 0 or 1."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 40, (n, 8), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    ids[:, 3] = 5 + labels
    attention = torch.ones_like(ids)
    attention[: n // 2, 6:] = 0  # some padding, which mean pooling must ignore
    return EncodedSplit(ids, attention, labels)


def test_mean_pooling_ignores_padding(one_thread):
    model = classifier_from(CONFIG, 2, pooling="mean").eval()
    ids = torch.randint(10, 40, (1, 6))
    short = model.features(ids, torch.ones_like(ids))
    padded_ids = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
    padded = model.features(padded_ids, torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], 1).long())
    torch.testing.assert_close(short, padded, atol=1e-5, rtol=1e-5)


def test_classifier_copies_the_encoder_and_nothing_else():
    torch.manual_seed(1)
    source = BertForMaskedLM(CONFIG)
    model = classifier_from(source, 3, seed=0)
    for name, tensor in source.bert.state_dict().items():
        torch.testing.assert_close(model.encoder.state_dict()[name], tensor, msg=name)
    random_start = classifier_from(CONFIG, 3, seed=0)
    assert not torch.equal(
        random_start.encoder.embeddings.word_embeddings.weight, source.bert.embeddings.word_embeddings.weight
    )
    torch.testing.assert_close(random_start.head.weight, model.head.weight)  # same seed, same new head


def test_training_learns_a_keyword_task_and_a_probe_leaves_the_encoder_alone(one_thread):
    train, test = _keyword_split(256, 0), _keyword_split(128, 1)
    model = classifier_from(CONFIG, 2, seed=0)
    history = train_classifier(model, train, lr=3e-3, epochs=8, batch_size=32, progress=False)
    assert history[-1]["loss"] < history[0]["loss"]
    accuracy = (predict_logits(model, test).argmax(-1) == test.labels).float().mean().item()
    assert accuracy > 0.9, accuracy

    probe = freeze_encoder(classifier_from(CONFIG, 2, seed=0))
    before = {k: v.clone() for k, v in probe.encoder.state_dict().items()}
    trainable, total = trainable_parameters(probe)
    assert 0 < trainable < total
    train_classifier(probe, train, lr=1e-2, epochs=1, progress=False)
    for name, tensor in probe.encoder.state_dict().items():
        assert torch.equal(before[name], tensor), name


def test_frozen_features_and_a_fitted_probe(one_thread):
    train, valid, test = _keyword_split(128, 0), _keyword_split(64, 1), _keyword_split(64, 2)
    encoder = classifier_from(CONFIG, 2, seed=0).encoder
    last = frozen_features(encoder, train, layers="last", batch_size=50)
    every = frozen_features(encoder, train, layers="all")
    assert last.shape == (128, CONFIG.hidden_size)
    assert every.shape == (128, (CONFIG.num_hidden_layers + 1) * CONFIG.hidden_size)
    np.testing.assert_allclose(every[:, -CONFIG.hidden_size :], last, atol=1e-5)  # the last layer comes last
    model = classifier_from(CONFIG, 2, seed=0).eval()
    with torch.no_grad():
        pooled = model.features(train.input_ids, train.attention_mask)
    np.testing.assert_allclose(last, pooled.numpy(), atol=1e-5)  # the same vector the mean-pooling head reads
    probe, c = fit_linear_probe(every, train.labels.tolist(), frozen_features(encoder, valid), valid.labels.tolist())
    assert c in PROBE_C
    assert probe.score(frozen_features(encoder, test), test.labels.tolist()) > 0.9  # a random encoder keeps the keyword
    with pytest.raises(ValueError, match="layers"):
        frozen_features(encoder, train, layers="middle")


def test_warm_start_fits_the_head_to_frozen_features_and_leaves_the_encoder_alone(one_thread):
    train, test = _keyword_split(256, 0), _keyword_split(128, 1)
    model = classifier_from(CONFIG, 3, seed=0)  # three labels, only two of which occur in train
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    cold = (predict_logits(model, test).argmax(-1) == test.labels).float().mean().item()
    warm_start_head(model, train)
    warm = predict_logits(model, test)
    assert (warm.argmax(-1) == test.labels).float().mean().item() > max(0.8, cold)  # the keyword survives the top layer
    assert (warm[:, 2] < warm[:, :2].min(-1).values).all()  # the label no training note has is never predicted
    for name, tensor in model.encoder.state_dict().items():
        assert torch.equal(encoder_before[name], tensor), name
    assert model.training  # the mode it came in

    binary = warm_start_head(classifier_from(CONFIG, 2, seed=0), train)  # scikit-learn's one-row binary case
    assert (predict_logits(binary, test).argmax(-1) == test.labels).float().mean().item() > 0.8


def test_min_steps_and_bad_input():
    model = classifier_from(CONFIG, 2)
    tiny = _keyword_split(4, 0)
    assert len(train_classifier(model, tiny, lr=1e-3, epochs=1, min_steps=7, progress=False)) == 7
    with pytest.raises(ValueError, match="empty"):
        train_classifier(model, tiny.subset([]), lr=1e-3, epochs=1, progress=False)
    frozen = SequenceClassifier(model.encoder, 2)
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to train"):
        train_classifier(frozen, tiny, lr=1e-3, epochs=1, progress=False)
    with pytest.raises(ValueError, match="pooling"):
        classifier_from(CONFIG, 2, pooling="max")
    with pytest.raises(ValueError, match="Unknown optimizer"):
        train_classifier(model, tiny, lr=1e-3, epochs=1, optimizer_name="lion", progress=False)


@pytest.mark.parametrize(("optimizer_name", "lr"), [("rmsprop", 1e-3), ("sgd", 0.05)])
def test_other_optimizers_learn_the_keyword_task_too(one_thread, optimizer_name, lr):
    train, test = _keyword_split(256, 0), _keyword_split(128, 1)
    model = classifier_from(CONFIG, 2, seed=0)
    train_classifier(model, train, lr=lr, epochs=8, batch_size=32, optimizer_name=optimizer_name, progress=False)
    assert (predict_logits(model, test).argmax(-1) == test.labels).float().mean().item() > 0.9


def test_labeled_subset_is_balanced_and_seeded():
    labels = [0] * 50 + [1] * 30 + [2] * 3
    chosen = labeled_subset(labels, 5, seed=0)
    assert [sum(labels[i] == c for i in chosen) for c in (0, 1, 2)] == [5, 5, 3]
    assert chosen == labeled_subset(labels, 5, seed=0) != labeled_subset(labels, 5, seed=1)
    assert labeled_subset(labels, None) == list(range(len(labels)))
    with pytest.raises(ValueError):
        labeled_subset(labels, 0)


def test_benchmark_rows_and_table(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("COURSE_ARTIFACTS", str(tmp_path))
    monkeypatch.setattr(transfer, "MIN_STEPS", 2)
    monkeypatch.setattr(transfer, "LEARNING_RATES", (1e-3,))
    monkeypatch.setattr(transfer, "PEFT_LEARNING_RATES", (1e-2,))
    tiny = get_profile(
        "fast", corpus_sentences=200, task_train=60, task_eval=12, vocab_size=300, hidden_size=32, num_layers=1,
        num_heads=2, intermediate_size=64, max_seq_len=32, batch_size=8, pretrain_steps=3, dapt_steps=2,
        dapt_eval_texts=4, finetune_epochs=1,
    )  # fmt: skip
    rows = transfer.run_benchmark(
        tiny,
        seeds=[0],
        inits=["random", "general"],
        heads=["full", "linear_probe", "lora"],
        labeled_per_class=[2, None],
        progress=False,
    )
    assert len(rows) == 2 * 3 * 2 * len(transfer.SPLITS)
    assert set(rows[0]) >= {"init", "head", "labeled_per_class", "split", "seed", "accuracy", "macro_f1", "seconds"}
    assert {r["split"] for r in rows} == set(transfer.SPLITS)
    assert {r["labeled_per_class"] for r in rows} == {2, None}
    assert all(0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1 for r in rows)
    assert {r["lr"] for r in rows if r["head"] == "full"} == {1e-3}
    assert {r["warm_start"] for r in rows if r["head"] == "full"} <= {False, True}  # chosen on validation
    assert {r["C"] for r in rows if r["head"] == "linear_probe"} <= set(PROBE_C)
    lora = [r for r in rows if r["head"] == "lora"]
    assert {r["lr"] for r in lora} == {1e-2} and all(0 < r["trainable"] < 0.2 * r["parameters"] for r in lora)
    with pytest.raises(ValueError, match="Unknown head"):
        transfer.run_benchmark(tiny, seeds=[0], heads=["prefix"], progress=False)
    table = transfer.format_table(rows)
    assert "random" in table and "2/class" in table and "all" in table and "±" in table

    summary = transfer.summarise(rows + [dict(r, seed=1, accuracy=0.0) for r in rows])
    first = next(s for s in summary if s["init"] == "random" and s["split"] == "test" and s["head"] == "full")
    assert first["seeds"] == 2 and first["spread"] >= 0


def test_concat_pads_every_part_to_the_longest_and_keeps_rows_in_order():
    from course_utils.classifier import EncodedSplit

    short = EncodedSplit(torch.tensor([[2, 5, 3]]), torch.tensor([[1, 1, 1]]), torch.tensor([1]))
    long = EncodedSplit(
        torch.tensor([[2, 6, 7, 8, 3], [2, 9, 3, 0, 0]]), torch.tensor([[1] * 5, [1, 1, 1, 0, 0]]), torch.tensor([0, 2])
    )
    both = EncodedSplit.concat(short, long)
    assert both.input_ids.tolist() == [[2, 5, 3, 0, 0], [2, 6, 7, 8, 3], [2, 9, 3, 0, 0]]
    assert both.attention_mask.tolist() == [[1, 1, 1, 0, 0], [1] * 5, [1, 1, 1, 0, 0]]
    assert both.labels.tolist() == [1, 0, 2] and len(both) == 3


def test_a_length_grouped_epoch_visits_every_row_once_with_shorter_batches():
    lengths = torch.randint(5, 64, (500,), generator=torch.Generator().manual_seed(0))
    plain = shuffled_epoch(lengths, 16, torch.Generator().manual_seed(1), group_by_length=False)
    grouped = shuffled_epoch(lengths, 16, torch.Generator().manual_seed(1), group_by_length=True)
    assert sorted(plain) == sorted(grouped) == list(range(500))
    window = LENGTH_GROUP_BATCHES * 16
    assert sorted(grouped[:window]) == sorted(plain[:window]), "grouping only reorders within a run of batches"
    assert lengths[grouped[:window]].diff().ge(0).all()

    def mean_longest(order: list[int]) -> float:
        return torch.stack([lengths[b].max() for b in torch.tensor(order).split(16)]).float().mean().item()

    assert mean_longest(grouped) < 0.85 * mean_longest(plain)
