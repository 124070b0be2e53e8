"""The stall watchdog (seed 003: "fine-tuning occasionally stalls and needs restarting").

A running trial touches ``<output dir>/.heartbeat`` while it makes progress (training steps and
evaluation batches, at most every few seconds; kftune.train.failures.SignalGuard). A watchdog
that sees neither the heartbeat change nor any output for ``stall_s`` seconds stops the run
(SIGTERM, then SIGKILL: a deadlocked process does not answer SIGTERM) and starts it again, from
its own ``last/`` checkpoint when it has one, at most ``restarts`` times. A slow run that still
beats or prints is never touched. The heartbeat is compared with its previous value, not with this
machine's clock, so a shared volume whose server clock is off does not fool the watchdog.

Two watchdogs use this module:

- ``kftune train`` watches itself when ``KFTUNE_STALL_TIMEOUT_S`` is set to a number of seconds
  (the Katib YAMLs set it; unset or 0: no watchdog): the process the trial was started as becomes a
  small supervisor (no torch) that runs the real trial as its child, passes its stdout and stderr
  through unchanged (the Katib metrics collector and the local runner read them), forwards
  SIGTERM/SIGINT/SIGHUP, and exits with the child's exit code. In a Katib pod the container and its
  metrics collector see one process that ends once; only the child is restarted.
- the retrain and fine-tune pipeline steps (kftune.steps.watch), default 1800 s there.

The child runs with ``KFTUNE_WATCHDOG_CHILD=1``, so it never supervises itself again.

This module must not import torch: the supervisor is a light process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kftune.errors import UserError
from kftune.steps.argv import set_flag

HEARTBEAT_FILE = ".heartbeat"
STALL_ENV = "KFTUNE_STALL_TIMEOUT_S"
CHILD_ENV = "KFTUNE_WATCHDOG_CHILD"
DEFAULT_RESTARTS = 2
KILL_GRACE_S = 10.0
POLL_S = 1.0
MARK = "[kftune watchdog]"

PR_SET_PDEATHSIG = 1


class Stalled(Exception):
    pass


def stall_timeout(value: float | None = None, default: float = 0.0) -> float:
    """``value``, else ``$KFTUNE_STALL_TIMEOUT_S``, else ``default``; 0 means no watchdog."""
    if value is not None:
        return max(0.0, float(value))
    raw = os.environ.get(STALL_ENV, "").strip()
    return parse_stall_timeout(raw) if raw else default


def parse_stall_timeout(raw: str) -> float:
    """``KFTUNE_STALL_TIMEOUT_S``'s text as seconds >= 0 (UserError naming the variable otherwise)."""
    try:
        seconds = float(raw)
    except ValueError:
        raise UserError(
            f"{STALL_ENV}={raw!r}: expected seconds (e.g. 1800), or 0 to turn the watchdog off"
        ) from None
    if not seconds >= 0 or seconds == float("inf"):
        raise UserError(f"{STALL_ENV}={raw!r}: expected seconds >= 0 (0 turns the watchdog off)")
    return seconds


class Activity:
    """When the watched process last printed something (updated by the threads that read it)."""

    def __init__(self) -> None:
        self.last = time.time()

    def touch(self) -> None:
        self.last = time.time()


def wait_watching(
    proc: subprocess.Popen,
    heartbeat: Path,
    stall_s: float,
    activity: Activity,
    stop: Callable[[], None],
    paused: Callable[[], bool] = lambda: False,
) -> int:
    """Wait for ``proc``; its exit code. When neither ``heartbeat`` has changed nor ``activity``
    moved for ``stall_s`` seconds (0: never), ``stop()`` it and raise :class:`Stalled`.
    While ``paused()`` (the process is being stopped on purpose) nothing is judged."""
    started = time.time()
    beat = started
    seen: int | None = None
    with contextlib.suppress(OSError):  # a heartbeat left by an attempt before this one is not a beat
        seen = heartbeat.stat().st_mtime_ns
    while True:
        try:
            return proc.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            pass
        if stall_s <= 0 or paused():
            continue
        with contextlib.suppress(OSError):  # gone once the trainer has left its loop: keep the last seen
            mtime = heartbeat.stat().st_mtime_ns
            if mtime != seen:
                seen, beat = mtime, time.time()
        now = time.time()
        quiet = now - max(beat, activity.last)
        if quiet > stall_s:
            stop()
            what = f"last heartbeat {now - beat:.0f} s ago" if beat > started else "no heartbeat yet"
            raise Stalled(f"no progress for {quiet:.0f} s ({what}, no output since)")


