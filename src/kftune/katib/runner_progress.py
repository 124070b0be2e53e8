"""The local runner's live progress on stderr.

On a terminal: a table (trial, status, rung, objective, elapsed, parameters) redrawn in place
only when what it shows changes (elapsed times at most once a second), with events such as
failures printed above it. Elsewhere (a pipe, a log file, CI): one plain line per event.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from typing import TextIO

from kftune.hpo.base import LABEL_RUNG


@dataclass
class TrialView:
    name: str
    status: str
    params: dict[str, str]
    labels: dict[str, str]
    objective: str  # formatted value, or ""
    started: float | None
    finished: float | None
    epoch_reports: int = 0

    @property
    def rung(self) -> str:
        return self.labels.get(LABEL_RUNG, "")

    def elapsed(self, now: float) -> str:
        if self.started is None:
            return ""
        end = self.finished if self.finished is not None else now
        return format_seconds(end - self.started)


def format_seconds(s: float) -> str:
    s = max(s, 0.0)
    if s < 60:
        return f"{s:.1f}s" if s < 10 else f"{s:.0f}s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def format_number(text: str) -> str:
    try:
        v = float(text)
    except ValueError:
        return text
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.3e}"
    return f"{v:.4g}"


def format_params(params: dict[str, str], skip: tuple[str, ...] = ()) -> str:
    return " ".join(f"{k}={format_number(v)}" for k, v in params.items() if k not in skip)


class Progress:
    """Prints the runner's progress; ``mode``: auto, table, plain or none."""

    def __init__(self, metric: str, mode: str = "auto", stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "table" if _isatty(self.stream) and os.environ.get("TERM") != "dumb" else "plain"
        self.mode = mode
        self.metric = metric
        self.t0 = time.time()
        self._drawn_lines = 0
        self._last_text = ""
        self._last_draw = 0.0
        self._last_shape = ""

    # ------------------------------------------------------------------ events
    def _stamp(self) -> str:
        return f"[{format_seconds(time.time() - self.t0):>6}]"

    def say(self, text: str) -> None:
        """A message that stays (printed above the table on a terminal)."""
        if self.mode == "none":
            return
        self._clear()
        for line in text.splitlines() or [""]:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._last_text = ""  # force a redraw

    def event(self, trial: str, what: str) -> None:
        """One trial event: a plain line (not shown on the table, which shows the state)."""
        if self.mode == "plain":
            self.stream.write(f"{self._stamp()} {trial} {what}\n")
            self.stream.flush()

    # ------------------------------------------------------------------ table
    def update(self, views: list[TrialView], summary: str, force: bool = False) -> None:
        if self.mode != "table":
            return
        now = time.time()
        text, shape = self.render(views, summary, now)
        if text == self._last_text:
            return
        if not force and shape == self._last_shape and now - self._last_draw < 1.0:
            return  # only elapsed times changed: at most once a second
        self._clear()
        self.stream.write(text)
        self.stream.flush()
        self._drawn_lines = text.count("\n")
        self._last_text, self._last_shape, self._last_draw = text, shape, now

    def render(self, views: list[TrialView], summary: str, now: float) -> tuple[str, str]:
        size = shutil.get_terminal_size((120, 40))
        max_rows = max(size.lines - 4, 3)
        active = [v for v in views if v.status in ("Created", "Running")]
        done = [v for v in views if v.status not in ("Created", "Running")]
        shown = active[-max_rows:]
        shown = done[-(max_rows - len(shown)) :] + shown if len(shown) < max_rows else shown
        shown.sort(key=lambda v: views.index(v))
        header = ("TRIAL", "STATUS", "RUNG", self.metric.upper(), "ELAPSED", "PARAMETERS")
        rows = [
            (v.name, v.status, v.rung, v.objective, v.elapsed(now), format_params(v.params)) for v in shown
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
        lines = [summary]
        for r in [header, *rows]:
            line = "  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
            lines.append(line[: size.columns - 1])
        if len(shown) < len(views):
            lines.append(f"... {len(views) - len(shown)} more (kftune katib trials DIR lists all)")
        shape = (
            "\n".join("|".join((v.name, v.status, v.rung, v.objective)) for v in shown)
            + summary.split(" elapsed")[0]
        )
        return "\n".join(lines) + "\n", shape

    def _clear(self) -> None:
        if self.mode == "table" and self._drawn_lines:
            self.stream.write(f"\x1b[{self._drawn_lines}F\x1b[J")
            self._drawn_lines = 0

    def close(self) -> None:
        if self.mode == "table" and self._last_text:
            self._clear()
            self.stream.write(self._last_text)
            self.stream.flush()
            self._drawn_lines = 0


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
