"""Real pretrained BERT checkpoints: a local folder, or a hub id when the hub can be reached.

Notebook 08's ``MODEL_NAME`` takes either. A folder must hold what ``save_pretrained`` writes for a
BERT masked LM: ``config.json``, weights as ``*.safetensors`` (pickled ``.bin`` weights are never
loaded) and a tokenizer (``tokenizer.json`` or ``vocab.txt``). The model comes with its own
WordPiece vocabulary, so texts must be encoded with the tokenizer returned here, not the course's.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer, BertForMaskedLM, PreTrainedTokenizerBase

_TRUE = ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids downloads (as it does in the course's tests and CI)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def _check_folder(folder: Path) -> None:
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder} has no config.json: save the model there with model.save_pretrained(folder)."
        )
    if not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(
            f"{folder} has no *.safetensors weights. Save them with model.save_pretrained(folder) "
            "(safetensors is the default); the course never unpickles .bin weights."
        )
    if not ((folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file()):
        raise FileNotFoundError(
            f"{folder} has no tokenizer (tokenizer.json or vocab.txt): save it with tokenizer.save_pretrained(folder)."
        )


def load_checkpoint(name_or_path: str | os.PathLike) -> tuple[BertForMaskedLM, PreTrainedTokenizerBase]:
    """A BERT masked LM and its tokenizer from a local folder or a hub id; a clear error otherwise.

    Only BERT-type checkpoints are accepted, because the course's classifier (``classifier_from``)
    builds a ``BertModel`` and copies the weights into it. Remote code is never trusted.
    """
    folder = Path(name_or_path)
    if folder.exists():
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder} is a file; pass the folder that save_pretrained wrote.")
        _check_folder(folder)
        source: str = str(folder)
    elif hub_offline():
        raise RuntimeError(
            f"{str(name_or_path)!r} is not a local folder, and the hub is off (HF_HUB_OFFLINE is set). On a machine "
            "with internet run `hf download "
            f"{name_or_path} --local-dir my_bert` (or save_pretrained the model and tokenizer to a folder), "
            "then pass that folder's path."
        )
    else:
        source = str(name_or_path)
    config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    if config.model_type != "bert":
        raise ValueError(
            f"{name_or_path} is a {config.model_type!r} model; the course's classifier builds a BERT encoder, "
            "so pick a BERT checkpoint (model_type 'bert'), e.g. bert-base-uncased."
        )
    model = BertForMaskedLM.from_pretrained(source, use_safetensors=True, trust_remote_code=False).eval()
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    return model, tokenizer