# ----------------------------------------------------------------------------- the process tree


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc; children before their own children)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                data = fh.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = data[data.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.append(child)
                todo.append(child)
    return out


def _kill(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop_tree(proc: subprocess.Popen, grace_s: float | None = None) -> None:
    """SIGTERM ``proc`` and everything below it, then SIGKILL whatever is left after ``grace_s``:
    a process stuck in a deadlock ignores SIGTERM, and torch's data-loader workers (below it) may
    outlive it."""
    grace = KILL_GRACE_S if grace_s is None else grace_s
    below = descendants(proc.pid)
    _kill([proc.pid, *below], signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    below = list(dict.fromkeys(below + descendants(proc.pid)))  # orphans are no longer below it
    _kill(below, signal.SIGKILL)
    if proc.poll() is None:
        _kill([proc.pid], signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - exotic libc
        return None


_LIBC = _libc()
HAS_PDEATHSIG = _LIBC is not None


def die_with_parent(parent: int, sig: int) -> None:  # pragma: no cover - runs in the child
    """For ``preexec_fn``, in the child before exec: the kernel sends it ``sig`` when ``parent``
    dies (Linux ``PR_SET_PDEATHSIG``); if the parent is already gone, exit at once (128 + sig)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(128 + sig)


def _pump(fd: int, out_fd: int, activity: Activity) -> None:
    """Copy what the child writes on ``fd`` to ``out_fd`` as it comes (bytes, unchanged)."""
    broken = False
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        activity.touch()
        while data and not broken:
            try:
                data = data[os.write(out_fd, data) :]
            except OSError:  # a broken pipe: nobody reads our output any more, keep draining the child's
                broken = True


# ----------------------------------------------------------------------------- kftune train


def say(message: str) -> None:
    """One line on stderr, marked so that the local runner can tell it from the trial's own."""
    with contextlib.suppress(OSError):
        sys.stderr.flush()
        os.write(2, f"{MARK} {message}\n".encode("utf-8", "replace"))


def exit_code(returncode: int) -> int:
    return returncode if returncode >= 0 else 128 - returncode


def resume_argv(command: list[str], out_dir: Path) -> list[str]:
    """``command`` continuing from ``out_dir/last``: ``--resume-from`` the output dir, made absolute
    (a Katib trial's output dir is often relative to its working directory)."""
    return set_flag(command, "--resume-from", str(out_dir.resolve()))


def with_restarts(
    attempt: Callable[[list[str]], int],
    command: Sequence[str],
    out_dir: Path,
    *,
    what: str,
    stall_s: float,
    restarts: int,
    report: Callable[[str], None],
    resume: Callable[[list[str], Path], list[str]] = resume_argv,
    log_path: Path | None = None,
    stopped: Callable[[], int | None] = lambda: None,
) -> int:
    """The restart policy both watchdogs share: ``attempt(argv)`` runs one attempt (raising
    :class:`Stalled`); a stalled one starts again with ``resume(command, out_dir)`` when
    ``out_dir/last`` holds a checkpoint, else as ``command`` was, at most ``restarts`` times; each
    stop is ``report``-ed in one line; then UserError (exit 1). ``stopped()`` is the exit code once
    the run was stopped on purpose (no further attempt), else None."""
    argv = list(command)
    for number in range(restarts + 1):
        code = stopped()
        if code is not None:
            return code
        try:
            return attempt(argv)
        except Stalled as exc:
            message = f"{what}: stalled, {exc}; stopped"
        code = stopped()
        if code is not None or number == restarts:
            report(message)
            if code is not None:
                return code
            log = f"; log {log_path}" if log_path is not None else ""
            raise UserError(
                f"{what} stalled {number + 1} times (no progress for {stall_s:.0f} s each time){log}. "
                f"Raise {STALL_ENV} if a step legitimately takes longer, set it to 0 to turn the "
                "watchdog off, or look for a deadlock in the log",
                exit_code=1,
            )
        resumable = (out_dir / "last" / "trainer_state.json").is_file()
        how = f"resuming from {out_dir / 'last'}" if resumable else "starting again (no checkpoint yet)"
        report(f"{message}; {how} (restart {number + 1} of {restarts})")
        argv = resume(list(command), out_dir) if resumable else list(command)
    raise AssertionError("unreachable")


def supervise(
    command: Sequence[str],
    out_dir: Path,
    *,
    what: str,
    stall_s: float,
    restarts: int = DEFAULT_RESTARTS,
    resume: Callable[[list[str], Path], list[str]] = resume_argv,
) -> int:
    """Run ``command`` (a ``kftune train`` trial writing to ``out_dir``) as a child under the
    watchdog, restarting it as :func:`with_restarts` says; returns the exit code to exit with."""
    heartbeat = out_dir / HEARTBEAT_FILE
    env = dict(os.environ)
    env[CHILD_ENV] = "1"
    state: dict[str, object] = {"proc": None, "signal": None}

    def forward(signum: int, frame: object) -> None:
        state["signal"] = signum
        proc = state["proc"]
        if isinstance(proc, subprocess.Popen) and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, signum)

    def received() -> int | None:
        sig = state["signal"]
        return 128 + sig if isinstance(sig, int) else None

    parent = os.getpid()

    def attempt(argv: list[str]) -> int:
        activity = Activity()
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # SIGKILL: a supervisor dies before its child only when killed hard (signals to it
            # are forwarded), and a stalled child would ignore SIGTERM
            preexec_fn=(lambda: die_with_parent(parent, signal.SIGKILL)) if HAS_PDEATHSIG else None,
        )  # the same process group: a signal to the group (Ctrl-C, the runner) reaches both
        state["proc"] = proc
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [
            threading.Thread(target=_pump, args=(src.fileno(), dst, activity), daemon=True)
            for src, dst in ((proc.stdout, 1), (proc.stderr, 2))
        ]
        for pump in pumps:
            pump.start()
        try:
            code = wait_watching(
                proc,
                heartbeat,
                stall_s,
                activity,
                lambda: stop_tree(proc),
                paused=lambda: received() is not None,
            )
        finally:
            if proc.poll() is not None:  # ended or stopped (not an error of ours): pass on its last words
                for pump in pumps:
                    pump.join(timeout=5)
                proc.stdout.close()
                proc.stderr.close()
        return exit_code(code)

    old: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            old[sig] = signal.signal(sig, forward)
    try:
        return with_restarts(
            attempt, command, out_dir, what=what, stall_s=stall_s, restarts=restarts, resume=resume,
            report=say, stopped=received,
        )  # fmt: skip
    except BaseException:
        proc = state["proc"]
        if isinstance(proc, subprocess.Popen) and proc.poll() is None:
            stop_tree(proc)
        raise
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
