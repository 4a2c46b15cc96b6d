"""Attention and a BERT-style Transformer encoder, written from scratch (notebooks 02 and 03).

Notebook 02 builds :func:`scaled_dot_product_attention` and :class:`MultiHeadAttention` step by step;
notebook 03 adds :class:`Embeddings`, :class:`FeedForward`, :class:`EncoderLayer` and :class:`Encoder`
and shows that, given the same weights (:func:`load_bert_encoder`), they compute exactly what Hugging Face's
``BertModel`` computes. :class:`EncoderClassifier` is the small attention classifier whose heatmaps notebook 02
reads. The teaching notebooks check their step-by-step versions against these; the BERT models that
notebooks 06 and 07 pretrain are Hugging Face's ``BertForMaskedLM``, whose ``.bert`` encoder
:func:`load_bert_encoder` loads into :class:`Encoder` (notebook 03 shows the outputs agree).

Shapes use these letters: ``B`` batch, ``H`` heads, ``T`` tokens (``Tq`` queries, ``Tk`` keys),
``D`` hidden size, ``Dh = D / H`` per-head size, ``I`` feed-forward width, ``V`` vocabulary size.
Masks follow PyTorch's convention: a boolean mask is ``True`` where a query *may* attend to a key; a
float mask is *added* to the scores (``0`` keeps a position, ``-inf`` removes it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --------------------------------------------------------------------------------------------
# Masks and attention (notebook 02)
# --------------------------------------------------------------------------------------------


def causal_mask(q_len: int, k_len: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """Boolean ``(Tq, Tk)`` mask that lets query ``i`` see keys ``0..i`` only.

    A language model that predicts the next token must not read it; the lower triangle is the
    part of the score matrix that only looks back. Rectangular masks are aligned at the top left,
    as PyTorch's ``is_causal=True`` aligns them.
    """
    k_len = q_len if k_len is None else k_len
    ones = torch.ones(q_len, k_len, dtype=torch.bool, device=device)  # (Tq, Tk)
    return torch.tril(ones)  # (Tq, Tk)


def padding_mask(attention_mask: Tensor) -> Tensor:
    """Turn a tokenizer's ``(B, T)`` 0/1 ``attention_mask`` into a ``(B, 1, 1, T)`` boolean key mask.

    Batches pad short sentences to a common length; the padded keys must get zero attention, while
    the singleton dimensions broadcast the same key mask over every head and every query.
    """
    return attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)


def masked_softmax(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """Softmax over the last axis that gives masked-out positions exactly zero weight.

    ``mask`` is boolean (``True`` keeps) or additive float; either broadcasts against ``scores``.
    Setting a score to ``-inf`` before the softmax is what makes its weight ``exp(-inf) = 0``.

    A row whose every score is ``-inf`` (a query that may see no key at all) would be ``0 / 0 = NaN``;
    such a query reads nothing, so its weights are all **zero** (its attention output is the zero
    vector), as PyTorch's ``scaled_dot_product_attention`` returns too. Its gradient is zero as well,
    so no NaN reaches the rest of the model. Other rows sum to 1.
    """
    if mask is not None and mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))  # (..., Tq, Tk)
    elif mask is not None:
        scores = scores + mask  # (..., Tq, Tk)
    nothing_to_see = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (..., Tq, 1): fully masked rows
    scores = scores.masked_fill(nothing_to_see, 0.0)  # (..., Tq, Tk): finite, so the softmax is not 0 / 0
    weights = torch.softmax(scores, dim=-1)  # (..., Tq, Tk), each row sums to 1
    return weights.masked_fill(nothing_to_see, 0.0)  # (..., Tq, Tk): fully masked rows are all zero


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """``softmax(Q Kᵀ / √d_k + mask) V``, returning the output *and* the attention weights.

    The same arguments as ``torch.nn.functional.scaled_dot_product_attention`` so the two can be
    compared call for call; unlike the fused kernel it also returns the weights, which is what
    heatmaps and interpretability need. Dividing by √d_k keeps the scores' spread independent of
    the key size, so the softmax does not saturate (notebook 02 measures why that matters).

    Shapes: ``query (..., Tq, Dk)``, ``key (..., Tk, Dk)``, ``value (..., Tk, Dv)`` →
    output ``(..., Tq, Dv)``, weights ``(..., Tq, Tk)``.
    """
    d_k = query.size(-1)
    scale = 1.0 / math.sqrt(d_k) if scale is None else scale
    scores = query @ key.transpose(-2, -1) * scale  # (..., Tq, Tk)
    if is_causal:
        keep = causal_mask(query.size(-2), key.size(-2), device=query.device)  # (Tq, Tk)
        scores = scores.masked_fill(~keep, float("-inf"))  # (..., Tq, Tk)
    weights = masked_softmax(scores, attn_mask)  # (..., Tq, Tk)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)  # (..., Tq, Tk)
    return weights @ value, weights  # (..., Tq, Dv), (..., Tq, Tk)


class MultiHeadAttention(nn.Module):
    """``H`` attention heads in parallel, each on its own ``Dh = D / H`` slice of learned projections.

    One big ``D × D`` projection per role (query, key, value) is split into heads by a reshape, which
    is the same arithmetic as ``H`` small projections but one matrix multiply instead of ``H``. The
    heads' outputs are concatenated and mixed by the output projection. The weights of the last
    forward pass are kept in ``last_weights`` (detached) so heatmaps can read them.
    """

    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be a multiple of num_heads ({num_heads}).")
        self.num_heads = num_heads
        self.head_size = hidden_size // num_heads
        self.query = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.key = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.value = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.out = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.dropout = dropout
        self.last_weights: Tensor | None = None

    def split_heads(self, x: Tensor) -> Tensor:
        """``(B, T, D)`` → ``(B, H, T, Dh)``: give each head its own slice of the hidden vector."""
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_size).transpose(1, 2)  # (B, H, T, Dh)

    @staticmethod
    def merge_heads(x: Tensor) -> Tensor:
        """``(B, H, T, Dh)`` → ``(B, T, D)``: concatenate the heads' outputs again."""
        b, h, t, dh = x.shape
        return x.transpose(1, 2).reshape(b, t, h * dh)  # (B, T, D)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        """Self-attention over ``x (B, Tq, D)``, or cross-attention to ``context (B, Tk, D)`` if given.

        ``attn_mask`` broadcasts to ``(B, H, Tq, Tk)``: a ``(B, 1, 1, Tk)`` padding mask from
        :func:`padding_mask`, a ``(Tq, Tk)`` mask shared by the batch, or a float mask.
        """
        context = x if context is None else context
        q = self.split_heads(self.query(x))  # (B, H, Tq, Dh)
        k = self.split_heads(self.key(context))  # (B, H, Tk, Dh)
        v = self.split_heads(self.value(context))  # (B, H, Tk, Dh)
        p = self.dropout if self.training else 0.0
        heads, weights = scaled_dot_product_attention(q, k, v, attn_mask, is_causal, p)  # (B, H, Tq, Dh)
        self.last_weights = weights.detach()  # (B, H, Tq, Tk)
        return self.out(self.merge_heads(heads))  # (B, Tq, D)


# --------------------------------------------------------------------------------------------
# The encoder (notebook 03)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderConfig:
    """Every size of a BERT-style encoder; the defaults are BERT-base's."""

    vocab_size: int = 30_522  # rows of the token-embedding table
    max_len: int = 512  # learned positions: the longest input the model can read
    hidden_size: int = 768  # D, the width of every token vector
    num_layers: int = 12  # encoder layers stacked on top of each other
    num_heads: int = 12  # attention heads per layer (D must be a multiple)
    intermediate_size: int = 3_072  # I, the feed-forward block's inner width (4 D in BERT)
    type_vocab_size: int = 2  # segment embeddings (sentence A / sentence B)
    dropout: float = 0.1  # on embeddings and on each sublayer's output
    attention_dropout: float = 0.1  # on the attention weights
    layer_norm_eps: float = 1e-12  # BERT's epsilon; PyTorch's default is 1e-5
    pre_ln: bool = False  # False: BERT's post-LN; True: normalise *before* each sublayer
    pad_token_id: int = 0  # its embedding row gets no gradient
    initializer_range: float | None = None  # None: PyTorch's default start; 0.02: BERT's N(0, 0.02)

    @classmethod
    def from_profile(cls, profile: Any, **overrides: Any) -> EncoderConfig:
        """The course's tiny encoder: sizes read from a ``Profile`` (``course.profile``)."""
        base = cls(
            vocab_size=profile.vocab_size,
            max_len=profile.max_seq_len,
            hidden_size=profile.hidden_size,
            num_layers=profile.num_layers,
            num_heads=profile.num_heads,
            intermediate_size=profile.intermediate_size,
        )
        return replace(base, **overrides)

    @classmethod
    def from_bert_config(cls, config: Any) -> EncoderConfig:
        """The same sizes as a Hugging Face ``BertConfig``, so its weights fit one to one."""
        if config.hidden_act != "gelu":
            raise ValueError(f"Only BERT's exact GELU is implemented, not {config.hidden_act!r}.")
        return cls(
            vocab_size=config.vocab_size,
            max_len=config.max_position_embeddings,
            hidden_size=config.hidden_size,
            num_layers=config.num_hidden_layers,
            num_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            type_vocab_size=config.type_vocab_size,
            dropout=config.hidden_dropout_prob,
            attention_dropout=config.attention_probs_dropout_prob,
            layer_norm_eps=config.layer_norm_eps,
            pad_token_id=config.pad_token_id,
            initializer_range=config.initializer_range,
        )


