"""Unit tests of course_utils.transformer: the from-scratch pieces agree with PyTorch and Hugging Face."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel

from course_utils.transformer import (
    Encoder,
    EncoderClassifier,
    EncoderConfig,
    EncoderLayer,
    MultiHeadAttention,
    causal_mask,
    load_bert_encoder,
    load_bert_layer,
    load_torch_mha,
    masked_softmax,
    padding_mask,
    parameter_formula,
    scaled_dot_product_attention,
)


def _qkv(seed: int = 0, b: int = 2, h: int = 3, tq: int = 5, tk: int = 7, d: int = 8) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, h, t, d, generator=g) for t in (tq, tk, tk))


def _tiny_bert(num_layers: int = 2) -> BertModel:
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=32,
        max_position_embeddings=20,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    return BertModel(config).eval()


def test_causal_mask_is_lower_triangle() -> None:
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert causal_mask(2, 4).shape == (2, 4)


def test_padding_mask_shape_and_values() -> None:
    mask = padding_mask(torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert mask.shape == (2, 1, 1, 3) and mask.dtype == torch.bool
    assert mask[1, 0, 0].tolist() == [True, False, False]


def test_masked_softmax_zeroes_masked_positions() -> None:
    scores = torch.randn(2, 4)
    weights = masked_softmax(scores, torch.tensor([True, True, False, True]))
    assert torch.all(weights[:, 2] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_a_fully_masked_row_gets_zero_weights_not_nan(kind: str) -> None:
    """A query that may see no key reads nothing: all-zero weights and output, as PyTorch's fused kernel gives."""
    q, k, v = _qkv(b=1, h=2, tq=3, tk=4)
    keep = torch.ones(1, 1, 3, 4, dtype=torch.bool)
    keep[..., 1, :] = False  # query 1 may attend to nothing
    mask = keep if kind == "bool" else torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))
    q.requires_grad_(True)
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert torch.equal(weights[..., 1, :], torch.zeros(1, 2, 4))
    assert torch.equal(out[..., 1, :], torch.zeros(1, 2, 8))
    torch.testing.assert_close(weights[..., [0, 2], :].sum(-1), torch.ones(1, 2, 2))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.equal(q.grad[..., 1, :], torch.zeros(1, 2, 8))
    assert torch.equal(masked_softmax(torch.randn(2, 3), torch.zeros(3, dtype=torch.bool)), torch.zeros(2, 3))


def test_bert_initialisation_is_opt_in_and_matches_bert() -> None:
    config = EncoderConfig(vocab_size=500, max_len=16, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128)
    torch.manual_seed(0)
    default = Encoder(config)  # PyTorch's defaults: embeddings from N(0, 1)
    assert default.embeddings.tokens.weight[1:].std() > 0.5
    torch.manual_seed(0)
    bert_like = Encoder(EncoderConfig(**{**config.__dict__, "initializer_range": 0.02}))
    for name, param in bert_like.named_parameters():
        if "norm" in name:
            expected = torch.ones_like(param) if name.endswith("weight") else torch.zeros_like(param)
            assert torch.equal(param, expected), name
        elif name.endswith("bias"):
            assert torch.equal(param, torch.zeros_like(param)), name
        else:
            assert abs(param.std().item() - 0.02) < 0.003, name
    assert torch.equal(bert_like.embeddings.tokens.weight[0], torch.zeros(64))  # the [PAD] row starts at zero
    assert EncoderConfig.from_bert_config(BertConfig()).initializer_range == 0.02


@pytest.mark.parametrize("kind", ["none", "bool", "float", "causal"])
def test_attention_matches_pytorch(kind: str) -> None:
    q, k, v = _qkv(tq=6, tk=6)
    mask = None
    if kind == "bool":
        mask = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(1)) > 0.3
        mask[..., 0] = True  # every query keeps at least one key
    elif kind == "float":
        mask = torch.randn(2, 3, 6, 6)
    ours, weights = scaled_dot_product_attention(q, k, v, mask, is_causal=kind == "causal")
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=kind == "causal")
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 6))


