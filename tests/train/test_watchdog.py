"""``kftune train`` watching itself (KFTUNE_STALL_TIMEOUT_S): the supervisor passes the trial's
output through unchanged, forwards signals, kills a stalled trial with everything below it, and
starts it again from its own checkpoint; and when it does not supervise at all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import cli

from kftune.errors import UserError
from kftune.train import watchdog
from kftune.train.watchdog import Activity, Stalled, descendants, stop_tree, supervise, wait_watching


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(watchdog, "KILL_GRACE_S", 0.5)
    monkeypatch.setattr(watchdog, "POLL_S", 0.1)


def script(tmp_path: Path, name: str, body: str) -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


HANGS = """
    import signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # deadlocked: never reaches its signal check
    print("epoch=1 eval_f1=0.5", flush=True)
    print(" ".join(sys.argv[1:]), file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)
"""


def test_output_passes_through_byte_for_byte_and_the_exit_code_is_the_childs(tmp_path, capfd, fast):
    cmd = script(
        tmp_path,
        "talk.py",
        """
        import os, sys
        os.write(1, b"epoch=1 eval_f1=0.5\\n")
        os.write(2, "caf\\u00e9 \\r50%\\r100%\\n".encode())  # progress bars: carriage returns, no newline
        os.write(1, b"final test_f1=0.4")  # no trailing newline
        sys.exit(3)
        """,
    )
    code = supervise(cmd, tmp_path / "out", what="trial t", stall_s=30)
    out, err = capfd.readouterr()
    assert code == 3
    assert out == "epoch=1 eval_f1=0.5\nfinal test_f1=0.4"
    assert err == "caf\u00e9 \r50%\r100%\n"


def test_a_child_killed_by_a_signal_gives_128_plus_the_signal(tmp_path, fast):
    cmd = script(tmp_path, "die.py", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert supervise(cmd, tmp_path / "out", what="trial t", stall_s=30) == 128 + signal.SIGKILL


def test_a_stalled_trial_restarts_from_its_checkpoint_and_gives_up_with_the_fix(tmp_path, capfd, fast):
    out = tmp_path / "out"
    (out / "last").mkdir(parents=True)
    (out / "last" / "trainer_state.json").write_text("{}")
    cmd = script(tmp_path, "hang.py", HANGS)
    resumed: list[list[str]] = []

    def resume(command: list[str], out_dir: Path) -> list[str]:
        resumed.append(command)
        return [*command, "--resume-from", str(out_dir)]

    t0 = time.monotonic()
    with pytest.raises(UserError) as info:
        supervise(cmd, out, what="trial t-7", stall_s=0.6, restarts=2, resume=resume)
    assert time.monotonic() - t0 < 30
    assert info.value.exit_code == 1
    assert "trial t-7 stalled 3 times" in str(info.value) and "KFTUNE_STALL_TIMEOUT_S" in str(info.value)
    stdout, stderr = capfd.readouterr()
    assert stdout.count("epoch=1 eval_f1=0.5\n") == 3  # each attempt's output reached us
    marks = [line for line in stderr.splitlines() if line.startswith("[kftune watchdog]")]
    assert len(marks) == 3
    assert marks[0].startswith("[kftune watchdog] trial t-7: stalled, no progress for")
    assert f"resuming from {out / 'last'} (restart 1 of 2)" in marks[0]
    assert "(restart 2 of 2)" in marks[1] and "restart" not in marks[2]
    # the 2nd and 3rd attempts got the resume flag, always built from the original command
    assert resumed == [cmd, cmd]
    assert stderr.count(f"--resume-from {out}") == 2


def test_without_a_checkpoint_a_stalled_trial_starts_again_as_it_was(tmp_path, capfd, fast):
    cmd = script(tmp_path, "hang.py", HANGS)
    with pytest.raises(UserError):
        supervise([*cmd, "--seed", "1"], tmp_path / "out", what="trial t", stall_s=0.5, restarts=1,
                  resume=lambda c, o: pytest.fail("no checkpoint: nothing to resume"))  # fmt: skip
    err = capfd.readouterr().err
    assert "starting again (no checkpoint yet) (restart 1 of 1)" in err
    assert err.count("--seed 1\n") == 2


def test_a_stall_stops_what_the_trial_started_too(tmp_path, fast):
    """A data-loader-like worker that ignores SIGTERM does not outlive its stalled trial."""
    pidfile = tmp_path / "worker.pid"
    cmd = script(
        tmp_path,
        "workers.py",
        f"""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        worker = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"])
        open({str(pidfile)!r}, "w").write(str(worker.pid))
        time.sleep(3600)
        """,
    )
    proc = subprocess.Popen(cmd)
    try:
        deadline = time.monotonic() + 20
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        worker = int(pidfile.read_text())
        assert worker in descendants(proc.pid)
        with pytest.raises(Stalled, match="no heartbeat yet, no output since"):
            wait_watching(proc, tmp_path / ".heartbeat", 0.5, Activity(), lambda: stop_tree(proc))
        assert proc.poll() is not None
        deadline = time.monotonic() + 10
        while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (
            not Path(f"/proc/{worker}").exists() or "Z" in Path(f"/proc/{worker}/stat").read_text().split()[2]
        )
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_heartbeat_is_judged_by_change_not_by_its_clock(tmp_path, fast):
    """A shared volume may stamp files with another machine's clock: a heartbeat dated 2001 that
    keeps changing is alive; a heartbeat that an earlier attempt left behind is not a beat."""
    hb = tmp_path / ".heartbeat"
    hb.write_text("")
    os.utime(hb, (1e9, 1e9))  # left by a killed attempt, long ago
    cmd = script(
        tmp_path,
        "skewed.py",
        f"""
        import os, time
        for i in range(12):
            time.sleep(0.25)
            os.utime({str(hb)!r}, (1e9 + i + 1, 1e9 + i + 1))  # 2001, but moving
        """,
    )
    proc = subprocess.Popen(cmd)
    # 3 s of beats 0.25 s apart, stall 2 s: the margin is for a slow interpreter start on a busy machine
    assert wait_watching(proc, hb, 2.0, Activity(), lambda: stop_tree(proc)) == 0
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    with pytest.raises(Stalled, match="no heartbeat yet"):  # the stale file did not count
        wait_watching(proc, hb, 2.0, Activity(), lambda: stop_tree(proc))


SUPERVISOR = """
import sys
from pathlib import Path
from kftune.train import watchdog
watchdog.KILL_GRACE_S = 0.5
sys.exit(watchdog.supervise([sys.executable, "-c", sys.argv[1]], Path(sys.argv[2]), what="trial t", stall_s=60))
"""

CHILD = """
import os, signal, sys, time
def stop(signum, frame):
    print(f"child got {signal.Signals(signum).name}", flush=True)
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
print(f"child {os.getpid()}", flush=True)
time.sleep(60)
"""


def test_sigterm_to_the_supervisor_alone_is_forwarded_and_nothing_restarts(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, CHILD, str(tmp_path / "out")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("child ")
    child = int(first.split()[1])
    proc.send_signal(signal.SIGTERM)  # to the supervisor only, as `kill PID` does
    rest, _ = proc.communicate(timeout=30)
    assert rest == "child got SIGTERM\n" and proc.returncode == 128 + signal.SIGTERM
    assert not Path(f"/proc/{child}").exists()


def test_the_trial_dies_with_a_supervisor_killed_hard(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, CHILD, str(tmp_path / "out")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline().split()[1])
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists(), "the trial outlived its supervisor"


# ----------------------------------------------------------------------------- when kftune train supervises


def _args(tmp_path: Path):
    from kftune.train.args import parse_args

    argv = ["--task", "ner", "--data", "demo:ner", "--model", "tiny", "--output-dir", str(tmp_path / "o")]
    return argv, parse_args(argv)


@pytest.mark.parametrize(
    ("env", "supervises"),
    [
        ({}, False),  # unset: no watchdog (a plain `kftune train` stays one process)
        ({"KFTUNE_STALL_TIMEOUT_S": "0"}, False),
        ({"KFTUNE_STALL_TIMEOUT_S": "60", "KFTUNE_WATCHDOG_CHILD": "1"}, False),  # the watched child itself
        ({"KFTUNE_STALL_TIMEOUT_S": "60", "WORLD_SIZE": "2", "RANK": "1"}, False),  # under torchrun
        ({"KFTUNE_STALL_TIMEOUT_S": "60"}, True),
    ],
)
def test_when_kftune_train_watches_itself(tmp_path, monkeypatch, env, supervises):
    from kftune.train import cli as train_cli

    for name in ("KFTUNE_STALL_TIMEOUT_S", "KFTUNE_WATCHDOG_CHILD", "WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    calls: list[dict] = []
    monkeypatch.setattr(
        watchdog, "supervise", lambda command, out, **kw: calls.append({"command": command, **kw}) or 0
    )
    argv, args = _args(tmp_path)
    assert (train_cli.supervised(argv, args) is not None) == supervises
    if supervises:
        (call,) = calls
        assert call["command"] == [sys.executable, "-m", "kftune", "train", *argv]
        assert call["stall_s"] == 60 and call["what"] == "trial o"
        resume = call.get("resume", watchdog.resume_argv)  # the shared policy unless the caller overrides it
        resumed = resume(call["command"], tmp_path / "o")
        assert resumed[-2:] == ["--resume-from", str((tmp_path / "o").resolve())]
        monkeypatch.chdir(tmp_path)  # a relative output dir resumes from its absolute path
        assert resume(call["command"], Path("o"))[-2:] == ["--resume-from", str((tmp_path / "o").resolve())]


def test_rank_0_of_a_distributed_trial_says_why_it_is_not_watched(tmp_path, monkeypatch, capsys):
    from kftune.train import cli as train_cli

    monkeypatch.setenv("KFTUNE_STALL_TIMEOUT_S", "60")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("KFTUNE_WATCHDOG_CHILD", raising=False)
    argv, args = _args(tmp_path)
    assert train_cli.supervised(argv, args) is None
    assert (
        "not applied to a distributed trial (WORLD_SIZE=4): use torchrun --max-restarts"
        in capsys.readouterr().err
    )


def test_a_bad_stall_timeout_fails_the_trial_before_it_starts(tmp_path, kftune_home):
    r = cli("train", "--task", "ner", "--data", "demo:ner", "--model", "tiny", "--output-dir", str(tmp_path / "o"),
            env={"KFTUNE_STALL_TIMEOUT_S": "30min"})  # fmt: skip
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == (
        "kftune train: error: KFTUNE_STALL_TIMEOUT_S='30min': expected seconds (e.g. 1800), "
        "or 0 to turn the watchdog off"
    )


@pytest.mark.e2e
def test_a_hung_trial_restarts_itself_and_completes_with_its_metric_lines_once(tmp_path, kftune_home):
    """The real trainer through the real CLI: 2 epochs of 4 steps, hung (deaf to SIGTERM) after
    step 6 once; the supervisor kills it and resumes it from the epoch-1 checkpoint."""
    out = tmp_path / "seed-1"
    r = cli(
        "train", "--task", "seqcls", "--data", "demo:textcls", "--model", "tiny", "--output-dir", str(out),
        "--num-epochs", "2", "--max-train-samples", "64", "--max-eval-samples", "32",
        "--per-device-train-batch-size", "16", "--learning-rate", "1e-3", "--max-length", "32",
        "--tracking", "off", "--seed", "1",
        env={"KFTUNE_STALL_TIMEOUT_S": "20", "KFTUNE_TEST_HANG_AT_STEP": "6"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["epoch=1", "epoch=2", "final"], r.stdout
    marks = [line for line in r.stderr.splitlines() if line.startswith("[kftune watchdog]")]
    assert len(marks) == 1, r.stderr[-3000:]
    assert marks[0].startswith("[kftune watchdog] trial seed-1: stalled, no progress for")
    assert f"resuming from {out / 'last'} (restart 1 of 2)" in marks[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["resumed_from"] == str(out.resolve())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert not (out / ".heartbeat").exists()
