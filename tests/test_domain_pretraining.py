"""The continued-pretraining recipe and the DAPT / TAPT artifacts of notebook 07, on a profile small enough to train in seconds."""

from __future__ import annotations

import math

import pytest
import torch

from course_utils import artifacts
from course_utils import domain_pretraining as dp
from course_utils.cache import ArtifactCache
from course_utils.data import evaluation_texts
from course_utils.lm_metrics import pseudo_perplexity
from course_utils.profiles import get_profile
from course_utils.recipes import EVALUATIONS_PER_RUN, REPLAY_RATIO

TINY = get_profile(
    "fast",
    corpus_sentences=300,
    task_train=40,
    task_eval=12,
    hidden_size=16,
    num_layers=1,
    num_heads=2,
    intermediate_size=32,
    max_seq_len=48,
    vocab_size=400,
    batch_size=4,
    pretrain_steps=5,
    dapt_steps=5,
    dapt_eval_texts=4,
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One empty artifact cache for this module: the tokenizer and general BERT are built once."""
    folder = tmp_path_factory.mktemp("domain_pretraining") / "artifacts"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COURSE_ARTIFACTS", str(folder))
        yield folder


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_dapt_bert_builds_then_loads_from_the_cache(cache_dir, capsys):
    built = artifacts.get_dapt_bert(TINY, seed=0)
    assert "Built the clinical DAPT BERT" in capsys.readouterr().out
    loaded = artifacts.get_dapt_bert(TINY, seed=0)
    assert "Loaded the clinical DAPT BERT" in capsys.readouterr().out
    for name, tensor in _weights(built).items():
        torch.testing.assert_close(tensor, loaded.state_dict()[name])
    assert not loaded.training, "a loaded model starts in eval mode"

    entries = {e.name for e in ArtifactCache(cache_dir).entries()}
    assert {"tokenizer", "general_bert", "dapt_bert"} <= entries

    # continued pretraining changed the general BERT's weights
    general = artifacts.get_general_bert(TINY, seed=0, verbose=False)
    moved = [k for k, v in general.state_dict().items() if not torch.equal(v, loaded.state_dict()[k])]
    assert moved, "DAPT should have changed some weights"


def test_dapt_history_holds_the_pseudo_perplexities_of_the_model_it_saved(cache_dir):
    history = artifacts.get_dapt_bert_history(TINY, seed=0)
    assert [r["step"] for r in history] == list(range(1, TINY.dapt_steps + 1))
    every = max(1, TINY.dapt_steps // EVALUATIONS_PER_RUN)
    evaluated = [r["step"] for r in history if "pppl_general" in r]
    assert evaluated == sorted({*range(every, TINY.dapt_steps + 1, every), TINY.dapt_steps})
    # the last evaluation scored the very model the entry saved, on the texts the notebook uses
    tokenizer = artifacts.get_tokenizer(TINY, seed=0, verbose=False)
    model = artifacts.get_dapt_bert(TINY, seed=0, verbose=False)
    texts = evaluation_texts(TINY, seed=0, domain="clinical")
    assert {f"pppl_{name}" for name in texts} == {k for k in history[-1] if k.startswith("pppl_")}
    for name, sample in texts.items():
        assert history[-1][f"pppl_{name}"] == pytest.approx(pseudo_perplexity(model, tokenizer, sample), rel=1e-5)


def test_tapt_bert_builds_then_loads_and_differs_from_dapt(cache_dir, capsys):
    tapt = artifacts.get_tapt_bert(TINY, seed=0)
    assert "Built the clinical TAPT BERT" in capsys.readouterr().out
    again = artifacts.get_tapt_bert(TINY, seed=0)
    assert "Loaded the clinical TAPT BERT" in capsys.readouterr().out
    torch.testing.assert_close(
        tapt.bert.embeddings.word_embeddings.weight, again.bert.embeddings.word_embeddings.weight
    )
    dapt = artifacts.get_dapt_bert(TINY, seed=0, verbose=False)
    assert not torch.equal(tapt.bert.embeddings.word_embeddings.weight, dapt.bert.embeddings.word_embeddings.weight)
    assert len(artifacts.get_tapt_bert_history(TINY, seed=0)) == dp.tapt_steps(TINY)


def test_replay_bert_is_the_call_notebook_07_shows(cache_dir, capsys):
    """The cached replay BERT equals continue_pretraining with mix_texts and mix_ratio, run by hand."""
    from course_utils.data import corpus_texts
    from course_utils.world import knowledge_words

    replay = artifacts.get_replay_bert(TINY, seed=0)
    assert "Built the clinical DAPT BERT with replay" in capsys.readouterr().out
    by_hand = artifacts.get_general_bert(TINY, seed=0, verbose=False)
    tokenizer = artifacts.get_tokenizer(TINY, seed=0, verbose=False)
    history = dp.continue_pretraining(
        by_hand,
        tokenizer,
        corpus_texts("clinical", TINY, 0),
        TINY,
        0,
        mix_texts=corpus_texts("general", TINY, 0),
        mix_ratio=REPLAY_RATIO,
        salient_words=knowledge_words("clinical"),
        progress=False,
    )
    for name, tensor in by_hand.state_dict().items():
        torch.testing.assert_close(tensor, replay.state_dict()[name], msg=name)
    saved = artifacts.get_replay_bert_history(TINY, seed=0)
    assert [r["loss"] for r in saved] == pytest.approx([r["loss"] for r in history])
    dapt = artifacts.get_dapt_bert(TINY, seed=0, verbose=False)
    assert not torch.equal(replay.bert.embeddings.word_embeddings.weight, dapt.bert.embeddings.word_embeddings.weight)
    assert artifacts.cache_config("replay_bert", TINY, 0) != artifacts.cache_config("dapt_bert", TINY, 0)


def test_cache_keys_name_what_the_builders_read():
    def key(name, profile=TINY, seed=0, scope="clinical"):
        return artifacts.cache_config(name, profile, seed, scope)

    base = key("dapt_bert")
    assert base["parent"] == key("general_bert")
    assert base != key("dapt_bert", seed=1)
    assert base != key("dapt_bert", get_profile(TINY, dapt_steps=6))
    assert base != key("dapt_bert", get_profile(TINY, pretrain_steps=6))
    assert base != key("tapt_bert")
    assert key("tapt_bert", scope="clinical") != key("tapt_bert", scope="finance")


def test_kept_gain():
    assert dp.kept_gain(100.0, 10.0, 10.0) == pytest.approx(1.0)
    assert dp.kept_gain(100.0, 10.0, 100.0) == pytest.approx(0.0)
    assert dp.kept_gain(100.0, 10.0, math.sqrt(1000.0)) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        dp.kept_gain(10.0, 20.0, 15.0)
