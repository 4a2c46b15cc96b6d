"""DAPT / TAPT builders and the probes of notebook 06, on a profile small enough to train in seconds."""

from __future__ import annotations

import math
import types

import pytest
import torch

from course_utils import artifacts
from course_utils import domain_pretraining as dp
from course_utils.cache import ArtifactCache
from course_utils.data import load_corpus
from course_utils.profiles import get_profile
from course_utils.tokenization import train_wordpiece

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


def test_dapt_history_has_the_evaluations_the_notebook_plots(cache_dir):
    history = artifacts.get_dapt_bert_history(TINY, seed=0)
    assert [r["step"] for r in history] == list(range(1, TINY.dapt_steps + 1))
    evaluated = [r for r in history if "pppl_general" in r]
    assert evaluated and evaluated[-1]["step"] == TINY.dapt_steps
    for row in evaluated:
        assert set(row) >= {"pppl_general", "pppl_clinical", "pppl_clinical_task"}
        assert all(math.isfinite(row[k]) and row[k] > 1 for k in row if k.startswith("pppl_"))


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
    assert len(artifacts.get_tapt_bert_history(TINY, seed=0)) == TINY.dapt_steps


def test_cache_keys_name_what_the_builders_read():
    base = artifacts.dapt_bert_config(TINY, seed=0)
    assert base["general_bert"] == artifacts.general_bert_config(TINY, seed=0)
    assert base != artifacts.dapt_bert_config(TINY, seed=1)
    assert base != artifacts.dapt_bert_config(get_profile(TINY, dapt_steps=6), seed=0)
    assert base != artifacts.dapt_bert_config(get_profile(TINY, pretrain_steps=6), seed=0)
    assert base != artifacts.tapt_bert_config(TINY, seed=0)
    assert artifacts.tapt_bert_config(TINY, 0, "clinical") != artifacts.tapt_bert_config(TINY, 0, "finance")


def test_task_domain_and_texts():
    assert dp.task_domain("clinical") == dp.task_domain("clinical_specialty") == "clinical"
    with pytest.raises(ValueError, match="Unknown task"):
        dp.task_domain("astrology")
    texts = dp.evaluation_texts(TINY, seed=0)
    assert set(texts) == {"general", "clinical", "clinical_task"}
    assert all(len(sample) == TINY.dapt_eval_texts for sample in texts.values())
    assert set(dp.evaluation_texts(TINY, seed=0, domain="general")) == {"general"}
    assert len(dp.task_texts("clinical", TINY)) == TINY.task_train


def test_unseen_drugs_are_drugs_with_a_class():
    classes = dp.entity_classes()
    unseen = dp.unseen_entities("clinical", seed=0)
    assert unseen and set(unseen) <= set(classes)
    assert all(
        name.endswith(
            (
                "olol",
                "pril",
                "terol",
                "lukast",
                "prazole",
                "tidine",
                "triptan",
                "racetam",
                "gliptin",
                "glitazone",
                "mab",
                "citinib",
            )
        )
        for name in classes
    )


def test_neighbour_rate_is_one_for_clustered_vectors_and_low_for_mixed_ones():
    names = ["a1", "a2", "a3", "b1", "b2", "b3"]
    classes = {n: n[0] for n in names}
    clustered = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.95, 0.05], [0.0, 1.0], [0.1, 0.9], [0.05, 0.95]])
    assert dp.same_class_neighbour_rate(clustered, names, classes, ["a1", "b1"], k=2) == 1.0
    mixed = clustered[[0, 3, 1, 4, 2, 5]]  # a-names now carry b-vectors and the other way round, in turn
    assert dp.same_class_neighbour_rate(mixed, names, classes, ["a1", "b1"], k=2) <= 0.5
    assert dp.nearest_neighbours(clustered, names, "a1", k=1)[0][0] == "a3"


def test_kept_gain():
    assert dp.kept_gain(100.0, 10.0, 10.0) == pytest.approx(1.0)
    assert dp.kept_gain(100.0, 10.0, 100.0) == pytest.approx(0.0)
    assert dp.kept_gain(100.0, 10.0, math.sqrt(1000.0)) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        dp.kept_gain(10.0, 20.0, 15.0)


def test_contextual_vectors_have_one_row_per_word(cache_dir):
    tokenizer = artifacts.get_tokenizer(TINY, seed=0, verbose=False)
    model = artifacts.get_general_bert(TINY, seed=0, verbose=False)
    words = ["bravinolol", "adalizumab", "rimoprazole"]
    vectors = dp.contextual_vectors(model, tokenizer, words)
    assert vectors.shape == (len(words), TINY.hidden_size)
    assert torch.isfinite(vectors).all()


def test_fact_sentences_state_each_drugs_specialty_in_the_corpus_frame():
    truth = dp.drug_specialties()
    assert len(truth) == 48 and set(truth.values()) == set(
        dp.entity_classes("clinical", "drug_class", "specialty").values()
    )
    assert truth["bravinolol"] == "cardiology" and truth["adalizumab"] == "rheumatology"
    facts = dp.fact_sentences()
    assert len(facts) == len(truth) and "bravinolol is prescribed in cardiology clinics." in facts
    corpus = {t.lower() for t in load_corpus("clinical", TINY, 0)["text"]}
    assert corpus & set(facts), "the probe's frame must be the corpus's own sentence"


