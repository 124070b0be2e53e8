"""Trial processes of the local runner: start, read, stop, and recognise them later.

A trial is a plain subprocess (never a shell: its argv is a list), in a process group of its own
(a Ctrl-C in the terminal reaches the runner, which stops its trials itself). Its stdout and
stderr are pipes the runner reads as they arrive (metric lines are parsed at once, for early
stopping and the progress table) and copies to ``logs/<trial>.out`` / ``logs/<trial>.err``.

If the runner dies (``kill -9``), the kernel sends its trials SIGTERM (Linux
``PR_SET_PDEATHSIG``); the trainer stops between two steps with its ``last/`` checkpoint intact.
Where that is not available, ``--resume`` finds survivors by pid and process start time and
stops them (:func:`process_alive`, :func:`stop_process_group`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - exotic libc
        return None


_LIBC = _libc()


def _child_setup(parent: int) -> None:  # pragma: no cover - runs in the child
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the runner died before prctl took effect
            os._exit(143)


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
    """One running attempt of a trial: the Popen, its two pipes and its log files."""

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
        self.out_path = out_path
        self.err_path = err_path
        self.append = append
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid_start: str | None = None
        self.started = 0.0
        self.stderr_tail: deque[str] = deque(maxlen=tail_lines)
        self._partial = {"out": b"", "err": b""}
        self._open_streams: set[str] = set()
        self._logs: dict[str, object] = {}
        self.stop_reason: str | None = None  # "early" | "kill" | "interrupt"
        self.stop_sent = 0.0
        self.kill_sent = False

    # ------------------------------------------------------------------ start
    def start(self) -> TrialProcess:
        mode = "ab" if self.append else "wb"
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        self._logs = {"out": open(self.out_path, mode), "err": open(self.err_path, mode)}  # noqa: SIM115
        parent = os.getpid()
        kwargs: dict = {}
        if _LIBC is not None:
            kwargs["preexec_fn"] = lambda: _child_setup(parent)
        try:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                bufsize=0,
                **kwargs,
            )
        except OSError:
            self.close_logs()
            raise
        self.started = time.time()
        self.pid_start = process_start_time(self.proc.pid)
        for stream in ("out", "err"):
            os.set_blocking(self.fileno(stream), False)
        self._open_streams = {"out", "err"}
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def fileno(self, stream: str) -> int:
        assert self.proc is not None
        pipe = self.proc.stdout if stream == "out" else self.proc.stderr
        assert pipe is not None
        return pipe.fileno()

    @property
    def streams_open(self) -> set[str]:
        return set(self._open_streams)

    # ------------------------------------------------------------------ reading
    def read(self, stream: str) -> tuple[list[str], bool]:
        """Complete lines now available on a stream (copied to its log), and whether it ended."""
        if stream not in self._open_streams:
            return [], True
        chunks = []
        eof = False
        while True:
            try:
                data = os.read(self.fileno(stream), 65536)
            except BlockingIOError:
                break
            except OSError:
                eof = True
                break
            if not data:
                eof = True
                break
            chunks.append(data)
            if len(data) < 65536:
                break
        data = b"".join(chunks)
        log = self._logs.get(stream)
        if data and log is not None:
            log.write(data)  # type: ignore[attr-defined]
            log.flush()  # type: ignore[attr-defined]
        buf = self._partial[stream] + data
        *complete, rest = buf.split(b"\n")
        if eof and rest:
            complete.append(rest)
            rest = b""
        self._partial[stream] = rest
        lines = [c.decode("utf-8", "replace").rstrip("\r") for c in complete]
        if stream == "err":
            self.stderr_tail.extend(line for line in lines if line.strip())
        if eof:
            self._open_streams.discard(stream)
        return lines, eof

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

    def close_logs(self) -> None:
        for log in self._logs.values():
            with contextlib.suppress(OSError):
                log.close()  # type: ignore[attr-defined]
        self._logs = {}

    def finish(self) -> int:
        """Wait for the exit status, then close the pipes and logs (read them first)."""
        assert self.proc is not None
        code = self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._open_streams.clear()
        self.close_logs()
        return code

    def write_marker(self, text: str) -> None:
        """A line in both logs (before the process starts), e.g. where a new attempt begins."""
        for path in (self.out_path, self.err_path):
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(text.rstrip("\n") + "\n")
