"""Fine-tuning strategies: which weights of a classifier train, and the small modules some add.

Every strategy starts from the same ``SequenceClassifier`` and ends with the same call to
``finetuning.train_classifier``; only the set of parameters with ``requires_grad`` differs. So a
comparison between strategies changes what trains and nothing else:

* ``full``: everything trains.
* ``head_only``: the encoder is frozen; only the linear head trains (a linear probe).
* ``top_k``: the top ``k`` encoder layers and the head train, the rest stays frozen.
* ``bitfit``: only the bias vectors (and the head) train (Ben Zaken et al., 2022).
* ``adapter``: a bottleneck adapter after each layer's attention and feed-forward output, plus
  the layer norms and the head (Houlsby et al., 2019); the pretrained weights stay frozen.
* ``lora``: a low-rank update ``B @ A`` beside every linear layer of the encoder (Hu et al., 2021).

Adapters and LoRA save only what trained (``save_trainable``), a small file next to a base model
that many tasks can share.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from course_utils.classifier import SequenceClassifier, freeze_encoder

STRATEGIES = ("full", "head_only", "top_k", "bitfit", "adapter", "lora")
#: The layers LoRA adapts by default: every linear layer of a BERT encoder (attention query, key,
#: value and output, and both feed-forward layers), as QLoRA recommends. Adapting only query and
#: value (the LoRA paper's and peft's default for BERT) trails full fine-tuning further here.
LORA_TARGETS = ("query", "key", "value", "dense")
#: Rank and scale: at the course's width (128) rank 2 on every linear layer trains 1.5% of the model.
#: The update is scaled by alpha / r = 4; at 2 (alpha = 2r, a common default) LoRA scored lower on
#: validation in all three seeds checked and trailed full fine-tuning by up to 4 points on test.
LORA_RANK, LORA_ALPHA = 2, 8.0
#: Width of a bottleneck adapter's middle layer.
ADAPTER_BOTTLENECK = 16


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update: ``base(x) + (alpha / r) * x A^T B^T``.

    ``A`` (r, in) starts random and ``B`` (out, r) at zero, so at initialisation the layer computes
    exactly what the base layer does; training moves only ``r * (in + out)`` numbers.
    """

    def __init__(self, base: nn.Linear, r: int = LORA_RANK, alpha: float = LORA_ALPHA, dropout: float = 0.0):
        super().__init__()
        if r < 1:
            raise ValueError(f"The LoRA rank r must be a positive integer, got {r!r}.")
        self.base = base
        self.base.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        like = {"device": base.weight.device, "dtype": base.weight.dtype}  # where the wrapped layer lives
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, **like))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, **like))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # the same start as peft's
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (..., in)
        update = self.dropout(x) @ self.lora_A.T @ self.lora_B.T  # (..., r) then (..., out)
        return self.base(x) + self.scaling * update

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """One ``nn.Linear`` with the update folded into its weight: no extra cost at inference."""
        like = {"device": self.base.weight.device, "dtype": self.base.weight.dtype}
        layer = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None, **like)
        layer.weight.copy_(self.base.weight + self.scaling * self.lora_B @ self.lora_A)
        if self.base.bias is not None:
            layer.bias.copy_(self.base.bias)
        return layer


