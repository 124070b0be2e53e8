"""The retrain and fine-tune steps run ``kftune train`` under the stall watchdog (seed 003:
"fine-tuning occasionally stalls and needs restarting"; kftune.train.watchdog says how a stall is
told from a slow run). A stalled run's process group is stopped (SIGTERM, then SIGKILL: a
deadlocked process does not answer SIGTERM) and the run starts again, from its ``last/``
checkpoint when it has one (``--resume-from``), at most ``restarts`` times; its output goes to one
log file per seed.

``stall_s`` defaults to ``$KFTUNE_STALL_TIMEOUT_S`` (the chart's ``stallTimeoutSeconds``, in the
settings ConfigMap every step reads), else 1800 s; 0 turns the watchdog off.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from kftune.train import watchdog
from kftune.train.watchdog import CHILD_ENV, DEFAULT_RESTARTS, HEARTBEAT_FILE, Activity, Stalled

DEFAULT_STALL_S = 1800.0


def stall_timeout(value: float | None = None) -> float:
    """``value``, else ``$KFTUNE_STALL_TIMEOUT_S``, else 1800 s; 0 means no watchdog."""
    return watchdog.stall_timeout(value, default=DEFAULT_STALL_S)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the trial's process group, SIGKILL what is left after KILL_GRACE_S."""
    for sig, wait in ((signal.SIGTERM, watchdog.KILL_GRACE_S), (signal.SIGKILL, 30.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _attempt(
    argv: list[str], log, heartbeat: Path, stall_s: float, on_line: Callable[[str], None] | None, tail: deque
) -> int:
    """One run of ``argv``; its output to ``log`` (and ``on_line``). Raises Stalled."""
    proc = subprocess.Popen(
        argv,
        env={**os.environ, CHILD_ENV: "1"},  # this is its watchdog: it does not watch itself too
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,  # its own process group: a stall stops torch's workers too
    )
    activity = Activity()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            activity.touch()
            log.write(line)
            log.flush()
            if line.strip():
                tail.append(line.rstrip())
            if on_line is not None:
                on_line(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = watchdog.wait_watching(proc, heartbeat, stall_s, activity, lambda: _stop_group(proc))
    except Stalled:
        reader.join(timeout=5)
        raise
    except BaseException:
        if proc.poll() is None:
            _stop_group(proc)
        raise
    reader.join(timeout=5)
    return code


def run_watched(
    train_args: list[str],
    out_dir: Path,
    log_path: Path,
    *,
    what: str,
    stall_s: float | None = None,
    restarts: int = DEFAULT_RESTARTS,
    on_line: Callable[[str], None] | None = None,
) -> tuple[int, list[str]]:
    """Run ``kftune train TRAIN_ARGS`` (output in ``out_dir``; every attempt's output, and a line
    per stop, in a new ``log_path``) under the watchdog; returns (exit code, the last output
    lines). Restarts as :func:`kftune.train.watchdog.with_restarts` says (UserError, exit 1, after
    ``restarts`` of them)."""
    stall = stall_timeout(stall_s)
    heartbeat = out_dir / HEARTBEAT_FILE
    tail: deque[str] = deque(maxlen=15)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:

        def report(message: str) -> None:
            print(message, file=sys.stderr, flush=True)
            log.write(f"\n{watchdog.MARK} {message}\n")

        code = watchdog.with_restarts(
            lambda argv: _attempt(argv, log, heartbeat, stall, on_line, tail),
            [sys.executable, "-m", "kftune", "train", *train_args],
            out_dir,
            what=what,
            stall_s=stall,
            restarts=restarts,
            report=report,
            log_path=log_path,
        )
    return code, list(tail)
