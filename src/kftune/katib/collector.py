"""Metrics collection with the semantics of Katib's StdOut and File collectors, offline.

On a cluster, Katib's metrics-collector sidecar (``cmd/metricscollector/v1beta1/file-metricscollector``
and ``pkg/metricscollector/v1beta1/file-metricscollector``) reads the trial's output, turns it into
an *observation log* (a list of ``(metric name, value string)`` records) and sends it to the DB
manager; the trial controller then reduces the log to ``status.observation`` (``getMetrics`` in
``pkg/controller.v1beta1/trial/trial_controller_util.go``). Reproduced here:

- **TEXT lines** (StdOut collector, and File collector with ``format: TEXT``): a line is looked at
  only if it contains one of the metric names (objective or additionalMetricNames) as a substring;
  then every filter regexp (``source.filter.metricsFormat``, or Katib's default
  ``([\\w|-]+)\\s*=\\s*([+-]?\\d*(\\.\\d+)?([Ee][+-]?\\d+)?)``) is applied with find-all; group 1
  (trimmed) is the name, group 2 (trimmed) the value; only names equal to a metric name are kept.
  Values stay strings, as in Katib.
- **JSON lines** (File collector, ``format: JSON``): each non-empty line is a JSON object; a metric
  is recorded only if its value is a JSON *string* (Katib's ``jsonObj[m].(string)``: numbers are
  ignored). A line that is not JSON fails the collection.
- **No objective reported**: the whole log is replaced by one ``objective = "unavailable"``
  record (``newObservationLog``), so the trial ends ``MetricsUnavailable``.
- **Observation**: for each metric with a strategy (the objective and additional metrics), ``min``
  and ``max`` over the values that parse as floats and ``latest`` the last value reported, each
  ``"unavailable"`` when there is none. The value a trial reports to suggestion algorithms and
  the experiment's best-trial choice is ``min``/``max``/``latest`` per the metric's strategy,
  falling back to ``latest`` when ``min``/``max`` is unavailable (``convertTrialObservation``,
  ``getObjectiveMetricValue``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kftune.train.metric_lines import KATIB_DEFAULT_FILTER

UNAVAILABLE = "unavailable"  # pkg/controller.v1beta1/consts UnavailableMetricValue


class CollectionError(Exception):
    """The collector could not read the trial's metrics (Katib's sidecar would exit with an error)."""


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value


@dataclass(frozen=True)
class MetricLog:
    """One record of an observation log: a metric name and its value as written."""

    name: str
    value: str

    @property
    def number(self) -> float | None:
        return _float(self.value)


class TextFilter:
    """Katib's TEXT-format line parser for one experiment's metric names and filters."""

    def __init__(self, metric_names: Sequence[str], filters: Sequence[str] = ()):
        self.metric_names = tuple(metric_names)
        self._names = set(metric_names)
        self.patterns = [re.compile(f) for f in (filters or (KATIB_DEFAULT_FILTER,))]

    def parse(self, line: str) -> list[MetricLog]:
        if not any(m in line for m in self.metric_names):
            return []
        out: list[MetricLog] = []
        for pattern in self.patterns:
            for match in pattern.finditer(line):
                if match.re.groups < 2:
                    continue
                name = (match.group(1) or "").strip()
                value = (match.group(2) or "").strip()
                if name in self._names:
                    out.append(MetricLog(name, value))
        return out


def parse_json_line(line: str, metric_names: Sequence[str]) -> list[MetricLog]:
    """Katib's JSON-format parser for one line (empty lines give nothing)."""
    if not line.strip():
        return []
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CollectionError(f"metrics file line is not JSON ({exc.msg}): {line[:120]!r}") from None
    if not isinstance(obj, dict):
        raise CollectionError(f"metrics file line is not a JSON object: {line[:120]!r}")
    return [MetricLog(m, obj[m]) for m in metric_names if isinstance(obj.get(m), str)]


@dataclass
class Metric:
    """Katib's ``Metric`` of ``status.observation.metrics``: strings, ``unavailable`` if none."""

    name: str
    min: str = UNAVAILABLE
    max: str = UNAVAILABLE
    latest: str = UNAVAILABLE

    def value(self, strategy: str) -> str:
        """The metric's value under a strategy (min/max fall back to latest, as Katib does)."""
        if strategy == "min":
            return self.latest if self.min == UNAVAILABLE else self.min
        if strategy == "max":
            return self.latest if self.max == UNAVAILABLE else self.max
        return self.latest

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "min": self.min, "max": self.max, "latest": self.latest}


def objective_reported(logs: Iterable[MetricLog], objective: str) -> bool:
    return any(log.name == objective for log in logs)


def observation(logs: Sequence[MetricLog], strategies: Mapping[str, str]) -> list[Metric]:
    """``getMetrics``: reduce an observation log to one ``Metric`` per strategy name.

    ``strategies`` maps metric name -> min|max|latest, objective first (its order is kept).
    If the objective (the first name) was never reported, every metric is unavailable except the
    objective's ``latest``, which is ``unavailable`` too: Katib stores only that record.
    """
    names = list(strategies)
    metrics = {name: Metric(name) for name in names}
    if names and not objective_reported(logs, names[0]):
        logs = [MetricLog(names[0], UNAVAILABLE)]
    for log in logs:
        metric = metrics.get(log.name)
        if metric is None:
            continue
        value = log.number
        if value is not None:
            if metric.min == UNAVAILABLE:
                metric.min = metric.max = log.value
            elif value < float(metric.min):
                metric.min = log.value
            elif value > float(metric.max):
                metric.max = log.value
        metric.latest = log.value  # records are in report order: the last one is the latest
    return [metrics[n] for n in names]


def metric_value(metrics: Sequence[Metric], name: str, strategy: str) -> float | None:
    """The float value of ``name`` under ``strategy``, None if unavailable or not a number."""
    for m in metrics:
        if m.name == name:
            value = _float(m.value(strategy))
            return value
    return None


def observation_available(metrics: Sequence[Metric], objective: str) -> bool:
    """``IsObservationAvailable``: the objective has a ``latest`` other than unavailable."""
    return any(m.name == objective and m.latest != UNAVAILABLE for m in metrics)


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
