"""Continue pretraining a masked LM on a text file, on one device or data-parallel on several.

The course's models are small enough for one device. A learner who continues pretraining a real
checkpoint on a large corpus outgrows it, and the same loop (``mlm.train_mlm`` on
``training.train_loop``) then runs unchanged under PyTorch's launcher, one process per GPU::

    python -m course_utils.pretrain --model DIR --texts corpus.txt --steps 1000 --batch-size 64 --out OUT
    torchrun --standalone --nproc_per_node 4 -m course_utils.pretrain --model DIR --texts corpus.txt ... --out OUT

Every process draws the same global batch of ``--batch-size`` texts and trains on its share of
the rows; the gradients are averaged so that each step equals one step on the whole batch. Rank 0
saves the model (safetensors) and tokenizer to ``--out``; every rank writes ``rank<R>.json`` with
its loss history and a fingerprint of its weights, which must agree across ranks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist

from course_utils.checkpoints import load_checkpoint
from course_utils.mlm import train_mlm


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A hash of every parameter's bytes: two processes hold the same model exactly when it agrees."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def read_texts(path: Path) -> list[str]:
    """One text per non-empty line of a UTF-8 file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err}); convert it first, e.g. with iconv.") from err
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise ValueError(f"{path} holds no text: write one document per line.")
    return texts


def _start_processes() -> tuple[int, int, torch.device]:
    """Join the process group a launcher set up (``WORLD_SIZE`` > 1); (rank, world size, this rank's device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank() if world > 1 else 0), world, device


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a folder saved with save_pretrained (or a hub id when online)")
    parser.add_argument("--texts", type=Path, required=True, help="a UTF-8 file, one document per line")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32, help="texts per step, over all processes")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup-ratio", type=float, default=0.06)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    rank, world, device = _start_processes()
    if args.batch_size % world:
        parser.error(f"--batch-size {args.batch_size} must be a multiple of the {world} processes.")
    torch.manual_seed(args.seed)  # every process starts from the same weights
    model, tokenizer = load_checkpoint(args.model)
    history = train_mlm(
        model.to(device),
        tokenizer,
        read_texts(args.texts),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_ratio=args.warmup_ratio,
        seed=args.seed,
        precision=args.precision,
        progress=rank == 0,
        desc=f"Continued pretraining on {world} process{'es' if world > 1 else ''}",
    )
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {
        "rank": rank,
        "world": world,
        "losses": [r["loss"] for r in history],
        "weights": weights_fingerprint(model),
    }
    (args.out / f"rank{rank}.json").write_text(json.dumps(summary))
    if rank == 0:
        model.cpu().save_pretrained(str(args.out))
        tokenizer.save_pretrained(str(args.out))
        print(
            f"Saved the model to {args.out}; loss {history[0]['loss']:.3f} at step 1, {history[-1]['loss']:.3f} at the end."
        )
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
