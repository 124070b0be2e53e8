"""The experiment's status as Katib's experiment controller computes it, from the local trials.

``pkg/controller.v1beta1/experiment/util/status_util.go``:

- ``currentOptimalTrial``: over the trials in creation order, those with an observation
  (Succeeded and EarlyStopped trials; Katib stores none for failed ones) whose objective value
  (per its metric strategy, min/max falling back to latest) is a number; the first strictly
  better value wins. (Katib also lets a string-valued objective win; numbers only here.)
- **conditions**, checked in this order: the objective goal reached (best >= goal when maximising,
  <= when minimising) -> Succeeded ``ExperimentGoalReached``; failed trials (Failed +
  MetricsUnavailable) >= ``maxFailedTrialCount`` (and > 0) -> Failed ``ExperimentFailed``; completed
  trials >= ``maxTrialCount`` -> Succeeded ``ExperimentMaxTrialsReached``; the suggestion algorithm
  has nothing more to propose and no trial is active -> Succeeded ``ExperimentSuggestionEndReached``
  (local only: Katib's controller has that branch but always passes ``getSuggestionDone=false``, so
  on a cluster such an experiment waits; the validator makes ASHA/BOHB searches end by
  ``maxTrialCount`` instead).
  As in Katib, trials still running when the experiment completes run to their end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kftune.katib.collector import UNAVAILABLE, Metric
from kftune.katib.experiment import Experiment
from kftune.katib.store import TrialRow

COMPLETED = ("Succeeded", "Failed", "Killed", "EarlyStopped", "MetricsUnavailable")
ACTIVE = ("Created", "Running")


@dataclass(frozen=True)
class Condition:
    type: str  # Running | Succeeded | Failed
    reason: str
    message: str

    @property
    def completed(self) -> bool:
        return self.type in ("Succeeded", "Failed")

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "reason": self.reason, "message": self.message}


RUNNING = Condition("Running", "ExperimentRunning", "Experiment is running")


@dataclass
class Optimal:
    trial: TrialRow
    value: float

    def to_katib(self, parameter_order: Sequence[str]) -> dict[str, Any]:
        """``status.currentOptimalTrial``: values are strings, metrics name/min/max/latest."""
        order = {n: i for i, n in enumerate(parameter_order)}
        names = sorted(self.trial.assignments, key=lambda n: (order.get(n, len(order)), n))
        return {
            "bestTrialName": self.trial.name,
            "parameterAssignments": [{"name": n, "value": str(self.trial.assignments[n])} for n in names],
            "observation": {"metrics": [m.to_dict() for m in self.trial.metrics]},
        }


def objective_text(row: TrialRow, metric: str, strategy: str) -> str:
    if row.observation is None:
        return UNAVAILABLE
    for m in row.metrics:
        if m.name == metric:
            return m.value(strategy)
    return UNAVAILABLE


def optimal_trial(rows: Sequence[TrialRow], exp: Experiment) -> Optimal | None:
    obj = exp.objective
    strategy = obj.metric_strategies.get(obj.objective_metric_name, "latest")
    best: Optimal | None = None
    for row in rows:
        text = objective_text(row, obj.objective_metric_name, strategy)
        try:
            value = float(text)
        except ValueError:  # unavailable (or, in Katib only, a string metric)
            continue
        if best is None or (value < best.value if obj.type == "minimize" else value > best.value):
            best = Optimal(row, value)
    return best


def goal_reached(best: Optimal | None, exp: Experiment) -> bool:
    goal = exp.objective.goal
    if goal is None or best is None:
        return False
    return best.value <= goal if exp.objective.type == "minimize" else best.value >= goal


def experiment_condition(
    rows: Sequence[TrialRow], exp: Experiment, suggestion_done: bool, done_message: str = ""
) -> Condition:
    best = optimal_trial(rows, exp)
    if goal_reached(best, exp):
        return Condition(
            "Succeeded",
            "ExperimentGoalReached",
            f"Experiment has succeeded because Objective goal has reached ({best.trial.name}: "  # type: ignore[union-attr]
            f"{exp.objective.objective_metric_name}={best.value:g}, goal {exp.objective.goal:g})",  # type: ignore[union-attr]
        )
    failed = sum(1 for r in rows if r.status in ("Failed", "MetricsUnavailable"))
    max_failed = exp.max_failed_trial_count
    if max_failed is not None and failed and failed >= max_failed:
        return Condition(
            "Failed",
            "ExperimentFailed",
            f"Experiment has failed because max failed count has reached ({failed} >= {max_failed})",
        )
    completed = sum(1 for r in rows if r.status in COMPLETED)
    max_trials = exp.max_trial_count
    if max_trials is not None and completed >= max_trials:
        return Condition(
            "Succeeded",
            "ExperimentMaxTrialsReached",
            f"Experiment has succeeded because max trial count has reached ({completed})",
        )
    active = sum(1 for r in rows if r.status in ACTIVE)
    if suggestion_done and active == 0:
        msg = "Experiment has succeeded because suggestion service has reached the end"
        return Condition(
            "Succeeded",
            "ExperimentSuggestionEndReached",
            msg + (f" ({done_message})" if done_message else ""),
        )
    return RUNNING


def counts(rows: Sequence[TrialRow]) -> dict[str, int]:
    out = {s: 0 for s in ("Created", "Running", *COMPLETED)}
    for r in rows:
        out[r.status] = out.get(r.status, 0) + 1
    return out


def metrics_of(row: TrialRow) -> list[Metric]:
    return row.metrics
