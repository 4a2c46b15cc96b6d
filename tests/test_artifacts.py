"""The artifact registry: builds the tokenizer and the general BERT once, then loads them (course_utils.artifacts)."""

from __future__ import annotations

import pytest
import torch
from tiny import TINY_PROFILE as TINY

from course_utils import artifacts, cache
from course_utils.cache import ArtifactCache
from course_utils.env import course_device
from course_utils.profiles import get_profile
from course_utils.recipes import PROFILE_FIELDS, RECIPES, restricted


def test_builds_then_loads_from_the_cache(cache_dir, capsys):
    tokenizer = artifacts.get_tokenizer(TINY, seed=0)
    model = artifacts.get_general_bert(TINY, seed=0)
    first = capsys.readouterr().out
    assert "Building the course tokenizer" in first and "Building the general BERT" in first
    assert model.config.vocab_size == len(tokenizer) and model.config.hidden_size == 32
    assert not model.training

    again = artifacts.get_general_bert(TINY, seed=0)
    second = capsys.readouterr().out
    assert "Loaded the general BERT (" in second and "Building" not in second
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, again.state_dict()[name], msg=name)

    history = artifacts.get_general_bert_history(TINY, seed=0)
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5]
    entries = {entry.name for entry in ArtifactCache(cache_dir).entries()}
    assert entries == {"tokenizer", "general_bert"}
    assert {entry.manifest["device"] for entry in ArtifactCache(cache_dir).entries()} == {course_device().type}
    files = {p.suffix for entry in ArtifactCache(cache_dir).entries() for p in entry.path.iterdir()}
    assert ".safetensors" in files and files <= {".json", ".safetensors", ".txt"}


def test_the_key_follows_what_the_builder_reads():
    def key(profile, seed=0):
        return artifacts.cache_config("general_bert", profile, seed)

    base = key(TINY)
    assert base != key(TINY, 1)
    assert base != key(get_profile(TINY, pretrain_steps=6))
    assert base != key(get_profile(TINY, vocab_size=400))  # through the tokenizer
    assert base == key(get_profile(TINY, finetune_epochs=9))  # a field it does not read


def test_a_builder_can_read_only_the_profile_fields_its_recipe_declares():
    view = restricted(TINY, RECIPES["general_bert"])
    assert view.pretrain_steps == TINY.pretrain_steps and view.name == TINY.name
    with pytest.raises(AttributeError, match="general_bert recipe reads profile.finetune_epochs"):
        _ = view.finetune_epochs


def test_every_recipe_names_a_known_parent_and_real_profile_fields():
    for name, recipe in RECIPES.items():
        assert recipe.parent is None or recipe.parent in RECIPES, name
        assert set(recipe.profile_fields) <= PROFILE_FIELDS, name
        assert recipe.steps is None or recipe.steps in recipe.profile_fields, name
    assert RECIPES["tapt_bert"].steps_for(TINY) == max(1, round(TINY.dapt_steps / 4))
    with pytest.raises(ValueError, match="No recipe called 'dapt'"):
        artifacts.get("dapt", TINY)


def test_editing_the_code_a_builder_runs_gives_new_keys_for_it_and_what_builds_on_it(package_copy, monkeypatch):
    monkeypatch.setattr(cache, "SOURCE_ROOT", package_copy)  # fingerprint the copy, which we may edit

    def keys() -> dict[str, str]:
        configs = {name: artifacts.cache_config(name, TINY) for name in ("tokenizer", "general_bert", "dapt_bert")}
        return {name: cache.cache_key(name, config) for name, config in configs.items()}

    def edit(module: str) -> dict[str, bool]:
        """Append a comment to a module; which keys changed."""
        before = keys()
        path = package_copy / "course_utils" / module
        path.write_text(path.read_text() + "\n# edited\n")
        return {name: key != before[name] for name, key in keys().items()}

    assert edit("ngram.py") == {"tokenizer": False, "general_bert": False, "dapt_bert": False}  # no builder runs it
    assert edit("knowledge_probes.py") == {"tokenizer": False, "general_bert": False, "dapt_bert": False}
    assert edit("mlm.py") == {"tokenizer": False, "general_bert": True, "dapt_bert": True}  # train_mlm imports it
    assert edit("domain_pretraining.py") == {"tokenizer": False, "general_bert": False, "dapt_bert": True}
    assert edit("tokenization.py") == {"tokenizer": True, "general_bert": True, "dapt_bert": True}
    assert edit("world/grammar.py") == {"tokenizer": True, "general_bert": True, "dapt_bert": True}
    assert edit("artifacts.py") == {"tokenizer": True, "general_bert": True, "dapt_bert": True}  # the builders
