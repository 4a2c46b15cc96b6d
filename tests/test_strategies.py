"""Fine-tuning strategies (course_utils.strategies): what trains, LoRA against peft, adapters saved alone."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from tiny import CONFIG, keyword_split
from torch import nn
from transformers import BertModel

from course_utils.classifier import classifier_from, predict_logits, trainable_parameters
from course_utils.finetuning import train_classifier
from course_utils.mlm import make_bert_config
from course_utils.profiles import get_profile
from course_utils.strategies import (
    STRATEGIES,
    BottleneckAdapter,
    LoRALinear,
    apply_strategy,
    load_trainable,
    save_trainable,
)


def _model(strategy: str, **options: float) -> nn.Module:
    return apply_strategy(classifier_from(CONFIG, 2, seed=0), strategy, **options)


def _trainable_names(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_lora_layer_starts_as_its_base_and_matches_peft_once_trained():
    torch.manual_seed(0)
    base = BertModel(CONFIG, add_pooling_layer=False).eval()
    ours = copy.deepcopy(base)
    for layer in ours.encoder.layer:
        for name in ("query", "value"):
            setattr(layer.attention.self, name, LoRALinear(getattr(layer.attention.self, name), r=4, alpha=8))
    ids = torch.randint(0, 60, (3, 8))
    torch.testing.assert_close(ours(ids).last_hidden_state, base(ids).last_hidden_state)  # B = 0: no change

    theirs = get_peft_model(
        copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], lora_dropout=0.0)
    )
    with torch.no_grad():
        for i, layer in enumerate(ours.encoder.layer):
            for name in ("query", "value"):
                mine = getattr(layer.attention.self, name)
                mine.lora_B.normal_()  # as if trained
                peft_layer = getattr(theirs.base_model.model.encoder.layer[i].attention.self, name)
                peft_layer.lora_A["default"].weight.copy_(mine.lora_A)
                peft_layer.lora_B["default"].weight.copy_(mine.lora_B)
    theirs.eval()
    out = ours(ids).last_hidden_state
    assert not torch.allclose(out, base(ids).last_hidden_state)
    torch.testing.assert_close(out, theirs(input_ids=ids).last_hidden_state)


def test_a_merged_lora_layer_computes_the_same_as_the_unmerged_one():
    layer = LoRALinear(nn.Linear(6, 5), r=2, alpha=4)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 6)
    torch.testing.assert_close(layer.merged()(x), layer(x))


def test_an_adapter_is_the_identity_until_it_trains():
    adapter = BottleneckAdapter(8, bottleneck=2)
    h = torch.randn(2, 3, 8)
    torch.testing.assert_close(adapter(h), h)
    model = classifier_from(CONFIG, 2, seed=0).eval()
    ids = torch.randint(0, 60, (2, 8))
    before = model.features(ids, torch.ones_like(ids))
    apply_strategy(model, "adapter", bottleneck=4)
    torch.testing.assert_close(model.features(ids, torch.ones_like(ids)), before)


def test_each_strategy_trains_what_it_names_and_the_head():
    head = {"head.weight", "head.bias"}
    assert _trainable_names(_model("full")) == {name for name, _ in _model("full").named_parameters()}
    assert _trainable_names(_model("head_only")) == head
    top = _trainable_names(_model("top_k", k=1)) - head
    assert top and all(name.startswith("encoder.encoder.layer.1.") for name in top)
    bitfit = _trainable_names(_model("bitfit")) - head
    assert bitfit and all(name.endswith(".bias") for name in bitfit)
    lora = _trainable_names(_model("lora", r=2)) - head
    assert lora and all(".lora_" in name for name in lora)
    adapter = _trainable_names(_model("adapter")) - head
    assert any(".down." in name for name in adapter) and all(
        ".down." in n or ".up." in n or "LayerNorm" in n for n in adapter
    )
    counts = {s: trainable_parameters(_model(s))[0] for s in STRATEGIES}
    assert counts["head_only"] < counts["bitfit"] < counts["full"]
    assert counts["lora"] < counts["top_k"] < counts["full"]


def test_training_lora_leaves_the_pretrained_weights_unchanged():
    model = _model("lora", r=2)
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    train_classifier(model, keyword_split(), lr=1e-2, epochs=3, batch_size=16, progress=False)
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert any(not torch.equal(p, torch.zeros_like(p)) for n, p in model.named_parameters() if "lora_B" in n)


@pytest.mark.parametrize("strategy", ["lora", "adapter", "bitfit"])
def test_a_saved_strategy_is_small_and_reloads_to_the_same_predictions(tmp_path, strategy):
    model = _model(strategy)
    split = keyword_split()
    train_classifier(model, split, lr=1e-2, epochs=2, batch_size=16, progress=False)
    path = save_trainable(model, tmp_path / f"{strategy}.safetensors")
    full_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    assert path.stat().st_size < 0.5 * full_bytes
    fresh = load_trainable(_model(strategy), path)
    assert torch.equal(predict_logits(fresh, split), predict_logits(model, split))


def test_loading_into_a_model_of_another_strategy_says_what_to_do(tmp_path):
    path = save_trainable(_model("lora", r=2), tmp_path / "lora.safetensors")
    with pytest.raises(ValueError, match="same strategy"):
        load_trainable(_model("adapter"), path)
    with pytest.raises(ValueError, match="shape"):
        load_trainable(_model("lora", r=4), path)


def test_bad_options_get_clear_errors():
    with pytest.raises(ValueError, match="Unknown strategy"):
        _model("prefix")
    with pytest.raises(ValueError, match="k <= 2"):
        _model("top_k", k=3)
    with pytest.raises(ValueError, match="positive integer"):
        LoRALinear(nn.Linear(4, 4), r=0)


@pytest.mark.parametrize(("strategy", "options"), [("lora", {}), ("adapter", {"bottleneck": 16})])
def test_at_the_course_size_a_saved_adapter_is_at_most_5_percent_of_the_model(tmp_path, strategy, options):
    config = make_bert_config(get_profile("fast"), vocab_size=2_000)
    model = apply_strategy(classifier_from(config, 6, seed=0), strategy, **options)
    trainable, total = trainable_parameters(model)
    assert trainable / total <= 0.05
    full = tmp_path / "full.safetensors"
    save_file({n: p.detach().contiguous() for n, p in model.state_dict().items()}, str(full))
    assert save_trainable(model, tmp_path / "part.safetensors").stat().st_size <= 0.05 * full.stat().st_size
