"""Helpers for the hpo tests: the seed-000 search space and a deterministic asynchronous loop."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from kftune.hpo import (
    LABEL_CONFIG,
    LABEL_PARENT,
    LABEL_RUNG,
    Objective,
    Problem,
    SearchSpace,
    TrialRecord,
    get_algorithm,
)

SEED000_PARAMETERS = [
    {
        "name": "learning_rate",
        "parameterType": "double",
        "feasibleSpace": {"min": "6e-6", "max": "5e-5", "distribution": "logUniform"},
    },
    {"name": "weight_decay", "parameterType": "double", "feasibleSpace": {"min": "0.0", "max": "0.2"}},
    {"name": "warmup_ratio", "parameterType": "double", "feasibleSpace": {"min": "0.0", "max": "0.12"}},
    {"name": "attention_dropout", "parameterType": "double", "feasibleSpace": {"min": "0.0", "max": "0.2"}},
    {"name": "hidden_dropout", "parameterType": "double", "feasibleSpace": {"min": "0.0", "max": "0.2"}},
    {
        "name": "per_device_train_batch_size",
        "parameterType": "categorical",
        "feasibleSpace": {"list": ["16", "32", "64"]},
    },
    {"name": "num_epochs", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "9"}},
]


def seed_space() -> SearchSpace:
    return SearchSpace.from_katib(SEED000_PARAMETERS)


def problem(
    algorithm: str,
    settings: dict[str, str] | None = None,
    *,
    space: SearchSpace | None = None,
    objective: Objective | None = None,
    parallel: int = 9,
    max_trials: int | None = None,
) -> Problem:
    return Problem(
        space or seed_space(),
        objective or Objective("maximize", "eval_f1"),
        algorithm,
        settings or {},
        max_trial_count=max_trials,
        parallel_trial_count=parallel,
    )


def smooth_score(a: dict[str, str], budget_key: str = "num_epochs") -> float:
    """A toy F1: best near lr 2.3e-5, wd 0.14; more epochs help (saturating)."""
    lr = float(a["learning_rate"])
    wd = float(a["weight_decay"])
    quality = 0.9 - 0.08 * (math.log(lr) - math.log(2.3e-5)) ** 2 - 0.5 * (wd - 0.14) ** 2
    epochs = float(a.get(budget_key, "9"))
    return quality - 0.2 * 0.6**epochs


@dataclass
class Simulation:
    """Trials of a finished simulated run plus every proposal with the state it was made in."""

    trials: list[TrialRecord]
    proposals: list[tuple[list[TrialRecord], TrialRecord]] = field(default_factory=list)
    calls: int = 0

    def at_rung(self, rung: int) -> list[TrialRecord]:
        return [t for t in self.trials if t.labels.get(LABEL_RUNG) == str(rung)]


def simulate(
    prob: Problem,
    workers: int,
    score: Callable[[TrialRecord], float],
    *,
    resource: str = "num_epochs",
    fail: Callable[[TrialRecord], bool] = lambda t: False,
    max_trials: int = 2000,
) -> Simulation:
    """Run ``prob`` with ``workers`` parallel slots until the algorithm has nothing more to do.

    A trial takes as long as the epochs it trains (a promotion only trains the epochs beyond its
    parent's: it resumes); finishing order is (time, creation order), so the run is deterministic.
    Every free slot is one requested suggestion, asked for together like Katib does.
    """
    algo = get_algorithm(prob.algorithm_name)
    trials: list[TrialRecord] = []
    by_name: dict[str, TrialRecord] = {}
    sim = Simulation(trials)
    running: list[tuple[float, int, str]] = []
    now, free = 0.0, workers
    while len(trials) < max_trials:
        if free:
            sim.calls += 1
            snapshot = [
                TrialRecord(t.name, dict(t.assignments), t.status, dict(t.metrics), dict(t.labels))
                for t in trials
            ]
            for s in algo.suggest(prob, trials, free):
                name = f"trial-{len(trials):04d}"
                t = TrialRecord(name, dict(s.assignments), "Running", {}, dict(s.labels))
                parent = by_name.get(s.labels.get(LABEL_PARENT, ""))
                done = (
                    float(parent.assignments[resource]) if parent and resource in parent.assignments else 0.0
                )
                budget = float(s.assignments.get(resource, 1))
                heapq.heappush(running, (now + max(budget - done, 0.5), len(trials), name))
                trials.append(t)
                by_name[name] = t
                sim.proposals.append((snapshot, t))
                free -= 1
        if not running:
            break
        now, _, name = heapq.heappop(running)
        t = by_name[name]
        if fail(t):
            t.status = "Failed"
        else:
            t.status = "Succeeded"
            t.metrics = {prob.objective.metric: score(t)}
        free += 1
    return sim


def rung_counts(sim: Simulation, n_rungs: int) -> list[int]:
    return [len(sim.at_rung(k)) for k in range(n_rungs)]


def config_of(t: TrialRecord) -> str:
    return t.labels[LABEL_CONFIG]
