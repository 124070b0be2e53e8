"""Step-time breakdown (``--profile-steps N``): off the hot path unless asked for.

For N optimizer steps from the 21st step of the trial's last epoch on (after warm-up and compilation), each
phase of a step — ``data`` (the micro-batch's tensors), ``forward_backward``, ``optimizer``
(gradient clipping, optimizer and LR-scheduler step), ``host`` (the loop's own bookkeeping:
NaN flag, counters, signal check) — is timed twice: ``issue`` is the host time to get through the
phase's Python (launching its GPU work), ``done`` adds the wait for the device to finish it
(``torch.cuda.synchronize``). ``issue`` close to ``done`` means the GPU waited for the host
(launch-bound); ``done`` far above ``issue`` means the GPU was the bottleneck. The profiled steps
are slower than the others (the syncs stop host/device overlap); the unprofiled steps' mean time
is reported beside them (``step_ms_unprofiled``). Outside the window every call is one attribute
test.
"""

from __future__ import annotations

import time

import torch

PHASES = ("data", "forward_backward", "optimizer", "host")
WARMUP_STEPS = 20


class StepProfiler:
    def __init__(self, device: torch.device, steps: int, warmup: int = WARMUP_STEPS) -> None:
        self.device = device
        self.steps = steps
        self.warmup = warmup
        self.active = False
        self._t = 0.0
        self._epoch_step = 0
        self._issue = dict.fromkeys(PHASES, 0.0)
        self._done = dict.fromkeys(PHASES, 0.0)
        self._profiled = 0
        self._plain_time = 0.0
        self._plain_steps = 0
        self._plain_t0: float | None = None
        self._enabled = False
        self.result: dict | None = None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start_epoch(self, enabled: bool = True) -> None:
        """``enabled``: profile this epoch (the trainer profiles only the last one, so the earlier
        epochs' samples/s stay unperturbed)."""
        self._enabled = enabled
        self._epoch_step = 0
        self._issue = dict.fromkeys(PHASES, 0.0)
        self._done = dict.fromkeys(PHASES, 0.0)
        self._profiled = 0
        self._plain_time = 0.0
        self._plain_steps = 0
        self._plain_t0 = None

    def begin_step(self) -> None:
        self._epoch_step += 1
        if not self._enabled:
            return
        self.active = self.warmup < self._epoch_step <= self.warmup + self.steps
        if self.active:
            if self._plain_t0 is not None:
                self._close_plain()
            self._sync()
            self._t = time.perf_counter()
        elif self._epoch_step > self.warmup + self.steps and self._plain_t0 is None:
            self._sync()
            self._plain_t0 = time.perf_counter()

    def mark(self, phase: str) -> None:
        if not self.active:
            return
        issued = time.perf_counter()
        self._sync()
        now = time.perf_counter()
        self._issue[phase] += issued - self._t
        self._done[phase] += now - self._t
        self._t = now

    def end_step(self) -> None:
        if self.active:
            self.mark("host")
            self._profiled += 1
            self.active = False
        elif self._plain_t0 is not None:
            self._plain_steps += 1

    def _close_plain(self) -> None:
        self._sync()
        self._plain_time += time.perf_counter() - self._plain_t0
        self._plain_t0 = None

    def end_epoch(self) -> None:
        if self._plain_t0 is not None:
            self._close_plain()
        if not self._profiled:
            return
        n = self._profiled
        self.result = {
            "steps": n,
            "from_epoch_step": self.warmup + 1,
            "issue_ms": {k: round(1000 * v / n, 3) for k, v in self._issue.items()},
            "done_ms": {k: round(1000 * v / n, 3) for k, v in self._done.items()},
            "step_ms_profiled": round(1000 * sum(self._done.values()) / n, 3),
            "step_ms_unprofiled": round(1000 * self._plain_time / self._plain_steps, 3)
            if self._plain_steps
            else None,
            "unprofiled_steps": self._plain_steps,
        }


class NullProfiler:
    active = False
    result = None

    def start_epoch(self, enabled: bool = True) -> None: ...
    def begin_step(self) -> None: ...
    def mark(self, phase: str) -> None: ...
    def end_step(self) -> None: ...
    def end_epoch(self) -> None: ...
