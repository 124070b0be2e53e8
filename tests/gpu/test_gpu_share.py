"""K trials per GPU, memory-aware queueing (``kftune.train.gpu_share``): pure scheduling, no GPU."""

from __future__ import annotations

import json

import pytest

from kftune.errors import UserError
from kftune.train.gpu_share import (
    CONTEXT_MIB,
    Gpu,
    GpuPool,
    MemoryBook,
    ModelDims,
    Trial,
    TrialShape,
    estimate_mib,
    parse_nvidia_smi,
    trial_for,
)

BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
             "vocab_size": 30522, "max_position_embeddings": 512}  # fmt: skip


def test_model_dims_of_bert_base():
    dims = ModelDims.from_config(BERT_BASE)
    assert 108e6 < dims.params < 111e6  # BertModel without pooler: 109.5 M with it
    assert (dims.hidden, dims.layers, dims.heads) == (768, 12, 12)


def test_estimate_grows_with_batch_length_and_precision():
    dims = ModelDims.from_config(BERT_BASE)
    base = estimate_mib(dims, TrialShape("bert-base", batch=32))
    # weights + grads + AdamW state alone: 16 bytes per parameter, ~1.7 GB
    assert 1700 < base < 8000
    assert estimate_mib(dims, TrialShape("bert-base", batch=64)) > base
    assert estimate_mib(dims, TrialShape("bert-base", max_length=256)) > base
    assert estimate_mib(dims, TrialShape("bert-base", precision="fp32")) > base
    assert estimate_mib(dims, TrialShape("bert-base", optimizer="sgd")) < base


def test_k_slots_per_gpu_and_fifo_queue():
    pool = GpuPool([Gpu(0, 80_000, slots=4), Gpu(1, 80_000, slots=4)], margin=0.0, context_mib=500)
    queue = [Trial(f"t{i}", 4000) for i in range(10)]
    started = pool.start_ready(queue)
    assert [p.trial.name for p in started] == [f"t{i}" for i in range(8)]
    assert [len(queue), pool.capacity] == [2, 8]
    per_gpu = [sum(1 for p in started if p.gpu.index == g) for g in (0, 1)]
    assert per_gpu == [4, 4], "spread over the GPUs, at most K each"
    assert pool.start_ready(queue) == [], "all slots taken: the rest waits"
    pool.release("t3")
    again = pool.start_ready(queue)
    assert [p.trial.name for p in again] == ["t8"] and again[0].gpu.index == started[3].gpu.index
    assert [t.name for t in queue] == ["t9"]


def test_memory_is_never_overbooked():
    gpu = Gpu(0, 24_000, slots=8, reserve_mib=1000)  # a 24 GB card, 23,000 MiB usable
    pool = GpuPool([gpu], margin=0.2, context_mib=600)
    queue = [Trial(f"t{i}", 5000) for i in range(8)]  # 5000 * 1.2 + 600 = 6600 MiB booked each
    started = pool.start_ready(queue)
    assert len(started) == 3, "3 x 6600 = 19,800 fits in 23,000; a 4th would not"
    assert pool.booked_mib(gpu) == 3 * 6600 <= gpu.usable_mib
    assert pool.place(queue[0]) is None
    # each process is capped at its booking (allocator part), so an estimate that is too low
    # cannot push the card past its memory either
    p = started[0]
    assert p.cap_mib == 6000 and p.need_mib == 6600
    env = p.env()
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    assert float(env["KFTUNE_GPU_MEMORY_FRACTION"]) == pytest.approx(6000 / 24_000)
    assert (
        sum(float(q.env()["KFTUNE_GPU_MEMORY_FRACTION"]) * gpu.total_mib for q in started) + 3 * 600
        <= gpu.usable_mib
    )


def test_head_of_queue_blocks_smaller_trials_behind_it():
    pool = GpuPool([Gpu(0, 20_000, slots=4, reserve_mib=0)], margin=0.0, context_mib=0)
    assert pool.place(Trial("running", 12_000)) is not None
    queue = [Trial("big", 10_000), Trial("small", 1_000)]
    assert pool.start_ready(queue) == [], "first in, first out: 'small' does not overtake 'big'"
    pool.release("running")
    assert [p.trial.name for p in pool.start_ready(queue)] == ["big", "small"]


def test_a_trial_that_can_never_fit_is_refused():
    pool = GpuPool([Gpu(0, 16_000, slots=2)], margin=0.2)
    with pytest.raises(UserError, match="lower --per-device-train-batch-size"):
        pool.start_ready([Trial("huge", 15_000)])


def test_placement_prefers_the_emptier_gpu():
    pool = GpuPool([Gpu(0, 40_000, slots=4), Gpu(1, 80_000, slots=4)], margin=0.0, context_mib=0)
    first = pool.place(Trial("a", 1000))
    second = pool.place(Trial("b", 1000))
    assert {first.gpu.index, second.gpu.index} == {0, 1}
    assert first.gpu.index == 1, "equal counts: the one with more free memory"


def test_mps_pipe_reaches_the_trial_env():
    pool = GpuPool([Gpu(0, 80_000, slots=8)], mps_pipe="/tmp/mps-pipe")
    env = pool.place(Trial("a", 3000)).env()
    assert env["CUDA_MPS_PIPE_DIRECTORY"] == "/tmp/mps-pipe"


def test_memory_book_prefers_measured_peaks(tmp_path):
    dims = ModelDims.from_config(BERT_BASE)
    shape = TrialShape("bert-base", batch=32)
    book = MemoryBook(tmp_path / "book.json")
    first = trial_for("t0", shape, dims, book)
    assert first.source == "estimate" and first.allocator_mib == estimate_mib(dims, shape)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"gpu": {"peak_reserved_bytes": 3_200 * 2**20, "name": "NVIDIA H100"}}))
    assert book.record_metrics(shape, metrics) == 3200
    again = MemoryBook(tmp_path / "book.json")  # persisted
    second = trial_for("t1", shape, dims, again)
    assert (second.source, second.allocator_mib) == ("measured", 3200)
    other = trial_for("t2", TrialShape("bert-base", batch=64), dims, again)
    assert other.source == "estimate"
    cpu_metrics = tmp_path / "cpu.json"
    cpu_metrics.write_text(json.dumps({"gpu": None}))
    assert book.record_metrics(shape, cpu_metrics) is None


def test_parse_nvidia_smi():
    text = "0, 81559\n1, 81559\n"
    assert parse_nvidia_smi(text) == [(0, 81559), (1, 81559)]
    assert parse_nvidia_smi("No devices were found\n") == []
    assert CONTEXT_MIB > 0
