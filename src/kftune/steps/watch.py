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

from kftune.errors import UserError
from kftune.steps.argv import set_flag
from kftune.train import watchdog
from kftune.train.watchdog import CHILD_ENV, DEFAULT_RESTARTS, HEARTBEAT_FILE, STALL_ENV, Activity, Stalled

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
    """Run ``kftune train TRAIN_ARGS`` (output in ``out_dir``, every attempt's output in a new
    ``log_path``) under the watchdog; returns (exit code, the last output lines). A stalled run restarts from ``out_dir/last`` when it exists;
    after ``restarts`` restarts it fails with StepFailed-worthy UserError (exit 1)."""
    stall = stall_timeout(stall_s)
    heartbeat = out_dir / HEARTBEAT_FILE
    tail: deque[str] = deque(maxlen=15)
    args = list(train_args)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        for attempt in range(restarts + 1):
            try:
                code = _attempt(
                    [sys.executable, "-m", "kftune", "train", *args], log, heartbeat, stall, on_line, tail
                )
                return code, list(tail)
            except Stalled as exc:
                resumable = (out_dir / "last" / "trainer_state.json").is_file()
                message = f"{what}: stalled, {exc}; stopped"
                if attempt == restarts:
                    print(message, file=sys.stderr, flush=True)
                    log.write(f"\n[kftune watchdog] {message}\n")
                    raise UserError(
                        f"{what} stalled {attempt + 1} times (no progress for {stall:.0f} s each time); log {log_path}. "
                        f"Raise {STALL_ENV} if a step legitimately takes longer, or look for a deadlock in the log",
                        exit_code=1,
                    ) from None
                how = (
                    f"resuming from {out_dir / 'last'}" if resumable else "starting again (no checkpoint yet)"
                )
                message += f"; {how} (restart {attempt + 1} of {restarts})"
                print(message, file=sys.stderr, flush=True)
                log.write(f"\n[kftune watchdog] {message}\n")
                if resumable:
                    args = set_flag(args, "--resume-from", str(out_dir))
    raise AssertionError("unreachable")
