"""The metric-line contract between a trial and whoever watches it.

A trial prints one line per evaluation on stdout::

    epoch=2 eval_f1=0.873100 eval_precision=0.870000 eval_recall=0.876200 eval_loss=0.412000

and, after training, one ``final`` line with test metrics (when a test split exists)::

    final test_f1=0.861200 test_loss=0.433000

Katib's StdOut collector (default regex ``([\\w|-]+)\\s*=\\s*([+-]?\\d*(\\.\\d+)?([Ee][+-]?\\d+)?)``) and
the local runner parse the same text. Nothing else a trial prints on stdout may contain
``name=number``. This module is imported by the trainer, the local runner and the validator,
so it must stay free of heavy imports.
"""

from __future__ import annotations

import math
import re

# Metrics printed on each epoch line, by task (the objective must be one of these).
METRICS_BY_TASK: dict[str, tuple[str, ...]] = {
    "ner": ("eval_f1", "eval_precision", "eval_recall", "eval_accuracy", "eval_loss"),
    "seqcls": ("eval_accuracy", "eval_macro_f1", "eval_loss"),
    "mlm": ("eval_loss", "eval_perplexity"),
}
# Which way is better, for reports and defaults.
GOALS: dict[str, str] = {
    "eval_f1": "maximize",
    "eval_precision": "maximize",
    "eval_recall": "maximize",
    "eval_accuracy": "maximize",
    "eval_macro_f1": "maximize",
    "eval_loss": "minimize",
    "eval_perplexity": "minimize",
}

# Katib's StdOut metrics collector default filter (pkg/metricscollector/v1beta1/common/const.go).
KATIB_DEFAULT_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
NAN_STATUS_LINE = "status=nan_loss"


def _finite(value: object) -> bool:
    return value is not None and math.isfinite(float(value))  # type: ignore[arg-type]


def format_epoch_line(epoch: int, metrics: dict[str, float]) -> str:
    """``epoch=<int> eval_x=<float> ...`` in the order given (``eval_`` prefix added if missing)."""
    parts = [f"epoch={int(epoch)}"]
    for name, value in metrics.items():
        if not _finite(value):  # Katib's regex would read "x=nan" as an empty value: omit it
            continue
        key = name if name.startswith("eval_") else f"eval_{name}"
        parts.append(f"{key}={float(value):.6f}")
    return " ".join(parts)


def format_final_line(metrics: dict[str, float], prefix: str = "test_") -> str:
    parts = ["final"]
    for name, value in metrics.items():
        if not _finite(value):
            continue
        key = name if name.startswith(prefix) else f"{prefix}{name.removeprefix('eval_')}"
        parts.append(f"{key}={float(value):.6f}")
    return " ".join(parts)


def parse_line(line: str, pattern: str = KATIB_DEFAULT_FILTER) -> list[tuple[str, float]]:
    """All ``(name, value)`` pairs a Katib-style filter finds in one line, in order.

    Like Katib's collector, group 1 is the name and group 2 the value; matches whose value
    does not parse as a float are skipped.
    """
    out: list[tuple[str, float]] = []
    for match in re.finditer(pattern, line):
        if match.lastindex is None or match.lastindex < 2:
            continue
        name, raw = match.group(1), match.group(2)
        try:
            out.append((name, float(raw)))
        except (TypeError, ValueError):
            continue
    return out
