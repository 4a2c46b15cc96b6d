import subprocess
import sys
import time

import torch

from course_utils.measure import count_parameters, model_size_mb, time_per_call


def test_measure_sees_time_and_a_large_allocation():
    """In a fresh process: in a long test session, freed memory the process already holds can serve
    the allocation without the resident set growing, and the check would then measure the session."""
    code = (
        "import time, torch\n"
        "from course_utils.measure import measure\n"
        "with measure('alloc') as m:\n"
        "    block = torch.ones(40_000_000)  # 160 MB of float32\n"
        "    block += 1\n"
        "    time.sleep(0.05)\n"
        "print(m.seconds, m.added_rss_mb, m.peak_rss_mb, str(m), sep='\\n')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    seconds, added, peak, text = done.stdout.strip().split("\n")[-4:]
    assert float(seconds) >= 0.05
    assert float(added) >= 100, done.stdout
    assert float(peak) >= float(added)
    assert "alloc" in text


def test_count_parameters_counts_frozen_and_tied_weights_correctly():
    embedding = torch.nn.Embedding(10, 4)
    head = torch.nn.Linear(4, 10, bias=False)
    head.weight = embedding.weight  # tied, as a language-model head often is
    model = torch.nn.ModuleDict({"embedding": embedding, "head": head, "extra": torch.nn.Linear(4, 2)})
    model["extra"].requires_grad_(False)
    counts = count_parameters(model)
    assert counts.total == 40 + 4 * 2 + 2
    assert counts.trainable == 40
    assert abs(counts.trainable_fraction - 40 / 50) < 1e-12


def test_model_size_counts_bytes_of_parameters_and_buffers():
    model = torch.nn.BatchNorm1d(100)  # 200 parameters, 201 buffer numbers (incl. an int64 counter)
    expected = (200 * 4 + 200 * 4 + 8) / 2**20
    assert abs(model_size_mb(model) - expected) < 1e-9


def test_time_per_call_is_the_median_of_real_calls():
    calls = []
    seconds = time_per_call(lambda: (calls.append(1), time.sleep(0.01)), repeats=5, warmup=2)
    assert len(calls) == 7
    assert 0.009 <= seconds < 0.5


def test_benchmark_reports_size_latency_and_throughput_of_a_classifier():
    from tiny import CONFIG, keyword_split
    from transformers import BertModel

    from course_utils.classifier import SequenceClassifier
    from course_utils.measure import benchmark, model_size_mb

    model = SequenceClassifier(BertModel(CONFIG, add_pooling_layer=False), 2).train()
    result = benchmark(model, keyword_split(32), batch_1_repeats=3, batched_repeats=2)
    assert result["parameters"] == sum(p.numel() for p in model.parameters())
    assert result["MB"] == model_size_mb(model)
    assert result["batch-1 latency ms"] > 0 and result["throughput notes/s"] > 0
    assert model.training, "the model's mode is restored"
    assert "throughput notes/s" not in benchmark(model, keyword_split(8), batch_1_repeats=2, batched_repeats=0)
