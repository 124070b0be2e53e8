"""Issue point 6: out-of-memory, --auto-batch-size, NaN/inf loss, full disk, SIGTERM, --keep.

Failures are provoked with the test hooks documented in kftune.train.failures (environment
variables that make the trial raise the real exception types); nothing else is faked.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from kftune.train.failures import EXIT_DISK, EXIT_NAN, EXIT_OOM, is_oom
from kftune.train.metric_lines import NAN_STATUS_LINE, parse_line


def _tree_digest(path):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def test_real_allocator_errors_count_as_oom():
    with pytest.raises(RuntimeError) as err:
        torch.empty(10**14, dtype=torch.uint8)  # the CPU allocator's own error
    assert is_oom(err.value)
    assert is_oom(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_oom(RuntimeError("shape mismatch")) and not is_oom(ValueError("out of memory"))


def test_oom_halves_the_batch_and_a_resume_keeps_it(h, tiny, tmp_path):
    out = tmp_path / "t"
    proc = h.cli("train", *h.ner_argv(out, "--num-epochs", "1"), env={"KFTUNE_TEST_OOM_AT_STEP": "3"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "out of memory at step 3: per-device batch 8 -> 4, gradient accumulation 1 -> 2" in proc.stderr
    assert proc.stdout.splitlines()[0].startswith("epoch=1 ")
    m = h.metrics(out)
    assert m["status"] == "completed"
    assert m["batch"]["per_device_train_batch_size"] == 4 and m["batch"]["gradient_accumulation_steps"] == 2
    assert m["batch"]["effective_batch_size"] == 8
    [change] = m["batch"]["adjustments"]
    assert change["step"] == 3 and change["per_device_train_batch_size"] == [8, 4]
    assert "DefaultCPUAllocator: can't allocate memory" in change["reason"]
    state = json.loads((out / "last" / "trainer_state.json").read_text())
    assert state["batch"] == m["batch"]
    code, _ = h.train(h.ner_argv(out, "--num-epochs", "2", "--resume-from", str(out)))
    assert code == 0
    resumed = h.metrics(out)
    assert resumed["batch"]["per_device_train_batch_size"] == 4 and len(resumed["batch"]["adjustments"]) == 1
    assert resumed["history"][1]["per_device_train_batch_size"] == 4


def test_a_halved_step_is_the_same_update(h, tiny, tmp_path, monkeypatch):
    """Without dropout, redoing a step as two halves gives the same model (loss = sum / labelled tokens)."""
    no_dropout = ("--num-epochs", "1", "--attention-dropout", "0", "--hidden-dropout", "0")
    code, plain = h.train(h.ner_argv(tmp_path / "a", *no_dropout))
    monkeypatch.setenv("KFTUNE_TEST_OOM_AT_STEP", "1,7")
    code, halved = h.train(h.ner_argv(tmp_path / "b", *no_dropout))
    assert code == 0 and len(h.metrics(tmp_path / "b")["batch"]["adjustments"]) == 2
    for got, want in zip(plain, halved, strict=True):
        for (k1, v1), (k2, v2) in zip(parse_line(got), parse_line(want), strict=True):
            assert k1 == k2 and v1 == pytest.approx(v2, abs=1e-4)


def test_oom_at_batch_size_one_fails_with_exit_5(h, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("KFTUNE_TEST_OOM_ABOVE_BATCH", "0")
    code, lines = h.train(h.ner_argv(tmp_path / "t", "--num-epochs", "1"))
    assert code == EXIT_OOM and lines == []
    m = h.metrics(tmp_path / "t")
    assert m["status"] == "oom" and "batch size 1" in m["reason"]
    assert [c["per_device_train_batch_size"] for c in m["batch"]["adjustments"]] == [[8, 4], [4, 2], [2, 1]]


def test_auto_batch_size_keeps_a_given_effective_batch(h, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("KFTUNE_TEST_OOM_ABOVE_BATCH", "5")
    code, lines = h.train(h.ner_argv(tmp_path / "t", "--num-epochs", "1", "--auto-batch-size"))
    assert code == 0 and len(lines) == 2
    m = h.metrics(tmp_path / "t")
    assert m["auto_batch_size"] == {"start": 8, "found": 4, "kept_effective_batch": True}
    assert m["batch"] == {  # found before training: no OOM during it, so no adjustments
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 2,
        "effective_batch_size": 8,
        "adjustments": [],
    }


def test_auto_batch_size_without_a_given_batch_searches_from_the_cap(h, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("KFTUNE_TEST_OOM_ABOVE_BATCH", "20")
    argv = [
        a
        for a in h.ner_argv(
            tmp_path / "t", "--num-epochs", "1", "--auto-batch-size", "--auto-batch-cap", "64"
        )
    ]
    i = argv.index("--per-device-train-batch-size")
    del argv[i : i + 2]
    code, _ = h.train(argv)
    assert code == 0
    m = h.metrics(tmp_path / "t")
    assert m["auto_batch_size"] == {"start": 64, "found": 16, "kept_effective_batch": False}
    assert m["batch"]["effective_batch_size"] == 16 and m["batch"]["gradient_accumulation_steps"] == 1


def test_injected_nan_stops_with_exit_3(h, tiny, tmp_path):
    out = tmp_path / "t"
    proc = h.cli("train", *h.ner_argv(out, "--num-epochs", "2"), env={"KFTUNE_TEST_NAN_AT_STEP": "3"})
    assert proc.returncode == EXIT_NAN, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [NAN_STATUS_LINE]
    m = h.metrics(out)
    assert m["status"] == "nan_loss" and m["details"] == {"step": 3} and "step 3" in m["reason"]
    assert not (out / "last").exists()


def test_absurd_learning_rate_gives_nan_status(h, tiny, tmp_path):
    argv = h.ner_argv(tmp_path / "t", "--num-epochs", "1", "--optimizer", "sgd", "--max-grad-norm", "0")
    argv[argv.index("--learning-rate") + 1] = "1e8"
    code, lines = h.train(argv)
    assert code == EXIT_NAN and lines[-1] == NAN_STATUS_LINE
    assert h.metrics(tmp_path / "t")["status"] == "nan_loss"


def test_no_disk_space_keeps_the_old_checkpoint(h, tiny, tmp_path, monkeypatch):
    out = tmp_path / "t"
    code, _ = h.train(h.ner_argv(out, "--num-epochs", "1"))
    before = _tree_digest(out / "last")
    monkeypatch.setenv("KFTUNE_TEST_FREE_BYTES", "1000000")
    code, lines = h.train(h.ner_argv(out, "--num-epochs", "2", "--resume-from", str(out)))
    assert code == EXIT_DISK and lines == []
    m = h.metrics(out)
    assert m["status"] == "disk_full" and "not enough free disk" in m["reason"]
    assert m["details"]["free_bytes"] == 1000000 and m["details"]["need_bytes"] > 1000000
    assert _tree_digest(out / "last") == before
    assert not list(out.glob(".tmp-*")) and not list(out.glob(".old-*"))


def test_sigterm_stops_promptly_and_leaves_last_intact(h, tiny, tmp_path):
    out = tmp_path / "t"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KFTUNE_TEST_STEP_SLEEP": "0.05"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kftune", "train", *h.ner_argv(out, "--num-epochs", "20")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("epoch=1 ")
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        code = proc.wait(timeout=30)
        waited = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 128 + signal.SIGTERM and waited < 10
    m = h.metrics(out)
    assert m["status"] == "killed" and m["details"] == {"signal": "SIGTERM"}
    state = json.loads((out / "last" / "trainer_state.json").read_text())
    assert state["epoch"] == 1 and m["epochs_done"] == 1
    assert not list(out.glob(".tmp-*"))


@pytest.mark.parametrize("keep, left", [("none", []), ("best", ["best"]), ("last", ["last"])])
def test_keep(h, tiny, tmp_path, keep, left):
    out = tmp_path / "t"
    code, _ = h.train(h.ner_argv(out, "--num-epochs", "1", "--keep", keep))
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*left, "metrics.json"])
