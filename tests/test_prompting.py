"""Cloze prompts and a verbaliser as a classifier (course_utils.prompting), on a word-level toy vocabulary."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

from course_utils.prompting import cloze_logits, encode_prompted, prompt_fine_tune, verbaliser_ids

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "it", "is", "red", "blue", "apple", "sky", "the", "and"]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(WORDS)}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def tiny_mlm(seed: int = 0) -> BertForMaskedLM:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return BertForMaskedLM(config).eval()


def test_the_prompt_is_kept_whole_and_the_note_is_cut(tokenizer):
    batch = encode_prompted(tokenizer, ["the apple " * 10, "the sky"], "it is [MASK] .", max_length=12)
    assert batch["input_ids"].shape == (2, 12) and "token_type_ids" not in batch
    for row in batch["input_ids"].tolist():
        assert row.count(tokenizer.mask_token_id) == 1
    long = tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    assert long[-6:] == ["[SEP]", "it", "is", "[MASK]", ".", "[SEP]"]  # the prompt survives, the note was cut


def test_cloze_logits_are_the_masked_lm_scores_of_the_label_words(tokenizer):
    mlm = tiny_mlm()
    scores = cloze_logits(
        mlm, tokenizer, ["the apple", "the sky and the sky"], "it is [MASK] .", ["red", "blue"], max_length=16
    )
    assert scores.shape == (2, 2)
    ids = tokenizer("the sky and the sky", "it is [MASK] .", return_tensors="pt", return_token_type_ids=False)
    position = ids["input_ids"][0].tolist().index(tokenizer.mask_token_id)
    with torch.no_grad():
        direct = mlm(**ids).logits[0, position, [WORDS.index("red"), WORDS.index("blue")]]
    torch.testing.assert_close(scores[1], direct, rtol=1e-5, atol=1e-5)  # padding in the batch changes nothing


def test_bad_prompts_and_verbalisers_are_refused(tokenizer):
    with pytest.raises(ValueError, match="exactly once"):
        encode_prompted(tokenizer, ["the sky"], "it is red .", max_length=16)
    with pytest.raises(ValueError, match="single tokens"):
        verbaliser_ids(tokenizer, ["red", "crimson"])
    with pytest.raises(ValueError, match="same length"):
        prompt_fine_tune(
            tiny_mlm(),
            tokenizer,
            ["the sky"],
            [0, 1],
            "it is [MASK] .",
            ["red", "blue"],
            max_length=16,
            lr=1e-3,
            steps=1,
        )


def test_prompt_based_fine_tuning_learns_a_task_from_the_label_words(tokenizer):
    texts = ["the apple", "the sky", "the apple and the apple", "the sky and the sky"] * 4
    labels = [0, 1, 0, 1] * 4
    mlm = tiny_mlm(seed=1)
    history = prompt_fine_tune(
        mlm,
        tokenizer,
        texts,
        labels,
        "it is [MASK] .",
        ["red", "blue"],
        max_length=16,
        lr=3e-3,
        steps=80,
        batch_size=8,
        progress=False,
    )
    assert len(history) == 80 and history[-1]["loss"] < history[0]["loss"] / 5
    predicted = cloze_logits(mlm, tokenizer, texts, "it is [MASK] .", ["red", "blue"], max_length=16).argmax(-1)
    assert predicted.tolist() == labels
    assert not mlm.training
