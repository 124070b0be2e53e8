"""The arithmetic of bench/gpu_throughput.py (aggregate samples/s of concurrent trials, useful FLOPs),
checked offline: the bench itself needs a GPU."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import gpu_common  # noqa: E402
import gpu_throughput  # noqa: E402


def trial(epochs: list[tuple[float, float, float]]) -> dict:
    return {
        "history": [
            {"train_started_unix": s, "train_ended_unix": e, "train_samples_per_second": r, "eval_f1": 0.5}
            for s, e, r in epochs
        ],
        "gpu": {"peak_reserved_bytes": 3 * 2**30},
        "fast_path": {"first_step_s": 1.0},
    }


def test_aggregate_counts_epochs_after_the_first_inside_the_common_window():
    # two trials: epoch 1 (warm-up) ignored; epochs 2-3 at 100 and 200 samples/s
    a = trial([(0, 10, 50), (10, 20, 100), (20, 30, 100)])
    b = trial([(0, 12, 50), (12, 22, 200), (22, 32, 200)])
    out = gpu_throughput.aggregate([a, b])
    # window: from the later epoch-2 start (12) to the earlier end (30): 18 s, both running throughout
    assert out["method"] == "overlap" and out["window_s"] == 18.0
    assert out["aggregate"] == pytest.approx(300.0)
    assert out["completed"] == 2 and out["peak_reserved_gib_max"] == 3.0


def test_aggregate_without_a_common_window_uses_the_envelope():
    a = trial([(0, 1, 10), (1, 2, 100)])
    b = trial([(5, 6, 10), (6, 7, 100)])
    out = gpu_throughput.aggregate([a, b, None])
    assert out["method"] == "envelope" and out["completed"] == 2
    assert out["aggregate"] == pytest.approx(200 / 6)


def test_useful_flops_formula():
    shape = {"n_matmul": 85_000_000, "layers": 12, "hidden": 768}
    lengths = np.array([27, 27])
    expected = 6 * 85e6 * 27 + 12 * 12 * 768 * 27**2
    assert gpu_common.useful_flops_per_sample(lengths, shape) == pytest.approx(expected)


def test_bert_base_shape(tmp_path):
    (tmp_path / "config.json").write_text(
        '{"hidden_size": 768, "num_hidden_layers": 12, "intermediate_size": 3072, "vocab_size": 30522,'
        ' "max_position_embeddings": 512, "type_vocab_size": 2}'
    )
    shape = gpu_common.model_shape(tmp_path)
    assert shape["n_matmul"] == 12 * (4 * 768 * 768 + 2 * 768 * 3072) + 768 * 9
    assert 108e6 < shape["params"] < 110e6  # BertForTokenClassification, 9 labels, no pooler


def test_synthetic_lengths_look_like_conll():
    lengths = gpu_common.sentence_lengths(20_000, np.random.default_rng(0)) + 2  # [CLS], [SEP]
    assert 26 < lengths.mean() < 28 and lengths.max() <= 126 and lengths.min() >= 3
