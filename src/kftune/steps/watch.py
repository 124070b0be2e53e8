"""Run ``kftune train`` under a stall watchdog (seed 003: "fine-tuning occasionally stalls and
needs restarting").

A trial touches ``<output dir>/.heartbeat`` while it makes progress (every few seconds during
training steps and evaluation batches; kftune.train.failures). When neither the heartbeat nor the
trial's output has moved for ``stall_s`` seconds, the process group is stopped (SIGTERM, then
SIGKILL: a deadlocked process does not answer SIGTERM) and the trial starts again, from its
``last/`` checkpoint when it has one (``--resume-from``), at most ``restarts`` times. A slow
trial that still beats is never touched.

``stall_s`` defaults to ``$KFTUNE_STALL_TIMEOUT_S`` (the chart's ``stallTimeoutSeconds``, in the
settings ConfigMap every step reads), else 1800 s; 0 turns the watchdog off.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from kftune.errors import UserError
from kftune.steps.argv import set_flag
from kftune.train.failures import HEARTBEAT_FILE

DEFAULT_STALL_S = 1800.0
DEFAULT_RESTARTS = 2
STALL_ENV = "KFTUNE_STALL_TIMEOUT_S"
KILL_GRACE_S = 10.0
POLL_S = 1.0


class Stalled(Exception):
    pass


def stall_timeout(value: float | None = None) -> float:
    """``value``, else ``$KFTUNE_STALL_TIMEOUT_S``, else 1800 s; 0 means no watchdog."""
    if value is not None:
        return max(0.0, float(value))
    raw = os.environ.get(STALL_ENV, "").strip()
    if not raw:
        return DEFAULT_STALL_S
    try:
        seconds = float(raw)
    except ValueError:
        raise UserError(
            f"{STALL_ENV}={raw!r}: expected seconds (e.g. 1800), or 0 to turn the watchdog off"
        ) from None
    if seconds < 0:
        raise UserError(f"{STALL_ENV}={raw!r}: expected seconds >= 0 (0 turns the watchdog off)")
    return seconds


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the trial's process group, SIGKILL what is left after KILL_GRACE_S."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 30.0)):
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
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,  # its own process group: a stall stops torch's workers too
    )
    last_output = [time.time()]

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            last_output[0] = time.time()
            log.write(line)
            log.flush()
            if line.strip():
                tail.append(line.rstrip())
            if on_line is not None:
                on_line(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started = beat = time.time()
    try:
        while True:
            try:
                code = proc.wait(timeout=POLL_S)
                reader.join(timeout=5)
                return code
            except subprocess.TimeoutExpired:
                pass
            if stall_s <= 0:
                continue
            with contextlib.suppress(OSError):  # gone once the trainer has left its loop: keep the last seen
                beat = max(beat, heartbeat.stat().st_mtime)
            now = time.time()
            quiet = now - max(beat, last_output[0])
            if quiet > stall_s:
                _stop_group(proc)
                reader.join(timeout=5)
                seen = f"last heartbeat {now - beat:.0f} s ago" if beat > started else "no heartbeat yet"
                raise Stalled(f"no progress for {quiet:.0f} s ({seen}, no output since)")
    except BaseException:
        if proc.poll() is None:
            _stop_group(proc)
        raise


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
