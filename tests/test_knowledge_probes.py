"""The probes of notebook 07 (course_utils.knowledge_probes): each scores a model built to pass or to fail it."""

from __future__ import annotations

import types

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from course_utils import knowledge_probes as probes
from course_utils.data import load_corpus
from course_utils.profiles import get_profile
from course_utils.tokenization import train_wordpiece
from course_utils.world import drug_specialties

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_bert(vocab_size: int) -> BertForMaskedLM:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    return BertForMaskedLM(config)


def test_a_words_vector_is_the_mean_hidden_state_of_its_pieces_over_the_frames():
    # a vocabulary that never saw the drug names, so each one falls apart into several pieces
    tokenizer = train_wordpiece([f.format("it") for f in probes.NEUTRAL_DRUG_FRAMES] * 3, vocab_size=120)
    model = _tiny_bert(len(tokenizer)).train()  # dropout on: the probe must switch it off, then back
    words = ["bravinolol", "adalizumab"]
    assert all(len(tokenizer.tokenize(w)) > 1 for w in words)

    expected = []
    with torch.no_grad():
        model.eval()
        for word in words:
            per_frame = []
            for frame in probes.NEUTRAL_DRUG_FRAMES:
                sentence = frame.format(word)
                encoded = tokenizer(sentence, return_offsets_mapping=True, return_tensors="pt")
                begin, end = sentence.index(word), sentence.index(word) + len(word)
                spans = encoded.pop("offset_mapping")[0].tolist()
                pieces = [i for i, (a, b) in enumerate(spans) if b > a and begin <= a and b <= end]
                hidden = model.bert(**encoded).last_hidden_state[0]  # (seq, hidden)
                per_frame.append(hidden[pieces].mean(0))
            expected.append(torch.stack(per_frame).mean(0))
        model.train()

    vectors = probes.contextual_vectors(model, tokenizer, words)
    assert model.training, "the probe gives the model back in the mode it had"
    torch.testing.assert_close(vectors, torch.stack(expected))
    one_frame = probes.contextual_vectors(model, tokenizer, words, frames=probes.NEUTRAL_DRUG_FRAMES[:1])
    assert not torch.allclose(one_frame, vectors), "the frames change the hidden states, so averaging them counts"


def test_neighbour_rate_is_one_for_clustered_vectors_and_low_for_mixed_ones():
    names = ["a1", "a2", "a3", "b1", "b2", "b3"]
    classes = {n: n[0] for n in names}
    clustered = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.95, 0.05], [0.0, 1.0], [0.1, 0.9], [0.05, 0.95]])
    assert probes.same_class_neighbour_rate(clustered, names, classes, ["a1", "b1"], k=2) == 1.0
    mixed = clustered[[0, 3, 1, 4, 2, 5]]  # a-names now carry b-vectors and the other way round, in turn
    assert probes.same_class_neighbour_rate(mixed, names, classes, ["a1", "b1"], k=2) <= 0.5
    assert probes.nearest_neighbours(clustered, names, "a1", k=1)[0][0] == "a3"


def test_mean_cosine_is_zero_for_orthogonal_rows_and_one_for_identical_ones():
    assert probes.mean_cosine(torch.eye(4)) == pytest.approx(0.0)
    assert probes.mean_cosine(torch.ones(3, 5)) == pytest.approx(1.0)


def test_fact_sentences_state_each_drugs_specialty_in_the_corpus_frame():
    truth = drug_specialties()
    facts = probes.fact_sentences()
    assert len(facts) == len(truth) and "bravinolol is prescribed in cardiology clinics." in facts
    corpus = {t.lower() for t in load_corpus("clinical", get_profile("fast", corpus_sentences=300), 0)["text"]}
    assert corpus & set(facts), "the probe's frame must be the corpus's own sentence"


class _Oracle(torch.nn.Module):
    """Scores the right specialty of the drug in the input highest at every position (or the wrong one)."""

    def __init__(self, tokenizer, wrong: bool = False):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        specialties = sorted(set(drug_specialties().values()))
        truth = drug_specialties()
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
    tokenizer = train_wordpiece(probes.fact_sentences() * 3, vocab_size=400)  # every drug and specialty a token
    drugs = list(drug_specialties())
    assert probes.specialty_fill_in_accuracy(_Oracle(tokenizer), tokenizer, drugs) == 1.0
    assert probes.specialty_fill_in_accuracy(_Oracle(tokenizer, wrong=True), tokenizer, drugs) == 0.0
    everyday = train_wordpiece(["the teacher bought a lamp at the market."] * 3, vocab_size=100)
    with pytest.raises(ValueError, match="not single tokens"):
        probes.specialty_fill_in_accuracy(_Oracle(tokenizer), everyday, drugs)


def test_statement_counts_find_the_probed_statement_anywhere_in_a_text():
    texts = [
        "Bravinolol is prescribed in cardiology clinics.",
        "The patient denies wheezing; bravinolol is prescribed in cardiology clinics.",
        "Bravinolol was started at 20 mg once daily.",
        "Tesamolol is prescribed in cardiology clinics; xbravinolol is prescribed in nowhere.",
    ]
    assert probes.statement_counts(texts, ["bravinolol", "tesamolol", "koradolol"]) == {
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
    assert probes.cloze_choice_accuracy(reader, tokenizer, texts, ("he", "she")) == (1.0, 3)
    contrarian = _Copier(tokenizer, ("he", "she"), answer_from_source=False)
    assert probes.cloze_choice_accuracy(contrarian, tokenizer, texts, ("he", "she")) == (0.0, 3)
    reader.config.max_position_embeddings = 8  # [CLS] my uncle said that he felt [SEP]: the second "he" is cut off
    assert probes.cloze_choice_accuracy(reader, tokenizer, texts[1:], ("he", "she")) == (1.0, 1)
    with pytest.raises(ValueError, match="nothing to score"):
        probes.cloze_choice_accuracy(reader, tokenizer, ["the teacher slept."], ("he", "she"))
    with pytest.raises(ValueError, match="single token"):
        probes.cloze_choice_accuracy(reader, tokenizer, texts, ("he", "zebra"))
