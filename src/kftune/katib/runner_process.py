"""Trial processes of the local runner: start, read, stop, and recognise them later.

A trial is a plain subprocess (never a shell: its argv is a list), in a process group of its own
(a Ctrl-C in the terminal reaches the runner, which stops its trials itself). Its stdout and
stderr go straight to ``logs/<trial>.out`` / ``logs/<trial>.err`` (files, not pipes: nothing a
trial prints is lost if the runner dies, and a trial never blocks on a busy runner); the runner
reads what the files gained a few times a second and parses metric lines as they come (early
stopping, the progress table).

If the runner dies (``kill -9``), the kernel sends its trials SIGTERM (Linux
``PR_SET_PDEATHSIG``); the trainer stops between two steps with its ``last/`` checkpoint intact.
Where that is not available, ``--resume`` finds survivors by pid and process start time and
stops them (:func:`process_alive`, :func:`stop_process_group`), and re-reads the logs of the
interrupted attempts (:func:`lines_since_attempt`) so that reports the dead runner had not yet
recorded are not lost.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import deque
from pathlib import Path

from kftune.train.watchdog import HAS_PDEATHSIG, die_with_parent


def process_start_time(pid: int) -> str | None:
    """The process's start time (``/proc/PID/stat`` field 22), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after the last ')'
    fields = data[data.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def process_alive(pid: int | None, start: str | None) -> bool:
    """Is the process that was recorded as (pid, start time) still running (and not a zombie)?"""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    now = process_start_time(pid)
    if start is not None and now is not None and now != start:
        return False  # the pid was reused
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().decode("ascii", "replace")
        if state[state.rfind(")") + 2 :].split()[0] in ("Z", "X"):
            return False
    except OSError:
        pass
    return True


def stop_process_group(pid: int, start: str | None, grace_s: float) -> str:
    """SIGTERM the process group led by ``pid``, SIGKILL after ``grace_s``; what happened."""
    if not process_alive(pid, start):
        return "gone"
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not process_alive(pid, start):
            return "terminated"
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return "killed"


class TrialProcess:
    """One running attempt of a trial: the Popen and its two log files, read as they grow."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        cwd: str | None,
        out_path: Path,
        err_path: Path,
        *,
        append: bool = False,
        tail_lines: int = 30,
    ):
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.paths = {"out": out_path, "err": err_path}
        self.append = append
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid_start: str | None = None
        self.started = 0.0
        self.stderr_tail: deque[str] = deque(maxlen=tail_lines)
        self._offset = {"out": 0, "err": 0}
        self._partial = {"out": b"", "err": b""}
        self.stop_reason: str | None = None  # "early" | "kill" | "interrupt"
        self.stop_sent = 0.0
        self.kill_sent = False

    # ------------------------------------------------------------------ start
    def start(self) -> TrialProcess:
        mode = "ab" if self.append else "wb"
        self.paths["out"].parent.mkdir(parents=True, exist_ok=True)
        parent = os.getpid()
        kwargs: dict = {}
        if HAS_PDEATHSIG:
            # SIGTERM when the runner dies: the trainer stops with last/ intact
            kwargs["preexec_fn"] = lambda: die_with_parent(parent, signal.SIGTERM)
        with open(self.paths["out"], mode) as out, open(self.paths["err"], mode) as err:
            self._offset = {"out": out.tell(), "err": err.tell()}
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                **kwargs,
            )
        self.started = time.time()
        self.pid_start = process_start_time(self.proc.pid)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # ------------------------------------------------------------------ reading
    def read(self, stream: str, final: bool = False) -> list[str]:
        """The complete lines the trial has added to a log since the last read (``final``: the
        last partial line too)."""
        try:
            with open(self.paths[stream], "rb") as fh:
                fh.seek(self._offset[stream])
                data = fh.read()
        except OSError:
            return []
        self._offset[stream] += len(data)
        *complete, rest = (self._partial[stream] + data).split(b"\n")
        if final and rest:
            complete.append(rest)
            rest = b""
        self._partial[stream] = rest
        lines = [c.decode("utf-8", "replace").rstrip("\r") for c in complete]
        if stream == "err":
            self.stderr_tail.extend(line for line in lines if line.strip())
        return lines

    # ------------------------------------------------------------------ stopping
    def poll(self) -> int | None:
        assert self.proc is not None
        return self.proc.poll()

    def signal_group(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def terminate(self, reason: str) -> None:
        """SIGTERM the trial's process group (once); ``reason`` says why (early/kill/interrupt)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if not self.stop_sent:
            self.stop_sent = time.monotonic()
            self.signal_group(signal.SIGTERM)

    def kill_if_overdue(self, grace_s: float) -> None:
        if self.stop_sent and not self.kill_sent and time.monotonic() - self.stop_sent > grace_s:
            self.kill_sent = True
            self.signal_group(signal.SIGKILL)

    def write_marker(self, text: str) -> None:
        """A line in both logs (before the process starts), e.g. where a new attempt begins."""
        for path in self.paths.values():
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(text.rstrip("\n") + "\n")


ATTEMPT_MARKER = "----- kftune katib run: attempt "


def attempt_marker(attempt: int, how: str) -> str:
    return f"{ATTEMPT_MARKER}{attempt}, {how} -----"


def lines_since_attempt(path: Path, attempt: int) -> list[str]:
    """The lines of a trial log written by attempts >= ``attempt`` (attempts after the first begin
    with :func:`attempt_marker`)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    current = 1
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith(ATTEMPT_MARKER):
            with contextlib.suppress(ValueError):
                current = int(line[len(ATTEMPT_MARKER) :].split(",")[0])
            continue
        if current >= attempt:
            out.append(line.rstrip("\r"))
    return out
