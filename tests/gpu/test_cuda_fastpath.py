"""The trainer on a CUDA GPU (skipped where there is none; CI has none: run on a GPU machine with
``python -m pytest tests/gpu``). The CPU twins of these are in tests/train/test_fastpath.py."""

from __future__ import annotations

import io
import json
import math

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SMALL = [
    "--task", "ner", "--data", "demo:ner", "--model", "tiny", "--learning-rate", "2e-3",
    "--max-train-samples", "480", "--max-eval-samples", "100", "--max-length", "48",
    "--per-device-train-batch-size", "16", "--tracking", "off", "--seed", "7", "--num-epochs", "2",
    "--device", "cuda",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _home(kftune_home):
    """One KFTUNE_HOME (the tiny model, the demo corpus) for the session."""


def train(out, *extra) -> dict:
    from kftune.train.args import parse_args, validate
    from kftune.train.cli import run_trial

    args = parse_args([*SMALL, "--output-dir", str(out), *extra])
    validate(args)
    assert run_trial(args, io.StringIO()) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def plain_fp32(tmp_path_factory, kftune_home):  # module scope: the autouse fixture is too late
    return train(tmp_path_factory.mktemp("plain"), "--fast-path", "off", "--precision", "fp32")


def test_fast_path_is_the_cuda_default_and_reports_memory(tmp_path):
    m = train(tmp_path)
    assert (
        m["fast_path"]["enabled"] and m["fast_path"]["device_data"] and m["fast_path"]["pad_multiple"] == 16
    )
    assert m["fast_path"]["mask_4d"] is True
    assert m["precision"] == "bfloat16"
    gpu = m["gpu"]
    assert 0 < gpu["peak_allocated_bytes"] <= gpu["peak_reserved_bytes"] < gpu["total_memory_bytes"]


def test_fast_path_matches_plain_on_cuda(tmp_path, plain_fp32):
    """fp32, --pad-multiple 1: the same tensors as the plain path; CUDA's atomics in the embedding
    backward make runs differ in the last bits, so 1e-4 relative."""
    m = train(tmp_path, "--fast-path", "on", "--pad-multiple", "1", "--precision", "fp32")
    for a, b in zip(m["history"], plain_fp32["history"], strict=True):
        for key in ("eval_loss", "train_loss"):
            assert math.isclose(a[key], b[key], rel_tol=1e-4), (key, a[key], b[key])
        assert abs(a["eval_f1"] - b["eval_f1"]) <= 0.01


def test_compiled_fast_path_trains(tmp_path, plain_fp32):
    m = train(tmp_path, "--compile", "default", "--precision", "fp32", "--attention-dropout", "0",
              "--hidden-dropout", "0")  # fmt: skip
    assert m["fast_path"]["compile"] == "default", m["fast_path"].get("compile_error")
    assert m["fast_path"]["first_step_s"] > 0
    assert m["history"][-1]["eval_f1"] > 0.5 * plain_fp32["history"][-1]["eval_f1"]


def test_memory_fraction_caps_the_allocator(tmp_path, monkeypatch):
    monkeypatch.setenv("KFTUNE_GPU_MEMORY_FRACTION", "0.25")
    m = train(tmp_path, "--num-epochs", "1")
    assert m["gpu"]["memory_fraction"] == 0.25
    assert m["gpu"]["peak_reserved_bytes"] <= 0.25 * m["gpu"]["total_memory_bytes"]


def test_profile_breakdown_syncs(tmp_path):
    m = train(tmp_path, "--profile-steps", "5", "--max-train-samples", "960")
    p = m["profile"]
    assert p["steps"] == 5
    assert p["done_ms"]["forward_backward"] >= p["issue_ms"]["forward_backward"] > 0
