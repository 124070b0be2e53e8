"""The stall watchdog of the retrain and fine-tune steps: a process that stops beating is stopped
(SIGKILL when it ignores SIGTERM, as a deadlocked one does) and restarted from its checkpoint; one
that is slow but beats, or prints, is left alone."""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from pathlib import Path

import pytest

from kftune.errors import UserError
from kftune.steps import watch
from kftune.steps.watch import Stalled, run_watched, stall_timeout
from kftune.train import watchdog

BEATS = """
import pathlib, sys, time
hb = pathlib.Path(sys.argv[1])
for _ in range(8):
    time.sleep(0.5)
    hb.touch()  # slow, but alive: a beat every 0.5 s, no output at all
sys.exit(7)
"""

LEAVES = """
import pathlib, sys, time
hb = pathlib.Path(sys.argv[1])
for _ in range(6):
    time.sleep(0.5)
    hb.touch()
hb.unlink()  # the trainer left its guard: the heartbeat goes, the process winds down quietly
time.sleep(1.0)
sys.exit(0)
"""

DEADLOCK = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a deadlocked trainer never gets to its signal check
print("epoch=1 eval_f1=0.5", flush=True)
while True:
    time.sleep(3600)
"""


@pytest.fixture
def fast_kill(monkeypatch):
    monkeypatch.setattr(watchdog, "KILL_GRACE_S", 0.5)
    monkeypatch.setattr(watchdog, "POLL_S", 0.1)


def test_a_slow_process_that_beats_is_not_stopped(tmp_path, fast_kill):
    hb = tmp_path / ".heartbeat"
    with open(tmp_path / "log", "w") as log:
        code = watch._attempt([sys.executable, "-c", BEATS, str(hb)], log, hb, 2.0, None, deque())
    assert code == 7  # ran its 4 s to the end, with a 2 s stall timeout


def test_a_heartbeat_that_goes_away_counts_from_its_last_beat(tmp_path, fast_kill):
    hb = tmp_path / ".heartbeat"
    with open(tmp_path / "log", "w") as log:
        code = watch._attempt([sys.executable, "-c", LEAVES, str(hb)], log, hb, 2.0, None, deque())
    assert code == 0  # 4 s after its start with no output, but 1 s after its last beat


def test_a_deadlocked_process_deaf_to_sigterm_is_killed(tmp_path, fast_kill):
    lines: list[str] = []
    t0 = time.monotonic()
    with open(tmp_path / "log", "w") as log, pytest.raises(Stalled, match="no progress for"):
        watch._attempt(
            [sys.executable, "-c", DEADLOCK], log, tmp_path / ".heartbeat", 1.0, lines.append, deque()
        )
    assert time.monotonic() - t0 < 20
    assert lines == ["epoch=1 eval_f1=0.5\n"]  # its output reached the log callback before it hung
    assert "epoch=1" in (tmp_path / "log").read_text()


@pytest.mark.parametrize(("env", "value", "expected"), [("", None, 1800.0), ("0", None, 0.0), ("90", None, 90.0),
                                                        ("90", 5.0, 5.0)])  # fmt: skip
def test_stall_timeout_comes_from_the_argument_the_environment_or_the_default(
    monkeypatch, env, value, expected
):
    monkeypatch.setenv("KFTUNE_STALL_TIMEOUT_S", env)
    assert stall_timeout(value) == expected


@pytest.mark.parametrize("env", ["half an hour", "-5"])
def test_a_bad_stall_timeout_names_the_variable(monkeypatch, env):
    monkeypatch.setenv("KFTUNE_STALL_TIMEOUT_S", env)
    with pytest.raises(UserError, match="KFTUNE_STALL_TIMEOUT_S="):
        stall_timeout()


@pytest.mark.e2e
def test_a_trainer_that_hangs_mid_epoch_is_restarted_from_its_last_checkpoint(
    tmp_path, kftune_home, monkeypatch
):
    """The real trainer: 2 epochs of 4 steps; it hangs after step 6 (once), the watchdog kills it and
    resumes from the epoch-1 checkpoint, and the trial completes with both epochs."""
    monkeypatch.setenv("KFTUNE_TEST_HANG_AT_STEP", "6")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(watchdog, "KILL_GRACE_S", 1.0)
    out = tmp_path / "seed-1"
    args = ["--task", "seqcls", "--data", "demo:textcls", "--model", "tiny", "--output-dir", str(out),
            "--num-epochs", "2", "--max-train-samples", "64", "--max-eval-samples", "32",
            "--per-device-train-batch-size", "16", "--learning-rate", "1e-3", "--max-length", "32",
            "--tracking", "off", "--seed", "1"]  # fmt: skip
    log = tmp_path / "seed-1.log"
    code, tail = run_watched(args, out, log, what="finetune t seed 1", stall_s=15.0, restarts=1)
    assert code == 0, tail
    text = log.read_text()
    assert text.count("[kftune watchdog]") == 1
    assert "finetune t seed 1: stalled, no progress for" in text and f"resuming from {out / 'last'}" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["resumed_from"] == str(out)
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert not (out / ".heartbeat").exists()  # it beat while it ran; a finished dir keeps no heartbeat


def test_the_signal_guard_beats_at_most_every_heartbeat_period(tmp_path, monkeypatch):
    from kftune.train import failures

    hb = tmp_path / "out" / ".heartbeat"
    guard = failures.SignalGuard(hb)
    guard.check()  # the output directory does not exist yet: no beat, no error
    assert not hb.exists()
    hb.parent.mkdir()
    guard._next_beat = 0.0
    guard.check()
    first = hb.stat().st_mtime_ns
    time.sleep(0.05)
    guard.check()  # within HEARTBEAT_S: one clock read, no file system call
    assert hb.stat().st_mtime_ns == first
    monkeypatch.setattr(failures, "HEARTBEAT_S", 0.0)
    guard._next_beat = 0.0
    guard.check()
    assert hb.stat().st_mtime_ns > first


def test_a_run_that_stalls_every_time_fails_with_the_fix(tmp_path, monkeypatch, fast_kill):
    """run_watched's restarts, with a stand-in for `python -m kftune train` that always hangs."""
    real = watch._attempt

    def always_hang(argv, *rest):
        return real([sys.executable, "-c", DEADLOCK], *rest)

    monkeypatch.setattr(watch, "_attempt", always_hang)
    out = tmp_path / "seed-1"
    (out / "last").mkdir(parents=True)
    (out / "last" / "trainer_state.json").write_text("{}")
    with pytest.raises(UserError) as err:
        run_watched(["--output-dir", str(out)], out, tmp_path / "seed-1.log", what="retrain seed 1", stall_s=0.5,
                    restarts=2)  # fmt: skip
    assert "retrain seed 1 stalled 3 times (no progress for 0 s each time)" in str(err.value)
    assert "Raise KFTUNE_STALL_TIMEOUT_S" in str(err.value) and err.value.exit_code == 1
    log = (tmp_path / "seed-1.log").read_text()
    assert log.count(f"resuming from {out / 'last'} (restart") == 2 and Path(out).is_dir()
