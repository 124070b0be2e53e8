"""What ``asha``, ``bohb`` and ``hyperband`` share: a resource parameter, rungs, configurations.

The budget (e.g. epochs) is a search-space parameter named by the ``resource_name`` setting. A
*configuration* is everything else; it keeps its id (label ``kftune.io/config``) when it is
promoted. A *run* is one trial of a configuration at one rung (label ``kftune.io/rung``). A
promotion is a new trial whose assignments equal its parent's except the resource, labelled
with the parent's trial name (``kftune.io/parent-trial``) so that the trial template can pass
``--resume-from`` the parent's checkpoint. Trials without kftune labels (e.g. created by hand)
are placed by their resource value and identified by their non-resource assignments.

Results: a Succeeded trial with an objective value has loss ``value`` when minimising,
``-value`` when maximising; any other finished trial (Failed, Killed, MetricsUnavailable,
EarlyStopped - it did not train its rung's budget - or no metric) has loss +inf: it counts in
its rung but is never promoted; a Created/Running trial is pending and not yet in its rung's
results.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kftune.hpo.base import (
    LABEL_BRACKET,
    LABEL_CONFIG,
    LABEL_PARENT,
    LABEL_RUNG,
    PENDING,
    Problem,
    Settings,
    Suggestion,
    TrialRecord,
)
from kftune.hpo.space import Parameter, SearchSpace, format_value, parse_value

INF = math.inf


@dataclass
class Run:
    """One trial of a configuration at a rung (``loss`` None while pending)."""

    name: str
    config: str
    rung: int
    assignments: dict[str, str]
    loss: float | None
    bracket: int | None = None
    key: tuple[Any, ...] = ()  # the configuration's identity: space.key without the resource

    @property
    def pending(self) -> bool:
        return self.loss is None

    @property
    def promotable(self) -> bool:
        return self.loss is not None and math.isfinite(self.loss)


def read_resource(problem: Problem, s: Settings, *, need_range: bool = True) -> Parameter | None:
    """Read and check the ``resource_name`` setting; errors go to ``s.errors``."""
    name = s.text("resource_name", required=True, hint=" (the name of the budget parameter, e.g. num_epochs)")
    if name is None:
        return None
    if name not in problem.space:
        s.errors.append(
            f"algorithm setting 'resource_name' names '{name}', which is not a parameter "
            f"(parameters: {', '.join(problem.space.names)})"
        )
        return None
    p = problem.space[name]
    if not p.is_numeric:
        s.errors.append(f"resource parameter '{name}' must be of type int or double, not {p.type}")
        return None
    if need_range and p.min <= 0:
        s.errors.append(
            f"resource parameter '{name}' needs feasibleSpace.min > 0 (the smallest budget), got {p.min}"
        )
        return None
    return p


def budget_value(resource: Parameter, budget: float) -> str:
    """The resource's string for a budget (rounded for int resources)."""
    if resource.type == "int":
        return str(int(round(budget)))
    return format_value(resource, budget)


def check_budgets(resource: Parameter, budgets: Sequence[float], s: Settings) -> None:
    for k, b in enumerate(budgets):
        text = budget_value(resource, b)
        try:
            parse_value(resource, text)
        except ValueError as exc:
            s.errors.append(f"budget {text} of rung {k} is not a feasible value of '{resource.name}': {exc}")


def _config_id(key: tuple[Any, ...]) -> str:
    """A label-safe id for a configuration that came without one (``h`` + 10 hex digits)."""
    return "h" + hashlib.blake2b(repr(key).encode(), digest_size=5).hexdigest()


def _label_int(labels: dict[str, str], key: str) -> int | None:
    v = labels.get(key)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        return None


