"""What can go wrong during a trial, how it is recognised, and the test hooks that provoke it.

Test hooks (environment variables, read once per trial; they make the trial raise the same
exception types the real failure raises, and nothing else is faked):

``KFTUNE_TEST_OOM_AT_STEP=N[,M...]``  the N-th training forward pass (1-based, counting every
                                     micro-batch and every retry) raises an out-of-memory error
``KFTUNE_TEST_OOM_ABOVE_BATCH=B``    every training forward pass (and every ``--auto-batch-size``
                                     probe) with more than B rows raises an out-of-memory error
``KFTUNE_TEST_NAN_AT_STEP=N``        the loss of optimizer step N becomes NaN
``KFTUNE_TEST_FREE_BYTES=B``         the free space of the output volume is taken to be B bytes
``KFTUNE_TEST_STEP_SLEEP=S``         sleep S seconds after each optimizer step (to deliver signals)
``KFTUNE_TEST_HANG_AT_STEP=N``       after optimizer step N the trial hangs for good, deaf to SIGTERM
                                     (a deadlock, seed 003's stalled fine-tuning); once per output
                                     directory, so a restarted trial goes on

On CUDA the injected error is a ``torch.OutOfMemoryError``; on CPU it is the ``RuntimeError`` of
torch's CPU allocator (``DefaultCPUAllocator: can't allocate memory``), as in real runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field

import torch

# Exit codes of a trial (docs/contracts.md): 2 bad input, 3 NaN/inf loss, 4 no disk space,
# 5 out of memory even at batch size 1, 128 + signal number when killed.
EXIT_NAN = 3
EXIT_DISK = 4
EXIT_OOM = 5

# A running trial touches <output dir>/.heartbeat at most every HEARTBEAT_S seconds while it makes
# progress (training steps, evaluation batches): what a watchdog reads to tell a stalled process
# from a slow one (kftune.train.watchdog).
HEARTBEAT_S = 5.0

OOM_MARKERS = ("out of memory", "can't allocate memory", "not enough memory", "cannot allocate memory")


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in OOM_MARKERS)


def oom_error(device: torch.device, what: str) -> Exception:
    if device.type == "cuda":
        return torch.OutOfMemoryError(f"CUDA out of memory ({what})")
    return RuntimeError(
        f"[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't allocate memory ({what})"
    )


def free_memory(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class TrialStopped(Exception):
    """The trial ends early; ``status`` goes into metrics.json, ``exit_code`` to the shell."""

    def __init__(self, status: str, message: str, exit_code: int, **details):
        super().__init__(message)
        self.status = status
        self.exit_code = exit_code
        self.details = details


def _ints(name: str) -> list[int]:
    raw = os.environ.get(name, "").strip()
    return [int(x) for x in raw.split(",") if x.strip()] if raw else []


@dataclass
class Hooks:
    oom_at: set[int] = field(default_factory=set)
    oom_above: int | None = None
    nan_at: int | None = None
    free_bytes: int | None = None
    step_sleep: float = 0.0
    hang_at: int | None = None
    forwards: int = 0

    @classmethod
    def from_env(cls) -> Hooks:
        above = _ints("KFTUNE_TEST_OOM_ABOVE_BATCH")
        nan = _ints("KFTUNE_TEST_NAN_AT_STEP")
        free = _ints("KFTUNE_TEST_FREE_BYTES")
        hang = _ints("KFTUNE_TEST_HANG_AT_STEP")
        return cls(
            oom_at=set(_ints("KFTUNE_TEST_OOM_AT_STEP")),
            oom_above=above[0] if above else None,
            nan_at=nan[0] if nan else None,
            free_bytes=free[0] if free else None,
            step_sleep=float(os.environ.get("KFTUNE_TEST_STEP_SLEEP") or 0),
            hang_at=hang[0] if hang else None,
        )

    def before_forward(self, rows: int, device: torch.device, probe: bool = False) -> None:
        if not probe:
            self.forwards += 1
            if self.forwards in self.oom_at:
                raise oom_error(device, f"injected by KFTUNE_TEST_OOM_AT_STEP at forward {self.forwards}")
        if self.oom_above is not None and rows > self.oom_above:
            raise oom_error(
                device, f"injected by KFTUNE_TEST_OOM_ABOVE_BATCH: {rows} rows > {self.oom_above}"
            )

    def after_step(self, step: int, output_dir) -> None:
        if self.step_sleep:
            time.sleep(self.step_sleep)
        if self.hang_at is not None and step == self.hang_at:
            marker = os.path.join(output_dir, ".test-hung")
            if not os.path.exists(marker):
                os.makedirs(output_dir, exist_ok=True)
                open(marker, "w").close()  # noqa: SIM115 - an empty marker
                while True:  # deaf to SIGTERM: only SIGKILL ends it, as with a real deadlock
                    time.sleep(3600)


class SignalGuard:
    """SIGTERM/SIGINT set a flag; the training loop checks it between steps and raises
    ``TrialStopped`` there, so a checkpoint being written is always finished first. While the
    guard is entered, each check also beats ``heartbeat``; leaving the guard removes the file (a
    finished output dir holds only what ``--keep`` and the contract say)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, heartbeat: str | os.PathLike[str] | None = None) -> None:
        self.received: int | None = None
        self._old: dict[int, object] = {}
        self.heartbeat = heartbeat
        self._next_beat = 0.0

    def __enter__(self) -> SignalGuard:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def beat(self) -> None:
        """Touch the heartbeat file (at most every HEARTBEAT_S seconds: one clock read per call)."""
        if self.heartbeat is None:
            return
        now = time.monotonic()
        if now < self._next_beat:
            return
        self._next_beat = now + HEARTBEAT_S
        try:
            with open(self.heartbeat, "a"):
                os.utime(self.heartbeat)
        except OSError:
            pass  # the output directory is not there yet, or the disk is full: the next beat tries again

    def check(self) -> None:
        """Called between training steps and evaluation batches: beat, then stop if signalled."""
        self.beat()
        if self.received is not None:
            name = signal.Signals(self.received).name
            raise TrialStopped("killed", f"stopped by {name}", 128 + self.received, signal=name)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        if self.heartbeat is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.heartbeat)
