"""The local runner with the real trainer: the demo's ASHA search from katib/ner-asha.yaml (smaller),
and ``kill -9`` of the runner mid-trial, then ``--resume`` from the trial's own checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kftune.katib.store import Store

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--set-arg",
    "--model=tiny",
    "--set-arg",
    "--data=demo:ner",
    "--set-arg",
    "--tracking=off",
    "--set-arg",
    "--max-train-samples=64",
    "--set-arg",
    "--max-eval-samples=32",
    "--set-arg",
    "--max-length=48",
    "--param",
    "learning_rate=1e-3:3e-3",
]


def test_demo_search_stage_runs_ner_asha_locally_with_promotions(tmp_path, kftune_home, kftune_cli):
    from kftune.demo import DemoConfig, run

    cfg = DemoConfig(
        out=tmp_path / "demo",
        stages=("search",),
        search_trials=6,
        search_max_epochs=3,
        search_parallel=2,
        search_max_train_samples=64,
        search_max_eval_samples=32,
        max_length=48,
    )
    t0 = time.time()
    ctx = run(cfg)
    elapsed = time.time() - t0
    table = (cfg.out / "search.md").read_text()
    assert "| Original   | uncased    | ASHA    |" in table
    assert ctx.tables["Successful Hyperparameters"] in table
    work = cfg.out / "search"
    result = json.loads((work / "result.json").read_text())
    assert result["condition"]["reason"] == "ExperimentMaxTrialsReached", result
    best = json.loads((work / "tune" / "best.json").read_text())
    assert best["bestTrialName"] == result["currentOptimalTrial"]["bestTrialName"]
    trials = json.loads((work / "tune" / "trials.json").read_text())
    assert all(t["status"] == "Succeeded" for t in trials)
    rung0 = [t for t in trials if t["labels"]["kftune.io/rung"] == "0"]
    promoted = [t for t in trials if t["labels"]["kftune.io/parent-trial"]]
    assert len(trials) == 6 and len(rung0) >= 3 and promoted
    store = Store.open(work / "experiment.db")
    try:
        for t in promoted:
            parent = t["labels"]["kftune.io/parent-trial"]
            row = store.trial(t["name"])
            assert f"--resume-from={parent}" in row.argv  # label -> downward API env -> $(VAR)
            assert row.cwd == str(work / "trials")
            err = Path(row.log_err).read_text()
            assert f"resumed from {parent}/last at epoch 1" in err or f"{parent}/last" in err
            assert [c[0] for c in t["curve"]] == [2, 3] and t["epochs"] == 2  # continued, not restarted
            assert (work / "trials" / t["name"] / "best").is_dir()
    finally:
        store.close()
    listed = kftune_cli("katib", "trials", str(work), check=True).stdout.splitlines()
    assert listed[0].split()[:4] == ["NAME", "TYPE", "STATUS", "EVAL_F1"] and len(listed) == len(trials) + 1
    print(f"demo search stage (6 trials, 64 sentences): {len(promoted)} promotions, {elapsed:.0f} s")


def _rows(work: Path):
    if not (work / "experiment.db").exists():
        return []
    store = Store.open(work / "experiment.db")
    try:
        return store.trials()
    finally:
        store.close()


def test_kill_9_of_the_runner_then_resume_continues_the_trainer_from_its_checkpoint(tmp_path, kftune_home):
    work = tmp_path / "w"
    cmd = [
        sys.executable,
        "-m",
        "kftune",
        "katib",
        "run",
        str(ROOT / "katib" / "ner-tpe-medianstop.yaml"),
        "--local",
        "--work-dir",
        str(work),
        "--progress",
        "plain",
        *TINY,
        "--set-arg",
        "--num-epochs=4",
        "--max-trial-count",
        "1",
    ]
    runner = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    row = None
    while time.monotonic() < deadline:
        rows = _rows(work)
        if rows and rows[0].log_out and "epoch=1 " in Path(rows[0].log_out).read_text(errors="replace"):
            row = rows[0]
            break
        assert runner.poll() is None, runner.stderr.read()
        time.sleep(0.2)
    assert row is not None, "no epoch finished in time"
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(10)
    runner.stderr.close()
    from kftune.katib.runner_process import process_alive

    deadline = time.monotonic() + 60
    while process_alive(row.pid, row.pid_start) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not process_alive(row.pid, row.pid_start), "the trainer outlived its runner"
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (final,) = _rows(work)
    assert final.status == "Succeeded" and final.attempt == 2
    assert f"--resume-from={Path(final.output_dir).resolve()}" in final.argv
    err = Path(final.log_err).read_text(errors="replace")
    assert "resumed from" in err and "/last at epoch" in err
    store = Store.open(work / "experiment.db")
    try:
        reports = [
            m for m in store.metric_logs(final.name, final.metrics_from_attempt) if m.name == "eval_f1"
        ]
    finally:
        store.close()
    assert len(reports) == 4  # epochs 1..4, across the two attempts, each once
    out = Path(final.log_out).read_text(errors="replace")
    assert sorted(int(x.split()[0][6:]) for x in out.splitlines() if x.startswith("epoch=")) == [1, 2, 3, 4]


def test_a_trial_that_hangs_is_restarted_by_its_own_watchdog_and_succeeds(tmp_path, kftune_home):
    """katib/*.yaml set KFTUNE_STALL_TIMEOUT_S, so a trial watches itself, here and in a Katib pod:
    the hung trainer (deaf to SIGTERM) is killed and resumed inside the same trial, which the
    runner sees as one attempt that succeeds; the stall is in the record and on the screen."""
    work = tmp_path / "w"
    r = subprocess.run(
        [
            sys.executable, "-m", "kftune", "katib", "run", str(ROOT / "katib" / "ner-tpe-medianstop.yaml"),
            "--local", "--work-dir", str(work), "--progress", "plain", *TINY,
            "--set-arg", "--num-epochs=2", "--param", "batch_size=16",
            "--set-env", "KFTUNE_STALL_TIMEOUT_S=20", "--set-env", "KFTUNE_TEST_HANG_AT_STEP=6",
            "--max-trial-count", "1",
        ],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    (row,) = _rows(work)
    assert row.status == "Succeeded" and row.attempt == 1
    assert "stalled   trial " in r.stderr and "resuming from" in r.stderr
    store = Store.open(work / "experiment.db")
    try:
        stalls = [e for e in store.events(row.name) if e["kind"] == "stalled"]
        reports = [m.value for m in store.metric_logs(row.name, 1) if m.name == "eval_f1"]
    finally:
        store.close()
    assert len(stalls) == 1 and "(restart 1 of 2)" in stalls[0]["data"]["message"]
    assert len(reports) == 2  # epochs 1 and 2, once each
    metrics = json.loads((Path(row.output_dir) / "metrics.json").read_text())
    assert metrics["resumed_from"] == str(Path(row.output_dir).resolve())
