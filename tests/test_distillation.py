"""Distillation (course_utils.distillation), the cached teacher (course_utils.artifacts) and saving a classifier."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny import CONFIG, keyword_split
from transformers import TrainingArguments, default_data_collator

from course_utils import artifacts
from course_utils.cache import ArtifactCache
from course_utils.classifier import classifier_from, load_classifier, predict_logits, save_classifier
from course_utils.distillation import (
    DistillationTrainer,
    distill,
    distillation_loss,
    random_student,
    soften,
    student_config,
    student_from_teacher,
    unlabeled_notes,
)
from course_utils.finetuning import train_classifier
from course_utils.measure import count_parameters
from course_utils.profiles import get_profile
from course_utils.world import unseen_entities


def _trained_teacher():
    model = classifier_from(CONFIG, 2, seed=0)
    train_classifier(model, keyword_split(), lr=3e-3, epochs=1, min_steps=60, batch_size=16, progress=False)
    return model


def test_soften_flattens_with_temperature_and_rejects_a_bad_one():
    logits = torch.tensor([[3.0, 1.0, 0.0]])
    torch.testing.assert_close(soften(logits, 1.0), F.softmax(logits, -1))
    assert soften(logits, 5.0).max() < soften(logits, 1.0).max() < soften(logits, 0.5).max()
    torch.testing.assert_close(soften(logits, 1e6), torch.full((1, 3), 1 / 3))
    with pytest.raises(ValueError, match="positive"):
        soften(logits, 0.0)


def test_distillation_loss_is_the_formula_and_its_special_cases():
    torch.manual_seed(0)
    student, teacher, labels = torch.randn(8, 4), torch.randn(8, 4), torch.randint(0, 4, (8,))
    t, alpha = 3.0, 0.7
    p, q = F.softmax(teacher / t, -1), F.softmax(student / t, -1)
    kl = (p * (p.log() - q.log())).sum(-1).mean()
    expected = alpha * t**2 * kl + (1 - alpha) * F.cross_entropy(student, labels)
    torch.testing.assert_close(distillation_loss(student, teacher, labels, t, alpha), expected)
    torch.testing.assert_close(distillation_loss(student, teacher, labels, t, 0.0), F.cross_entropy(student, labels))
    assert distillation_loss(teacher, teacher, labels, t, 1.0).abs() < 1e-6
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(student, teacher, labels, t, 1.5)


def test_the_t_squared_factor_keeps_the_soft_gradient_at_high_temperature():
    torch.manual_seed(0)
    student, teacher, labels = (
        torch.randn(64, 5, requires_grad=True),
        torch.randn(64, 5),
        torch.zeros(64, dtype=torch.long),
    )
    norms = []
    for t in (8.0, 16.0):
        (gradient,) = torch.autograd.grad(distillation_loss(student, teacher, labels, t, 1.0), student)
        norms.append(gradient.norm().item())
    assert abs(norms[1] / norms[0] - 1) < 0.1  # without T² it would fall to a quarter


def test_a_distilled_student_learns_the_teachers_predictions(one_thread):
    teacher = _trained_teacher()
    split = keyword_split(seed=1)
    targets = predict_logits(teacher, split)
    student = random_student(student_config(CONFIG, hidden_size=16, num_layers=1), 2, seed=0)
    history = distill(student, split, targets, lr=3e-3, epochs=1, min_steps=80, batch_size=16, progress=False)
    assert history[-1]["loss"] < history[0]["loss"]
    agreement = (predict_logits(student, split).argmax(-1) == targets.argmax(-1)).float().mean()
    assert agreement > 0.9
    with pytest.raises(ValueError, match="targets"):
        train_classifier(
            student, split, lr=1e-3, epochs=1, loss_fn=lambda *a: a[0].sum(), targets=targets[:3], progress=False
        )


def test_student_shapes_and_a_student_built_from_the_teachers_layers():
    teacher = _trained_teacher()
    narrow = student_config(CONFIG, hidden_size=16, num_layers=2)
    assert (narrow.hidden_size, narrow.intermediate_size, narrow.vocab_size) == (16, 32, CONFIG.vocab_size)
    assert CONFIG.hidden_size == 32  # the teacher's config is not changed
    with pytest.raises(ValueError, match="divisible"):
        student_config(CONFIG, hidden_size=15, num_layers=1, num_heads=2)

    split = keyword_split(seed=2)
    whole = student_from_teacher(teacher, [0, 1])
    torch.testing.assert_close(predict_logits(whole, split), predict_logits(teacher, split))
    shallow = student_from_teacher(teacher, [0])
    assert shallow.config.num_hidden_layers == 1 and teacher.config.num_hidden_layers == 2
    assert count_parameters(shallow).total < count_parameters(teacher).total
    torch.testing.assert_close(shallow.encoder.encoder.layer[0].attention.self.query.weight,
                               teacher.encoder.encoder.layer[0].attention.self.query.weight)  # fmt: skip
    with pytest.raises(ValueError, match="layers"):
        student_from_teacher(teacher, [2])


def test_the_trainer_subclass_computes_the_same_loss_and_trains(tmp_path, one_thread):
    teacher = _trained_teacher()
    split = keyword_split(seed=3)
    rows = [
        {"input_ids": split.input_ids[i], "attention_mask": split.attention_mask[i], "labels": split.labels[i]}
        for i in range(len(split))
    ]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=8, report_to="none",
                             save_strategy="no", use_cpu=True, disable_tqdm=True)  # fmt: skip
    student = random_student(student_config(CONFIG, hidden_size=16, num_layers=1), 2)
    trainer = DistillationTrainer(model=student, args=args, train_dataset=rows, data_collator=default_data_collator,
                                  teacher=teacher, temperature=2.0, alpha=0.5)  # fmt: skip
    batch = default_data_collator(rows[:8])
    student.eval()
    expected = distillation_loss(student(batch["input_ids"], batch["attention_mask"]).logits,
                                 teacher(batch["input_ids"], batch["attention_mask"]).logits, batch["labels"])  # fmt: skip
    torch.testing.assert_close(trainer.compute_loss(student, dict(batch)), expected)
    trainer.train()
    assert trainer.state.global_step == 3


def test_a_saved_classifier_reloads_exactly_and_a_broken_folder_is_refused(tmp_path):
    model = _trained_teacher()
    folder = save_classifier(model, tmp_path / "clf", ["no", "yes"])
    again = load_classifier(folder)
    split = keyword_split(seed=4)
    torch.testing.assert_close(predict_logits(again, split), predict_logits(model, split))
    assert not again.training
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_classifier(folder)


def test_unlabeled_notes_follow_the_training_notes_and_hold_no_held_out_drug():
    notes = unlabeled_notes("clinical", get_profile("fast", task_train=50), 0, 40)
    assert len(notes) == 40
    held_out = unseen_entities("clinical", 0)
    assert not any(drug in note.split() for note in notes for drug in held_out)


TINY = get_profile(
    "fast", corpus_sentences=200, vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
    max_seq_len=32, batch_size=8, pretrain_steps=5, dapt_steps=5, dapt_eval_texts=4, task_train=60, task_eval=20,
    finetune_epochs=1,
)  # fmt: skip


def test_the_teacher_is_built_once_then_loaded(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.setenv("COURSE_ARTIFACTS", str(tmp_path))
    model = artifacts.get_teacher(TINY, seed=0)
    assert "Building the clinical teacher" in capsys.readouterr().out
    again = artifacts.get_teacher(TINY, seed=0)
    assert "Loaded the clinical teacher" in capsys.readouterr().out
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, again.state_dict()[name], msg=name)
    assert {e.name for e in ArtifactCache(tmp_path).entries()} == {"tokenizer", "general_bert", "dapt_bert", "teacher"}
    assert model.num_labels == 6 and not model.training
    base = artifacts.cache_config("teacher", TINY, 0)
    assert base != artifacts.cache_config("teacher", get_profile(TINY, dapt_steps=6), 0)  # through the DAPT BERT
    assert base != artifacts.cache_config("teacher", TINY, 1)


def test_the_evaluation_classifiers_and_the_student_are_cached_and_reload_exactly(
    tmp_path, monkeypatch, capsys, one_thread
):
    from course_utils.classifier import encode_split, predict_logits
    from course_utils.data import load_task

    monkeypatch.setenv("COURSE_ARTIFACTS", str(tmp_path))
    lora = artifacts.get_classifier("dapt_lora", TINY, seed=0)
    assert "Building the clinical classifier, DAPT BERT, LoRA" in capsys.readouterr().out
    assert any("lora_A" in name for name, _ in lora.named_parameters()), "LoRA's modules come back with it"
    again = artifacts.get_classifier("dapt_lora", TINY, seed=0)
    assert "Loaded the clinical classifier, DAPT BERT, LoRA" in capsys.readouterr().out
    tokenizer = artifacts.get_tokenizer(TINY, 0, verbose=False)
    test = load_task("clinical", TINY, 0)["test"]
    split = encode_split(tokenizer, test["text"], test["label"], TINY.max_seq_len)
    assert torch.equal(predict_logits(again, split), predict_logits(lora, split))

    student = artifacts.get_student(TINY, seed=0)
    teacher = artifacts.get_teacher(TINY, seed=0, verbose=False)
    assert student.config.hidden_size == TINY.hidden_size // 4 and student.config.num_hidden_layers == TINY.num_layers
    assert count_parameters(student).total < count_parameters(teacher).total / 3
    cached = {entry.name for entry in ArtifactCache(tmp_path).entries()}
    assert {"classifier_dapt_lora", "student", "teacher"} <= cached
    with pytest.raises(ValueError, match="keeps no training history"):
        artifacts.get("student", TINY, 0, history=True)