@torch.no_grad()
def init_bert_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation, for ``module.apply``: weights from N(0, std²), biases 0, layer norms 1 and 0.

    PyTorch's own defaults differ (``nn.Linear`` draws uniformly with a scale of ``1/√fan_in``,
    ``nn.Embedding`` from N(0, 1)); BERT, and Hugging Face's ``BertModel``, start every linear
    layer and embedding table from a normal distribution with standard deviation
    ``initializer_range`` = 0.02, and the padding token's embedding row at zero.
    """
    if isinstance(module, nn.Linear):
        module.weight.normal_(0.0, std)
        if module.bias is not None:
            module.bias.zero_()
    elif isinstance(module, nn.Embedding):
        module.weight.normal_(0.0, std)
        if module.padding_idx is not None:
            module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        module.weight.fill_(1.0)
        module.bias.zero_()


class Embeddings(nn.Module):
    """Token + position + segment embeddings, then layer norm and dropout (BERT's input layer).

    Attention itself is blind to order (it sums over keys), so each position gets a learned vector
    added to its token's vector; that is the only place word order enters the model.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.tokens = nn.Embedding(config.vocab_size, d, padding_idx=config.pad_token_id)
        self.positions = nn.Embedding(config.max_len, d)
        self.segments = nn.Embedding(config.type_vocab_size, d)
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """``input_ids (B, T)`` → ``(B, T, D)``."""
        t = input_ids.size(1)
        if t > self.positions.num_embeddings:
            raise ValueError(f"Input of {t} tokens is longer than the {self.positions.num_embeddings} positions.")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)  # (B, T)
        pos = torch.arange(t, device=input_ids.device)  # (T,)
        x = self.tokens(input_ids) + self.segments(token_type_ids) + self.positions(pos)  # (B, T, D)
        return self.dropout(self.norm(x))  # (B, T, D)