@dataclass
class Ladder:
    """The runs of an experiment, grouped by configuration and rung."""

    problem: Problem
    resource: Parameter
    budgets: list[float]
    runs: list[Run] = field(default_factory=list)

    @staticmethod
    def build(
        problem: Problem, trials: Sequence[TrialRecord], resource: Parameter, budgets: Sequence[float]
    ) -> Ladder:
        # One pass over every trial on every request of the suggestion service (1,000 trials): the
        # helpers (_label_int, TrialRecord.pending/value, Objective.loss) are inlined here.
        ladder = Ladder(problem, resource, list(budgets))
        values = [budget_value(resource, b) for b in budgets]
        parse_key = problem.space.parse_key
        metric, sign = problem.objective.metric, (-1.0 if problem.objective.maximize else 1.0)
        rname = resource.name
        exclude = (rname,)
        n_rungs = len(budgets)
        runs = ladder.runs
        for t in trials:
            a = t.assignments
            if rname not in a:
                continue
            key = parse_key(a, exclude)
            if key is None:
                continue
            labels = t.labels
            rung = _label_int(labels, LABEL_RUNG) if labels else None
            if rung is None or not 0 <= rung < n_rungs:
                try:
                    rung = values.index(budget_value(resource, float(a[rname])))
                except ValueError:
                    continue
            config = labels.get(LABEL_CONFIG) or _config_id(key)
            status = t.status
            if status in PENDING:
                loss = None
            elif (
                status == "Succeeded"
                and (v := t.metrics.get(metric)) is not None
                and math.isfinite(v := float(v))
            ):
                loss = sign * v  # Objective.loss
            else:
                loss = INF
            bracket = _label_int(labels, LABEL_BRACKET) if labels else None
            runs.append(Run(t.name, config, rung, a, loss, bracket, key))
        return ladder

    def configs(self) -> set[str]:
        return {r.config for r in self.runs}

    def config_keys(self) -> set[tuple[Any, ...]]:
        return {r.key for r in self.runs}

    def next_config_id(self, taken: set[str]) -> str:
        nums = [int(c) for c in taken if c.isdigit()]
        i = max(nums) + 1 if nums else 0
        while str(i) in taken:
            i += 1
        return str(i)

    def add(self, run: Run) -> None:
        self.runs.append(run)


def new_config_suggestion(
    assignments: dict[str, str],
    resource: Parameter,
    budget: float,
    rung: int,
    config: str,
    bracket: int | None = None,
) -> Suggestion:
    a = dict(assignments)
    a[resource.name] = budget_value(resource, budget)
    labels = {LABEL_PARENT: "", LABEL_RUNG: str(rung), LABEL_CONFIG: config}
    if bracket is not None:
        labels[LABEL_BRACKET] = str(bracket)
    return Suggestion(a, labels)


def promotion_suggestion(
    parent: Run, resource: Parameter, budget: float, rung: int, bracket: int | None = None
) -> Suggestion:
    """Resume ``parent`` with a larger budget: same assignments except the resource."""
    a = dict(parent.assignments)
    a[resource.name] = budget_value(resource, budget)
    labels = {LABEL_PARENT: parent.name, LABEL_RUNG: str(rung), LABEL_CONFIG: parent.config}
    if bracket is not None:
        labels[LABEL_BRACKET] = str(bracket)
    return Suggestion(a, labels)


def pending_run(s: Suggestion, resource: Parameter, index: int, space: SearchSpace) -> Run:
    """A run for a suggestion made earlier in the same call (pending, so it is not reused)."""
    return Run(
        f"__pending-{index}",
        s.labels[LABEL_CONFIG],
        int(s.labels[LABEL_RUNG]),
        dict(s.assignments),
        None,
        _label_int(s.labels, LABEL_BRACKET),
        space.key(s.assignments, (resource.name,)),
    )


def int_log(x: float, base: float) -> int:
    """floor(log_base(x)), robust to float error (log(243)/log(3) is 4.999999999999999)."""
    k = int(math.floor(math.log(x) / math.log(base) + 1e-9))
    return max(k, 0)
