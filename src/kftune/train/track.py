"""The trainer's side of MLflow tracking: one run per trial, never fatal.

Talks to ``kftune.registry.tracking.Tracker`` (``start``/``log_metrics``/``log_artifact``/
``log_model``/``end``). When tracking is off, or any call raises, the trial goes on: a tracking
problem never costs a training run.
"""

from __future__ import annotations

import sys
from typing import Any


class NullTracker:
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def log_artifact(self, path) -> None: ...
    def log_model(self, model_dir, task: str) -> None: ...
    def end(self, status: str) -> None: ...


class SafeTracker:
    """Forward to a real tracker; the first failure is reported once on stderr and tracking stops."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def _call(self, name: str, *args, **kwargs) -> None:
        if self._inner is None:
            return
        try:
            getattr(self._inner, name)(*args, **kwargs)
        except Exception as exc:  # tracking must never kill training
            print(
                f"kftune train: warning: tracking {name} failed ({exc.__class__.__name__}: {exc}); "
                "metrics stay in metrics.json",
                file=sys.stderr,
            )
            self._inner = None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._call("log_metrics", metrics, step=step)

    def log_artifact(self, path) -> None:
        self._call("log_artifact", path)

    def log_model(self, model_dir, task: str) -> None:
        self._call("log_model", model_dir, task)

    def end(self, status: str) -> None:
        self._call("end", status)


def start(enabled: bool, output_dir, *, experiment: str, run_name: str, tags: dict[str, str], params: dict):
    if not enabled:
        return NullTracker()
    try:
        from kftune.registry.tracking import Tracker

        inner = Tracker.start(output_dir, experiment=experiment, run_name=run_name, tags=tags, params=params)
    except Exception as exc:
        print(
            f"kftune train: warning: tracking could not start ({exc.__class__.__name__}: {exc}); "
            "metrics stay in metrics.json",
            file=sys.stderr,
        )
        return NullTracker()
    return SafeTracker(inner)