class FeedForward(nn.Module):
    """Position-wise MLP ``D → I → D`` with GELU: the same two layers applied to every token.

    Attention mixes information *across* tokens; this block transforms each token on its own, and
    holds about two thirds of a layer's parameters.
    """

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.up = nn.Linear(hidden_size, intermediate_size)
        self.down = nn.Linear(intermediate_size, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, D)`` → ``(B, T, D)``."""
        return self.down(F.gelu(self.up(x)))  # (B, T, I) inside, (B, T, D) out


class EncoderLayer(nn.Module):
    """Self-attention and feed-forward sublayers, each wrapped in dropout, a residual and a layer norm.

    Post-LN (BERT, ``pre_ln=False``): ``x = norm(x + sublayer(x))``. Pre-LN (``pre_ln=True``):
    ``x = x + sublayer(norm(x))``, which leaves an identity path from input to output and trains
    deep stacks more stably; notebook 03 compares the two.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.pre_ln = config.pre_ln
        self.attention = MultiHeadAttention(d, config.num_heads, config.attention_dropout)
        self.attention_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(d, config.intermediate_size)
        self.feed_forward_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """``x (B, T, D)`` and a mask broadcastable to ``(B, H, T, T)`` → ``(B, T, D)``."""
        if self.pre_ln:
            x = x + self.dropout(self.attention(self.attention_norm(x), attn_mask=attn_mask))  # (B, T, D)
            return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))  # (B, T, D)
        x = self.attention_norm(x + self.dropout(self.attention(x, attn_mask=attn_mask)))  # (B, T, D)
        return self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))  # (B, T, D)