class BottleneckAdapter(nn.Module):
    """``h + up(gelu(down(h)))``: a small residual MLP through a ``bottleneck`` of a few dimensions.

    ``up`` starts at zero, so an inserted adapter is the identity until it trains and the
    pretrained network's outputs are unchanged at the start.
    """

    def __init__(
        self,
        hidden: int,
        bottleneck: int = ADAPTER_BOTTLENECK,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.down = nn.Linear(hidden, bottleneck, device=device, dtype=dtype)
        self.up = nn.Linear(bottleneck, hidden, device=device, dtype=dtype)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # h: (batch, seq, hidden)
        return h + self.up(nn.functional.gelu(self.down(h)))  # (batch, seq, hidden)


def _freeze_all_but_head(model: SequenceClassifier) -> None:
    model.requires_grad_(True)
    freeze_encoder(model)


def add_lora(
    model: SequenceClassifier,
    r: int = LORA_RANK,
    alpha: float = LORA_ALPHA,
    targets: tuple[str, ...] = LORA_TARGETS,
    dropout: float = 0.0,
) -> SequenceClassifier:
    """Freeze the encoder and wrap every ``nn.Linear`` named in ``targets`` in a ``LoRALinear``."""
    _freeze_all_but_head(model)
    found = 0
    for module in list(model.encoder.modules()):
        for name, child in list(module.named_children()):
            if name in targets and isinstance(child, nn.Linear):
                setattr(module, name, LoRALinear(child, r=r, alpha=alpha, dropout=dropout))
                found += 1
    if not found:
        raise ValueError(f"No nn.Linear named {targets} in the encoder; name the layers LoRA should adapt.")
    return model


def add_adapters(model: SequenceClassifier, bottleneck: int = ADAPTER_BOTTLENECK) -> SequenceClassifier:
    """Freeze the encoder; put an adapter after each layer's attention output and feed-forward output.

    The adapter sits where Houlsby et al. put it: on the sublayer's projected output, before the
    residual connection and layer norm. The layer norms train too, as in their paper.
    """
    _freeze_all_but_head(model)
    hidden = model.config.hidden_size
    for layer in model.encoder.encoder.layer:
        for block in (layer.attention.output, layer.output):  # each has .dense then dropout + LayerNorm
            like = {"device": block.dense.weight.device, "dtype": block.dense.weight.dtype}
            block.dense = nn.Sequential(block.dense, BottleneckAdapter(hidden, bottleneck, **like))
            block.LayerNorm.requires_grad_(True)
    return model


def apply_strategy(model: SequenceClassifier, strategy: str, **options: float) -> SequenceClassifier:
    """Set which parameters of ``model`` train (and insert modules) for one of ``STRATEGIES``.

    Options: ``k`` for ``top_k`` (default 1); ``r``, ``alpha`` for ``lora`` (default ``LORA_RANK``,
    ``LORA_ALPHA``); ``bottleneck`` for ``adapter`` (default ``ADAPTER_BOTTLENECK``). The head
    always trains. Returns the same model, changed in place.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}; choose one of {STRATEGIES}.")
    if strategy == "full":
        model.requires_grad_(True)
    elif strategy == "head_only":
        _freeze_all_but_head(model)
    elif strategy == "top_k":
        k = int(options.get("k", 1))
        layers = model.encoder.encoder.layer
        if not 1 <= k <= len(layers):
            raise ValueError(f"top_k needs 1 <= k <= {len(layers)} (the encoder's layers), got k={k}.")
        _freeze_all_but_head(model)
        for layer in layers[len(layers) - k :]:
            layer.requires_grad_(True)
    elif strategy == "bitfit":
        _freeze_all_but_head(model)
        for name, parameter in model.encoder.named_parameters():
            if name.endswith(".bias"):
                parameter.requires_grad_(True)
    elif strategy == "adapter":
        add_adapters(model, bottleneck=int(options.get("bottleneck", ADAPTER_BOTTLENECK)))
    else:
        add_lora(model, r=int(options.get("r", LORA_RANK)), alpha=float(options.get("alpha", LORA_ALPHA)))
    return model


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train, by name: all a strategy needs to store beside its base model."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save_trainable(model: nn.Module, path: str | Path) -> Path:
    """Write the trainable parameters to a safetensors file (written whole, then renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file(trainable_state(model), str(partial))
    partial.replace(path)
    return path


def load_trainable(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a ``save_trainable`` file into a model built with the same strategy; a clear error otherwise."""
    saved = load_file(str(path))
    expected = trainable_state(model)
    if set(saved) != set(expected):
        missing, extra = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
        raise ValueError(
            f"{path} does not fit this model (missing {missing[:3]}, unexpected {extra[:3]}): "
            "apply the same strategy, with the same options, before loading."
        )
    for name, tensor in saved.items():
        if tensor.shape != expected[name].shape:
            raise ValueError(
                f"{path}: {name} has shape {tuple(tensor.shape)}, the model {tuple(expected[name].shape)}."
            )
    model.load_state_dict(saved, strict=False)
    return model
