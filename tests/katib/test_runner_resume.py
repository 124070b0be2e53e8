"""``kill -9`` of the local runner mid-search, then ``--resume``: nothing finished is lost, the
interrupted trials continue from their checkpoints, leftover processes are dealt with."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runner_helpers import experiment_yaml, write_experiment

from kftune.katib.runner_process import process_alive
from kftune.katib.store import Store

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kill -9 and /proc: Linux")

ASHA = dict(
    algorithm="asha",
    settings={
        "resource_name": "epochs",
        "reduction_factor": "2",
        "sampler": "random",
    },
    parameters="""
    - name: lr
      parameterType: double
      feasibleSpace: {min: "0.00001", max: "0.1", distribution: logUniform}
    - name: epochs
      parameterType: int
      feasibleSpace: {min: "2", max: "8"}""",
    trial_parameters="""
      - {name: lr, reference: lr}
      - {name: epochs, reference: epochs}""",
    env="""
                  - name: PARENT
                    valueFrom:
                      fieldRef:
                        fieldPath: metadata.labels['kftune.io/parent-trial']""",
    max_trials=9,
    parallel=2,
)


def runner_argv(path: Path, work: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "kftune", "katib", "run", str(path), "--local", "--work-dir", str(work),
            "--progress", "plain", *extra]  # fmt: skip


def start_runner(path: Path, work: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        runner_argv(path, work, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def resume_runner(path: Path, work: Path, *extra: str, timeout: float) -> subprocess.CompletedProcess:
    """``kftune katib run ... --resume`` to the end."""
    return subprocess.run(
        runner_argv(path, work, "--resume", *extra), capture_output=True, text=True, timeout=timeout
    )


def wait_for(predicate, timeout: float = 30.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def snapshot(work: Path):
    store = Store.open(work / "experiment.db")
    try:
        return store.trials(), store
    except Exception:
        store.close()
        raise


def rows(work: Path):
    if not (work / "experiment.db").exists():
        return []
    store = Store.open(work / "experiment.db")
    try:
        return store.trials()
    finally:
        store.close()


def test_kill_9_mid_search_then_resume_keeps_finished_trials_and_resumes_running_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("KFTUNE_HOME", str(tmp_path / "home"))
    args = [
        "--lr",
        "${trialParameters.lr}",
        "--epochs",
        "${trialParameters.epochs}",
        "--resume-from=$(PARENT)",
        "--sleep",
        "0.4",
    ]
    path = write_experiment(tmp_path, experiment_yaml("asha", args=args, **ASHA))
    work = tmp_path / "w"
    runner = start_runner(path, work)

    def checkpoint_epoch(r) -> int:
        try:
            return json.loads((Path(r.output_dir) / "last" / "state.json").read_text())["epoch"]
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def mid_search():
        rs = rows(work)
        done = [r for r in rs if r.status == "Succeeded"]
        # a running trial that has finished an epoch (so it has a last/ checkpoint) and still has
        # one to go: one whose checkpoint is its last epoch may finish before the kill lands
        running = [
            r
            for r in rs
            if r.status == "Running"
            and r.output_dir
            and 0 < checkpoint_epoch(r) < int(r.assignments["epochs"])
        ]
        return (done, running) if len(done) >= 2 and running else None

    done, running = wait_for(mid_search, what="2 finished trials and a running one with a checkpoint")
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(10)
    before = {r.name: r for r in rows(work)}
    finished_before = {n: r for n, r in before.items() if r.completed}
    interrupted = {n: r for n, r in before.items() if not r.completed}
    assert interrupted
    # the kernel told the orphans (PR_SET_PDEATHSIG): they stop by themselves
    for r in interrupted.values():
        wait_for(lambda r=r: not process_alive(r.pid, r.pid_start), 10, f"{r.name} to stop")

    resumed = resume_runner(path, work, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "bestTrialName" in resumed.stdout
    after = {r.name: r for r in rows(work)}
    for name, r in finished_before.items():  # finished trials are exactly as they were
        a = after[name]
        assert (a.status, a.finished, a.observation, a.attempt) == (
            r.status,
            r.finished,
            r.observation,
            r.attempt,
        )
    store = Store.open(work / "experiment.db")
    resumed_from_checkpoint = 0
    for name, r in interrupted.items():
        a = after[name]
        assert a.completed and a.attempt == r.attempt + 1
        if r.attempt == 0:
            continue
        restarted = [e for e in store.events(name) if e["kind"] == "restarted"]
        assert len(restarted) == 1
        log = Path(a.log_out).read_text()
        if "resumed from" in restarted[0]["data"]["how"]:
            resumed_from_checkpoint += 1
            first, _, second = log.partition("attempt 2, resumed from")
            epochs_before = {
                int(x.split()[0].split("=")[1]) for x in first.splitlines() if x.startswith("epoch=")
            }
            epochs_after = {
                int(x.split()[0].split("=")[1]) for x in second.splitlines() if x.startswith("epoch=")
            }
            assert epochs_before and not epochs_before & epochs_after  # continued, not repeated
            assert f"--resume-from={Path(a.output_dir).resolve()}" in a.argv
            # the observation covers the reports of both attempts
            assert len(
                [m for m in store.metric_logs(name, a.metrics_from_attempt) if m.name == "eval_f1"]
            ) == len(epochs_before | epochs_after)
    store.close()
    assert resumed_from_checkpoint >= 1
    assert sum(1 for r in after.values() if r.status == "Succeeded") == len(after)


def test_an_orphan_that_ignores_sigterm_is_killed_on_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("KFTUNE_HOME", str(tmp_path / "home"))
    # the first attempt sleeps a minute ignoring SIGTERM: it is still there when --resume starts
    once = tmp_path / "slept"
    args = [
        "--lr",
        "${trialParameters.lr}",
        "--epochs",
        "1",
        "--sleep-once",
        str(once),
        "60",
        "--ignore-term",
        "--noise",
    ]
    path = write_experiment(tmp_path, experiment_yaml(args=args, max_trials=1, parallel=1))
    work = tmp_path / "w"
    runner = start_runner(path, work)
    row = wait_for(lambda: [r for r in rows(work) if r.status == "Running"], what="a running trial")[0]
    err_log = Path(row.log_err)
    wait_for(lambda: "training epoch 1" in err_log.read_text(), what="the trial to ignore SIGTERM")
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(10)
    time.sleep(0.2)
    assert process_alive(row.pid, row.pid_start)  # it ignored the SIGTERM its parent's death sent
    resumed = resume_runner(path, work, "--grace-period", "0.5", timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert not process_alive(row.pid, row.pid_start)
    store = Store.open(work / "experiment.db")
    events = [e for e in store.events(row.name) if e["kind"] == "orphan-stopped"]
    assert events and events[0]["data"]["outcome"] == "killed"
    assert store.trial(row.name).status == "Succeeded"
    store.close()


def test_ctrl_c_stops_the_trials_and_resume_finishes_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("KFTUNE_HOME", str(tmp_path / "home"))
    args = ["--lr", "${trialParameters.lr}", "--epochs", "3", "--sleep", "0.5"]
    path = write_experiment(tmp_path, experiment_yaml(args=args, max_trials=3, parallel=2))
    work = tmp_path / "w"
    runner = start_runner(path, work)
    wait_for(lambda: len([r for r in rows(work) if r.status == "Running"]) == 2, what="two running trials")
    runner.send_signal(signal.SIGINT)
    out, err = runner.communicate(timeout=30)
    assert runner.returncode == 130, err
    assert "--resume" in err
    left = [r for r in rows(work) if r.status == "Running"]
    assert len(left) == 2 and all(not process_alive(r.pid, r.pid_start) for r in left)
    resumed = resume_runner(path, work, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    final = rows(work)
    assert len(final) == 3 and all(r.status == "Succeeded" for r in final)