class Encoder(nn.Module):
    """Embeddings and a stack of encoder layers: token ids in, one contextual vector per token out.

    By default its parameters start from PyTorch's defaults, not from BERT's N(0, 0.02): the
    notebooks either load trained BERT weights into it (then the start does not matter) or train it
    from scratch in small experiments tuned with that start. ``initializer_range=0.02`` starts it as
    BERT does (:func:`init_bert_weights`).
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_layers))
        # Pre-LN layers add to an un-normalised residual stream, so it gets one norm at the very end.
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.pre_ln else None
        if config.initializer_range is not None:  # BERT's start instead of PyTorch's defaults
            self.apply(lambda module: init_bert_weights(module, config.initializer_range))

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        """``input_ids (B, T)``, optional 0/1 ``attention_mask (B, T)`` → hidden states ``(B, T, D)``."""
        mask = None if attention_mask is None else padding_mask(attention_mask)  # (B, 1, 1, T)
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, D)
        for layer in self.layers:
            x = layer(x, mask)  # (B, T, D)
        return x if self.final_norm is None else self.final_norm(x)  # (B, T, D)

    def attention_weights(self) -> list[Tensor]:
        """Each layer's attention weights ``(B, H, T, T)`` from the last forward pass."""
        return [layer.attention.last_weights for layer in self.layers]


class EncoderClassifier(nn.Module):
    """An :class:`Encoder` that classifies a sequence from its first token (``[CLS]``)'s final vector.

    Only the first position feeds the classifier, so everything the model needs about the sentence
    must reach it through attention; that makes its attention weights worth looking at.
    """

    def __init__(self, config: EncoderConfig, num_labels: int) -> None:
        super().__init__()
        self.encoder = Encoder(config)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, num_labels)
        if config.initializer_range is not None:
            init_bert_weights(self.head, config.initializer_range)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """``input_ids (B, T)`` → logits ``(B, num_labels)``."""
        hidden = self.encoder(input_ids, attention_mask)  # (B, T, D)
        return self.head(self.dropout(hidden[:, 0]))  # (B, num_labels)


# --------------------------------------------------------------------------------------------
# Loading weights from PyTorch / Hugging Face, and counting parameters by hand
# --------------------------------------------------------------------------------------------


def _copy_linear(dst: nn.Linear, weight: Tensor, bias: Tensor | None) -> None:
    dst.weight.copy_(weight)
    if bias is not None:
        dst.bias.copy_(bias)


