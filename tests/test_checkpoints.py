"""Loading a real BERT checkpoint from a folder the test writes itself (course_utils.checkpoints)."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast, DistilBertConfig, DistilBertForMaskedLM

from course_utils.checkpoints import load_checkpoint
from course_utils.classifier import classifier_from, encode_split, predict_logits

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "patient", "reports", "chest", "pain", "."]


def _write_bert(folder, **config):
    (folder / "vocab.txt").parent.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"))
    base = dict(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    model = BertForMaskedLM(BertConfig(**{**base, **config}))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def test_a_local_folder_loads_with_its_own_vocabulary_and_fine_tunes(tmp_path):
    written = _write_bert(tmp_path / "my_bert")
    model, tokenizer = load_checkpoint(tmp_path / "my_bert")
    assert tokenizer.tokenize("The patient reports chest pain.") == ["the", "patient", "reports", "chest", "pain", "."]
    for name, tensor in written.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    classifier = classifier_from(model, 2, seed=0)
    split = encode_split(tokenizer, ["the patient reports chest pain.", "the patient."], [0, 1], max_length=16)
    assert predict_logits(classifier, split).shape == (2, 2)


def test_bad_checkpoints_get_errors_that_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="hub is off.*local-dir"):
        load_checkpoint("bert-base-uncased")
    folder = tmp_path / "no_weights"
    _write_bert(folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(FileNotFoundError, match="never unpickles"):
        load_checkpoint(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_checkpoint(tmp_path / "empty")
    other = tmp_path / "distil"
    DistilBertForMaskedLM(
        DistilBertConfig(vocab_size=len(WORDS), dim=16, n_layers=1, n_heads=2, hidden_dim=32)
    ).save_pretrained(other)
    (other / "vocab.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="BERT checkpoint"):
        load_checkpoint(other)
