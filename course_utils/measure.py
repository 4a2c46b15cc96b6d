"""One way to measure, for every table in the course: wall time, peak memory, parameters, latency.

``measure()`` wraps a block of code. Peak memory is the process's resident set size (RSS),
sampled in a background thread, because PyTorch's CPU allocations are invisible to Python's
``tracemalloc``; on a CUDA device the allocator's own peak is reported as well. ``benchmark`` gives
a classifier's size, latency and throughput, measured one way for every table (11, 15).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import psutil
import torch
from torch import nn

from course_utils.classifier import EncodedSplit
from course_utils.training import evaluating, model_device


@dataclass
class Measurement:
    """What ``measure()`` saw; filled in when the ``with`` block ends."""

    label: str = ""
    seconds: float = 0.0
    peak_rss_mb: float = 0.0  # highest resident memory of the process during the block
    added_rss_mb: float = 0.0  # that peak minus the resident memory when the block started
    cuda_peak_mb: float | None = None  # the CUDA allocator's peak, when a GPU was used

    def __str__(self) -> str:
        text = f"{self.label + ': ' if self.label else ''}{self.seconds:.2f} s, peak RSS {self.peak_rss_mb:.0f} MB (+{self.added_rss_mb:.0f} MB)"
        if self.cuda_peak_mb is not None:
            text += f", CUDA peak {self.cuda_peak_mb:.0f} MB"
        return text


class PeakMemorySampler(threading.Thread):
    """Polls resident memory every ``interval`` seconds and keeps the maximum.

    By default it watches this process; with ``children=True`` it watches the processes this
    one started instead (the notebook runner uses that to follow each notebook's kernel).
    """

    def __init__(self, interval: float = 0.005, *, children: bool = False) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.children = children
        self.process = psutil.Process()
        self.peak = self._current()
        self._stop_event = threading.Event()

    def _current(self) -> int:
        if not self.children:
            return self.process.memory_info().rss
        largest = 0
        for child in self.process.children(recursive=True):
            with suppress(psutil.Error):  # a child may end between listing and reading
                largest = max(largest, child.memory_info().rss)
        return largest

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, self._current())
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        """Stop polling; the peak in bytes."""
        self._stop_event.set()
        self.join()
        return max(self.peak, self._current())


@contextmanager
def measure(label: str = "", *, interval: float = 0.005) -> Iterator[Measurement]:
    """Time a block and record its peak memory.

    >>> with measure("training") as m:      # doctest: +SKIP
    ...     train()
    >>> m.seconds, m.peak_rss_mb
    """
    result = Measurement(label=label)
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    sampler = PeakMemorySampler(interval)
    start_rss = sampler.peak
    sampler.start()
    start = time.perf_counter()
    try:
        yield result
    finally:
        if use_cuda:
            torch.cuda.synchronize()
        result.seconds = time.perf_counter() - start
        peak = sampler.stop()
        result.peak_rss_mb = peak / 2**20
        result.added_rss_mb = (peak - start_rss) / 2**20
        if use_cuda:
            result.cuda_peak_mb = torch.cuda.max_memory_allocated() / 2**20


@dataclass(frozen=True)
class ParameterCount:
    total: int
    trainable: int

    @property
    def trainable_fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"{self.total:,} parameters, {self.trainable:,} trainable ({100 * self.trainable_fraction:.2f}%)"


def count_parameters(model: nn.Module) -> ParameterCount:
    """Total and trainable parameters, counting tied (shared) tensors once."""
    parameters = list(model.parameters())  # yields a tied tensor only once
    return ParameterCount(
        total=sum(p.numel() for p in parameters),
        trainable=sum(p.numel() for p in parameters if p.requires_grad),
    )


def model_size_mb(model: nn.Module) -> float:
    """Bytes of the model's parameters and buffers, in MB: what saving it would take."""
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values()) / 2**20


def time_per_call(fn: Callable[[], object], *, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in seconds, after a few warm-up calls (for latency tables)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def benchmark(
    model: nn.Module, split: EncodedSplit, *, batch_1_repeats: int = 50, batched_repeats: int = 10
) -> dict[str, float]:
    """Size, latency and throughput of a classifier, measured the same way for every table in the course.

    ``parameters`` and ``MB`` (its weights' bytes); ``batch-1 latency ms``: the median time to classify
    the split's first note alone; ``throughput notes/s``: every note of the split in one batch
    (skipped with ``batched_repeats=0``). It runs where the model is, in eval mode, without gradients.
    """
    device, n = model_device(model), int(split.attention_mask[0].sum())
    one = {"input_ids": split.input_ids[:1, :n].to(device), "attention_mask": split.attention_mask[:1, :n].to(device)}
    every = {"input_ids": split.input_ids.to(device), "attention_mask": split.attention_mask.to(device)}
    result = {"parameters": float(count_parameters(model).total), "MB": model_size_mb(model)}
    with evaluating(model), torch.inference_mode():
        result["batch-1 latency ms"] = 1000 * time_per_call(lambda: model(**one), repeats=batch_1_repeats)
        if batched_repeats:
            batched = time_per_call(lambda: model(**every), repeats=batched_repeats)
            result["throughput notes/s"] = len(split) / batched
    return result