@torch.no_grad()
def load_torch_mha(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> MultiHeadAttention:
    """Copy an ``nn.MultiheadAttention``'s weights into ``ours`` (it stacks Q, K, V in one matrix)."""
    if not theirs._qkv_same_embed_dim:
        raise ValueError("Only nn.MultiheadAttention with kdim == vdim == embed_dim is supported.")
    w_q, w_k, w_v = theirs.in_proj_weight.chunk(3)  # 3 × (D, D)
    b_q, b_k, b_v = theirs.in_proj_bias.chunk(3) if theirs.in_proj_bias is not None else (None,) * 3
    _copy_linear(ours.query, w_q, b_q)
    _copy_linear(ours.key, w_k, b_k)
    _copy_linear(ours.value, w_v, b_v)
    _copy_linear(ours.out, theirs.out_proj.weight, theirs.out_proj.bias)
    return ours


@torch.no_grad()
def load_bert_layer(ours: EncoderLayer, theirs: nn.Module) -> EncoderLayer:
    """Copy a Hugging Face ``BertLayer``'s weights into ``ours``: the names differ, the maths does not."""
    if ours.pre_ln:
        raise ValueError("BERT is post-LN; build the layer with pre_ln=False to load its weights.")
    attn, out = theirs.attention.self, theirs.attention.output
    for name in ("query", "key", "value"):
        src = getattr(attn, name)
        _copy_linear(getattr(ours.attention, name), src.weight, src.bias)
    _copy_linear(ours.attention.out, out.dense.weight, out.dense.bias)
    ours.attention_norm.load_state_dict(out.LayerNorm.state_dict())
    _copy_linear(ours.feed_forward.up, theirs.intermediate.dense.weight, theirs.intermediate.dense.bias)
    _copy_linear(ours.feed_forward.down, theirs.output.dense.weight, theirs.output.dense.bias)
    ours.feed_forward_norm.load_state_dict(theirs.output.LayerNorm.state_dict())
    return ours


@torch.no_grad()
def load_bert_encoder(ours: Encoder, theirs: nn.Module) -> Encoder:
    """Copy a Hugging Face ``BertModel``'s embeddings and layers into ``ours`` (the pooler is not used)."""
    if len(ours.layers) != len(theirs.encoder.layer):
        raise ValueError(f"Layer count differs: {len(ours.layers)} here, {len(theirs.encoder.layer)} in the model.")
    emb = theirs.embeddings
    ours.embeddings.tokens.weight.copy_(emb.word_embeddings.weight)
    ours.embeddings.positions.weight.copy_(emb.position_embeddings.weight)
    ours.embeddings.segments.weight.copy_(emb.token_type_embeddings.weight)
    ours.embeddings.norm.load_state_dict(emb.LayerNorm.state_dict())
    for mine, hers in zip(ours.layers, theirs.encoder.layer, strict=True):
        load_bert_layer(mine, hers)
    return ours


def parameter_formula(config: EncoderConfig, pooler: bool = False) -> dict[str, int]:
    """Parameter count of :class:`Encoder` by hand, split by part; ``total`` is their sum.

    With ``D`` hidden, ``I`` intermediate, ``L`` layers: embeddings ``(V + P + S) D + 2D`` (tables and
    their norm); per layer, attention ``4(D² + D) + 2D`` (Q, K, V, output and a norm) and feed-forward
    ``2 D I + I + D + 2D``. ``pooler=True`` adds BERT's ``D² + D`` pooler so the total matches
    ``BertModel``. A pre-LN encoder has one more norm (``2D``) at the end.
    """
    d, i, n = config.hidden_size, config.intermediate_size, config.num_layers
    parts = {
        "embeddings": (config.vocab_size + config.max_len + config.type_vocab_size) * d + 2 * d,
        "attention": n * (4 * (d * d + d) + 2 * d),
        "feed_forward": n * (2 * d * i + i + d + 2 * d),
        "final_norm": 2 * d if config.pre_ln else 0,
        "pooler": d * d + d if pooler else 0,
    }
    parts["total"] = sum(parts.values())
    return parts