def test_rectangular_causal_matches_pytorch() -> None:
    q, k, v = _qkv(tq=3, tk=5)
    ours, _ = scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_multi_head_attention_matches_torch_module() -> None:
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    ours = load_torch_mha(MultiHeadAttention(16, 4), theirs).eval()
    x = torch.randn(2, 5, 16)
    keep = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]])
    expected, expected_w = theirs(x, x, x, key_padding_mask=~keep.bool(), average_attn_weights=False)
    torch.testing.assert_close(ours(x, attn_mask=padding_mask(keep)), expected)
    torch.testing.assert_close(ours.last_weights, expected_w)


def test_multi_head_attention_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="multiple"):
        MultiHeadAttention(10, 3)


def test_bert_layer_equivalence() -> None:
    bert = _tiny_bert()
    ours = load_bert_layer(EncoderLayer(EncoderConfig.from_bert_config(bert.config)), bert.encoder.layer[0]).eval()
    x = torch.randn(2, 6, 16)
    additive = torch.zeros(2, 1, 1, 6)
    additive[1, ..., 4:] = torch.finfo(torch.float32).min
    with torch.no_grad():
        torch.testing.assert_close(ours(x, additive), bert.encoder.layer[0](x, additive))


def test_bert_encoder_equivalence_with_padding() -> None:
    bert = _tiny_bert(num_layers=3)
    ours = load_bert_encoder(Encoder(EncoderConfig.from_bert_config(bert.config)), bert).eval()
    ids = torch.randint(1, 50, (3, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 2:] = 0
    ids = ids * mask  # padding token 0
    with torch.no_grad():
        expected = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(ours(ids, mask), expected)


def test_bert_layer_refuses_pre_ln() -> None:
    bert = _tiny_bert()
    config = EncoderConfig.from_bert_config(bert.config)
    with pytest.raises(ValueError, match="post-LN"):
        load_bert_layer(EncoderLayer(EncoderConfig(**{**config.__dict__, "pre_ln": True})), bert.encoder.layer[0])


@pytest.mark.parametrize("pre_ln", [False, True])
def test_parameter_formula_matches_numel(pre_ln: bool) -> None:
    config = EncoderConfig(vocab_size=100, max_len=32, hidden_size=24, num_layers=3, num_heads=4, intermediate_size=40)
    config = EncoderConfig(**{**config.__dict__, "pre_ln": pre_ln})
    model = Encoder(config)
    assert parameter_formula(config)["total"] == sum(p.numel() for p in model.parameters())


def test_parameter_formula_bert_base() -> None:
    with torch.device("meta"):
        bert = BertModel(BertConfig())
    formula = parameter_formula(EncoderConfig.from_bert_config(bert.config), pooler=True)
    assert formula["total"] == sum(p.numel() for p in bert.parameters()) == 109_482_240


def test_classifier_and_attention_weights() -> None:
    config = EncoderConfig(vocab_size=30, max_len=10, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32)
    model = EncoderClassifier(config, num_labels=3).eval()
    ids = torch.randint(1, 30, (4, 8))
    logits = model(ids, torch.ones_like(ids))
    assert logits.shape == (4, 3)
    weights = model.encoder.attention_weights()
    assert len(weights) == 2 and weights[0].shape == (4, 2, 8, 8)


def test_pre_ln_encoder_runs_and_differs() -> None:
    torch.manual_seed(0)
    config = EncoderConfig(vocab_size=30, max_len=10, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32)
    post = Encoder(config).eval()
    pre = Encoder(EncoderConfig(**{**config.__dict__, "pre_ln": True})).eval()
    pre.load_state_dict(post.state_dict(), strict=False)  # same weights; only the norm placement differs
    ids = torch.randint(1, 30, (2, 8))
    assert not torch.allclose(pre(ids), post(ids))


def test_too_long_input_is_a_clear_error() -> None:
    config = EncoderConfig(vocab_size=30, max_len=4, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=8)
    with pytest.raises(ValueError, match="longer than"):
        Encoder(config)(torch.ones(1, 5, dtype=torch.long))