def test_mean_cosine_is_zero_for_orthogonal_rows_and_one_for_identical_ones():
    assert dp.mean_cosine(torch.eye(4)) == pytest.approx(0.0)
    assert dp.mean_cosine(torch.ones(3, 5)) == pytest.approx(1.0)


class _Oracle(torch.nn.Module):
    """Scores the right specialty of the drug in the input highest at every position (or the wrong one)."""

    def __init__(self, tokenizer, wrong: bool = False):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        specialties = sorted(set(dp.drug_specialties().values()))
        truth = dp.drug_specialties()
        self.target = {}
        for drug, specialty in truth.items():
            pick = specialties[(specialties.index(specialty) + wrong) % len(specialties)]
            self.target[tuple(tokenizer(drug, add_special_tokens=False)["input_ids"])] = (
                tokenizer.convert_tokens_to_ids(pick)
            )
        self.vocab = len(tokenizer)

    def forward(self, input_ids, **_):
        ids = input_ids[0].tolist()
        target = next(t for pieces, t in self.target.items() if ids[1 : 1 + len(pieces)] == list(pieces))
        logits = torch.zeros(1, len(ids), self.vocab)
        logits[..., target] = 1.0
        return types.SimpleNamespace(logits=logits)


def test_specialty_fill_in_accuracy_scores_an_oracle_and_a_liar():
    tokenizer = train_wordpiece(dp.fact_sentences() * 3, vocab_size=400)  # every drug and specialty a token
    drugs = list(dp.drug_specialties())
    assert dp.specialty_fill_in_accuracy(_Oracle(tokenizer), tokenizer, drugs) == 1.0
    assert dp.specialty_fill_in_accuracy(_Oracle(tokenizer, wrong=True), tokenizer, drugs) == 0.0
    everyday = train_wordpiece(["the teacher bought a lamp at the market."] * 3, vocab_size=100)
    with pytest.raises(ValueError, match="not single tokens"):
        dp.specialty_fill_in_accuracy(_Oracle(tokenizer), everyday, drugs)


def test_statement_counts_find_the_probed_statement_anywhere_in_a_text():
    texts = [
        "Bravinolol is prescribed in cardiology clinics.",
        "The patient denies wheezing; bravinolol is prescribed in cardiology clinics.",
        "Bravinolol was started at 20 mg once daily.",
        "Tesamolol is prescribed in cardiology clinics; xbravinolol is prescribed in nowhere.",
    ]
    assert dp.statement_counts(texts, ["bravinolol", "tesamolol", "koradolol"]) == {
        "bravinolol": 2,
        "tesamolol": 1,
        "koradolol": 0,
    }


class _Copier(torch.nn.Module):
    """Predicts the pronoun its cue word calls for (grandmother: she, uncle: he), or the other one."""

    def __init__(self, tokenizer, choices, answer_from_source: bool):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.ids = tokenizer.convert_tokens_to_ids(list(choices))
        self.cue = {
            tokenizer.convert_tokens_to_ids("grandmother"): self.ids[1],
            tokenizer.convert_tokens_to_ids("uncle"): self.ids[0],
        }
        self.vocab, self.right = len(tokenizer), answer_from_source
        self.config = types.SimpleNamespace(max_position_embeddings=64)

    def forward(self, input_ids, **_):
        ids = input_ids[0].tolist()
        truth = next(self.cue[i] for i in ids if i in self.cue)
        guess = truth if self.right else next(i for i in self.ids if i != truth)
        logits = torch.zeros(1, len(ids), self.vocab)
        logits[..., guess] = 1.0
        return types.SimpleNamespace(logits=logits)


def test_cloze_choice_accuracy_scores_a_model_that_reads_the_cue_and_one_that_does_not():
    texts = ["my grandmother said that she felt tired.", "my uncle said that he felt happy; he slept."]
    tokenizer = train_wordpiece(texts * 3, vocab_size=200)  # every word a token
    reader = _Copier(tokenizer, ("he", "she"), answer_from_source=True)
    assert dp.cloze_choice_accuracy(reader, tokenizer, texts, ("he", "she")) == (1.0, 3)
    contrarian = _Copier(tokenizer, ("he", "she"), answer_from_source=False)
    assert dp.cloze_choice_accuracy(contrarian, tokenizer, texts, ("he", "she")) == (0.0, 3)
    reader.config.max_position_embeddings = 8  # [CLS] my uncle said that he felt [SEP]: the second "he" is cut off
    assert dp.cloze_choice_accuracy(reader, tokenizer, texts[1:], ("he", "she")) == (1.0, 1)
    with pytest.raises(ValueError, match="nothing to score"):
        dp.cloze_choice_accuracy(reader, tokenizer, ["the teacher slept."], ("he", "she"))
    with pytest.raises(ValueError, match="single token"):
        dp.cloze_choice_accuracy(reader, tokenizer, texts, ("he", "zebra"))
