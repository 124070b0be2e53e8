"""A simulated Katib control loop that drives kftune's suggestion service over real gRPC.

It does what Katib's controllers do with a suggestion service (kubeflow/katib,
``pkg/controller.v1beta1``), step by step:

- experiment status (``experiment/util/status_util.go``): Succeeded once completed trials
  (succeeded, failed, killed, early-stopped, metrics-unavailable) reach ``maxTrialCount``; Failed
  once failed + metrics-unavailable trials reach ``maxFailedTrialCount``;
- ``ReconcileTrials`` (``experiment_controller.go``): active = pending + running, completed =
  succeeded + failed + killed + early-stopped (not metrics-unavailable); when active <
  parallelTrialCount, ``addCount = min(maxTrialCount - completed, parallel) - active`` and the
  Suggestion's ``spec.requests`` becomes ``len(trials) + addCount``;
- ``SyncAssignments`` (``suggestionclient.go``): ``current_request_number = requests -
  suggestionCount``; the request carries the experiment (``ConvertExperiment``) and every trial
  except those with unavailable metrics (``ConvertTrials``), with its labels, latest condition and
  observation reduced by the metric strategies; a reply whose size is not exactly the number asked
  for, or a gRPC error, keeps nothing (the controller retries later);
- trials are created from the new assignments with Katib's ``<experiment>-<8 random chars>`` names
  and the reply's labels.

A trial trains ``budget - parent's budget`` epochs (it resumes its parent), so it finishes after
that many time units; its metric lines come from a deterministic toy objective that improves
with epochs and depends on the hyperparameters. Chosen trials end "MetricsUnavailable" instead.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from kftune.hpo import LABEL_PARENT, TrialRecord
from kftune.katib import proto
from kftune.katib.experiment import Experiment
from kftune.katib.service import experiment_message, trial_message

KATIB_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery utilrand alphanums


def toy_f1(a: dict[str, str], epoch: int) -> float:
    """Best near lr 2.3e-5, weight decay 0.14, batch 32, little dropout; more epochs help."""
    lr, wd = float(a["learning_rate"]), float(a["weight_decay"])
    drop = float(a.get("attention_dropout", 0)) + float(a.get("hidden_dropout", 0))
    batch = {"16": -0.004, "32": 0.0, "64": -0.008}.get(a.get("batch_size", "32"), 0.0)
    quality = 0.92 - 0.06 * (math.log(lr) - math.log(2.3e-5)) ** 2 - 0.4 * (wd - 0.14) ** 2 - 0.05 * drop
    return quality + batch - 0.25 * 0.55**epoch


@dataclass
class SimTrial:
    name: str
    index: int
    assignments: dict[str, str]
    labels: dict[str, str]
    condition: str = "Running"
    ended: int | None = None  # how many GetSuggestions calls had been made when it finished
    observation: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> min/max/latest

    def record(self, strategies: dict[str, str]) -> TrialRecord:
        """What the controller sends for this trial (metrics reduced by their strategies)."""
        metrics = {name: obs[strategies.get(name, "latest")] for name, obs in self.observation.items()}
        return TrialRecord(self.name, dict(self.assignments), self.condition, metrics, dict(self.labels))


@dataclass
class Call:
    """One GetSuggestions round trip: what was sent and what came back."""

    visible: list[TrialRecord]
    asked: int
    total: int
    clock: float = 0.0
    reply: list[tuple[dict[str, str], dict[str, str]]] | None = None
    code: grpc.StatusCode | None = None
    message: str = ""


class KatibSim:
    def __init__(
        self,
        experiment: Experiment,
        channel: grpc.Channel,
        *,
        resource: str = "num_epochs",
        unavailable: Callable[[SimTrial], bool] = lambda t: False,
        seed: int = 0,
    ):
        self.exp = experiment
        self.stub = proto.SuggestionStub(channel)
        self.api = proto.pb2()
        self.message = experiment_message(experiment.name, experiment.spec)
        self.objective_msg = self.message.spec.objective
        self.strategies = dict(experiment.objective.metric_strategies)
        self.parallel = experiment.parallel_trial_count
        self.max_trials = experiment.max_trial_count
        self.max_failed = experiment.max_failed_trial_count
        self.resource = resource
        self.unavailable = unavailable
        self.rng = random.Random(seed)
        self.trials: list[SimTrial] = []
        self.by_name: dict[str, SimTrial] = {}
        self.requests = 0
        self.suggestion_count = 0
        self.calls: list[Call] = []
        self.clock = 0.0
        self.running: list[tuple[float, int, str]] = []
        self.condition = "Running"
        self.reason = ""

    # -------------------------------------------------------------- controllers
    def count(self, *conditions: str) -> int:
        return sum(1 for t in self.trials if t.condition in conditions)

    def update_status(self) -> None:
        completed = self.count("Succeeded", "Failed", "Killed", "EarlyStopped", "MetricsUnavailable")
        failed = self.count("Failed", "MetricsUnavailable")
        if self.max_failed is not None and failed and failed >= self.max_failed:
            self.condition, self.reason = "Failed", "ExperimentFailed"
        elif self.max_trials is not None and completed >= self.max_trials:
            self.condition, self.reason = "Succeeded", "ExperimentMaxTrialsReached"

    def reconcile_trials(self) -> None:
        active = self.count("Created", "Running")
        completed = self.count("Succeeded", "Failed", "Killed", "EarlyStopped")
        if active >= self.parallel:
            return
        required = (
            self.parallel if self.max_trials is None else min(self.max_trials - completed, self.parallel)
        )
        add = max(required - active, 0)
        if add > 0:
            self.requests = len(self.trials) + add

    def sync_assignments(self) -> None:
        asked = self.requests - self.suggestion_count
        if asked <= 0:
            return
        visible = [t.record(self.strategies) for t in self.trials if t.condition != "MetricsUnavailable"]
        request = self.api.GetSuggestionsRequest(
            experiment=self.message,
            trials=[trial_message(t, self.objective_msg) for t in visible],
            current_request_number=asked,
            total_request_number=self.requests,
        )
        call = Call(visible, asked, self.requests, self.clock)
        self.calls.append(call)
        try:
            reply = self.stub.GetSuggestions(request, timeout=30)
        except grpc.RpcError as exc:
            call.code, call.message = exc.code(), exc.details()
            return
        call.reply = [
            ({a.name: a.value for a in pa.assignments}, dict(pa.labels)) for pa in reply.parameter_assignments
        ]
        if len(call.reply) != asked:  # "The response contains unexpected trials"
            call.code, call.message = grpc.StatusCode.UNKNOWN, "The response contains unexpected trials"
            return
        for assignments, labels in call.reply:
            self.create_trial(assignments, labels)
        self.suggestion_count += asked

    def create_trial(self, assignments: dict[str, str], labels: dict[str, str]) -> None:
        name = f"{self.exp.name}-" + "".join(self.rng.choice(KATIB_NAME_CHARS) for _ in range(8))
        t = SimTrial(name, len(self.trials), assignments, labels)
        parent = self.by_name.get(labels.get(LABEL_PARENT, ""))
        done = int(parent.assignments[self.resource]) if parent else 0
        budget = int(assignments[self.resource])
        self.trials.append(t)
        self.by_name[name] = t
        heapq.heappush(self.running, (self.clock + max(budget - done, 1), t.index, name))

    def finish(self, t: SimTrial) -> None:
        t.ended = len(self.calls)
        if self.unavailable(t):
            t.condition = "MetricsUnavailable"
            return
        parent = self.by_name.get(t.labels.get(LABEL_PARENT, ""))
        first = int(parent.assignments[self.resource]) + 1 if parent else 1
        for epoch in range(first, int(t.assignments[self.resource]) + 1):
            f1 = toy_f1(t.assignments, epoch)
            line = {
                "eval_f1": f1,
                "eval_precision": f1 - 0.01,
                "eval_recall": f1 + 0.01,
                "eval_loss": 1.2 - f1,
            }
            for metric, value in line.items():
                obs = t.observation.setdefault(metric, {"min": value, "max": value, "latest": value})
                obs["min"], obs["max"], obs["latest"] = min(obs["min"], value), max(obs["max"], value), value
        t.condition = "Succeeded"

    # -------------------------------------------------------------- the loop
    def run(self, limit: int = 10_000) -> str:
        """Run until the experiment completes ("Succeeded"/"Failed") or stalls ("stalled": no
        trial running and the service will not fill the request)."""
        for _ in range(limit):
            self.update_status()
            if self.condition != "Running":
                return self.condition
            self.reconcile_trials()
            self.sync_assignments()
            if not self.running:
                return "stalled"
            self.clock, _, name = heapq.heappop(self.running)
            self.finish(self.by_name[name])
        raise AssertionError("simulation did not end")

    # -------------------------------------------------------------- views
    def at_rung(self, rung: int) -> list[SimTrial]:
        return [t for t in self.trials if t.labels.get("kftune.io/rung") == str(rung)]

    def errors(self) -> list[Call]:
        return [c for c in self.calls if c.code is not None]


def request_experiment(experiment: Experiment) -> Any:
    return experiment_message(experiment.name, experiment.spec)
