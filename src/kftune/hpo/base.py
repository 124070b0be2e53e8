"""The contract between suggestion algorithms and their callers.

An algorithm is a pure function of (problem, trials): it keeps no state between calls and
rebuilds what it needs from the trial list (assignments, status, final metrics, labels) every
time. Both callers - Katib's ``Suggestion`` gRPC service and the local runner - pass the whole
trial list, running trials included; the algorithm answers with at most ``n`` new assignments.
Given the same problem, the same trials and the same ``random_state`` setting the answer is the
same (see :func:`call_seed`).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kftune.errors import UserError
from kftune.hpo.space import SearchSpace, canonical, remember

#: Katib's trial conditions (``TrialStatus.TrialConditionType``).
TRIAL_CONDITIONS = (
    "Created",
    "Running",
    "Succeeded",
    "Failed",
    "EarlyStopped",
    "Killed",
    "MetricsUnavailable",
)
PENDING = frozenset({"Created", "Running"})

#: Labels kftune's algorithms put on the trials they propose (docs/contracts.md).
LABEL_PARENT = "kftune.io/parent-trial"
LABEL_RUNG = "kftune.io/rung"
LABEL_CONFIG = "kftune.io/config"
LABEL_BRACKET = "kftune.io/bracket"


@dataclass(frozen=True)
class Objective:
    """What to optimise: ``type`` is ``maximize`` or ``minimize``; ``goal`` ends the experiment
    (the caller's business); ``additional_metrics`` are collected, not optimised."""

    type: str
    metric: str
    goal: float | None = None
    additional_metrics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in ("maximize", "minimize"):
            raise ValueError(f"objective type must be maximize or minimize, got {self.type!r}")
        if not self.metric:
            raise ValueError("objective metric name must not be empty")
        object.__setattr__(self, "additional_metrics", tuple(self.additional_metrics))

    @property
    def maximize(self) -> bool:
        return self.type == "maximize"

    def loss(self, value: float) -> float:
        """Smaller is better: the value itself when minimising, its negative when maximising."""
        return -value if self.maximize else value

    @staticmethod
    def from_katib(spec: Mapping[str, Any], where: str = "spec.objective") -> Objective:
        if not isinstance(spec, Mapping):
            raise UserError(f"{where}: must be a mapping with type and objectiveMetricName")
        otype = str(spec.get("type", "")).lower()
        metric = spec.get("objectiveMetricName", spec.get("objective_metric_name"))
        goal = spec.get("goal")
        if otype not in ("maximize", "minimize"):
            raise UserError(f"{where}.type: must be maximize or minimize, got {spec.get('type')!r}")
        if not metric:
            raise UserError(f"{where}.objectiveMetricName: missing; name the metric the trial prints")
        try:
            goal_f = None if goal in (None, "") else float(goal)
        except (TypeError, ValueError):
            raise UserError(f"{where}.goal: must be a number, got {goal!r}") from None
        extra = spec.get("additionalMetricNames", spec.get("additional_metric_names")) or ()
        return Objective(otype, str(metric), goal_f, tuple(str(m) for m in extra))


@dataclass
class TrialRecord:
    """One trial as the algorithms see it.

    ``metrics`` holds the final observed value per metric (Katib's ``status.observation``, after
    its metric strategy); ``intermediate`` the objective's reports in order as ``(step, value)``
    (used by medianstop). ``status`` is Katib's latest trial condition.
    """

    name: str
    assignments: dict[str, str]
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    intermediate: list[tuple[int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.status not in TRIAL_CONDITIONS:
            raise ValueError(
                f"trial {self.name!r}: status must be one of {', '.join(TRIAL_CONDITIONS)}, got {self.status!r}"
            )

    @property
    def pending(self) -> bool:
        """Created or Running: its result is not known yet."""
        return self.status in PENDING

    def value(self, objective: Objective) -> float | None:
        """The objective's value if the trial has a usable result, else None.

        Like Katib's Python suggestion services, Succeeded and EarlyStopped trials with an
        observed objective count as results; a NaN/inf observation counts as none.
        """
        if self.status not in ("Succeeded", "EarlyStopped"):
            return None
        v = self.metrics.get(objective.metric)
        if v is None:
            return None
        v = float(v)
        return v if math.isfinite(v) else None


@dataclass
class Suggestion:
    """A new trial to create: its assignments (strings), labels, optionally its name."""

    assignments: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)
    trial_name: str | None = None


@dataclass(frozen=True)
class Problem:
    """An experiment as the algorithms see it (Katib's ``spec`` minus the trial template)."""

    space: SearchSpace
    objective: Objective
    algorithm_name: str
    settings: Mapping[str, str] = field(default_factory=dict)
    max_trial_count: int | None = None
    parallel_trial_count: int = 3
    max_failed_trial_count: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", {str(k): str(v) for k, v in dict(self.settings).items()})

    @staticmethod
    def from_katib(spec: Mapping[str, Any], where: str = "spec") -> Problem:
        """Build from an Experiment's ``spec`` dict (the YAML, parsed)."""
        if not isinstance(spec, Mapping):
            raise UserError(f"{where}: must be a mapping")
        space = SearchSpace.from_katib(spec.get("parameters") or [], f"{where}.parameters")
        objective = Objective.from_katib(spec.get("objective") or {}, f"{where}.objective")
        algo = spec.get("algorithm") or {}
        name = algo.get("algorithmName", algo.get("algorithm_name")) if isinstance(algo, Mapping) else None
        if not name:
            raise UserError(f"{where}.algorithm.algorithmName: missing; e.g. asha, tpe, random")
        settings: dict[str, str] = {}
        for i, s in enumerate(algo.get("algorithmSettings", algo.get("algorithm_settings")) or []):
            if not isinstance(s, Mapping) or "name" not in s:
                raise UserError(
                    f"{where}.algorithm.algorithmSettings[{i}]: must be {{name: ..., value: ...}}"
                )
            settings[str(s["name"])] = "" if s.get("value") is None else str(s.get("value"))

        def count(key: str, default: int | None) -> int | None:
            v = spec.get(key)
            if v in (None, ""):
                return default
            try:
                return int(v)
            except (TypeError, ValueError):
                raise UserError(f"{where}.{key}: must be an integer, got {v!r}") from None

        return Problem(
            space=space,
            objective=objective,
            algorithm_name=str(name),
            settings=settings,
            max_trial_count=count("maxTrialCount", None),
            parallel_trial_count=count("parallelTrialCount", 3) or 3,
            max_failed_trial_count=count("maxFailedTrialCount", None),
        )


# --------------------------------------------------------------------------- settings


class Settings:
    """Typed reads of algorithm settings that collect human messages instead of raising.

    Each reader returns the default when the setting is absent or invalid, and records a message
    like ``algorithm setting 'reduction_factor' must be an integer > 1, got '1'``.
    """

    def __init__(self, raw: Mapping[str, str], algorithm: str):
        self.raw = dict(raw)
        self.algorithm = algorithm
        self.errors: list[str] = []
        self.read: set[str] = set()

    def _bad(self, name: str, must: str) -> None:
        self.errors.append(f"algorithm setting '{name}' must be {must}, got '{self.raw[name]}'")

    def has(self, name: str) -> bool:
        return name in self.raw

    def integer(
        self,
        name: str,
        default: Any,
        *,
        lo: int | None = None,
        hi: int | None = None,
        must: str | None = None,
    ) -> Any:
        self.read.add(name)
        if name not in self.raw:
            return default
        text = self.raw[name].strip()
        must = must or _range_phrase("an integer", lo, hi)
        try:
            value = float(text)
            if not math.isfinite(value) or value != int(value):
                raise ValueError
            value = int(value)
        except ValueError:
            self._bad(name, must)
            return default
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self._bad(name, must)
            return default
        return value

    def number(
        self,
        name: str,
        default: Any,
        *,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        hi_open: bool = False,
        must: str | None = None,
    ) -> Any:
        self.read.add(name)
        if name not in self.raw:
            return default
        must = must or _range_phrase("a number", lo, hi, lo_open, hi_open)
        try:
            value = float(self.raw[name].strip())
            if not math.isfinite(value):
                raise ValueError
        except ValueError:
            self._bad(name, must)
            return default
        if lo is not None and (value < lo or (lo_open and value == lo)):
            self._bad(name, must)
            return default
        if hi is not None and (value > hi or (hi_open and value == hi)):
            self._bad(name, must)
            return default
        return value

    def choice(self, name: str, default: Any, choices: Sequence[str]) -> Any:
        self.read.add(name)
        if name not in self.raw:
            return default
        value = self.raw[name].strip()
        if value not in choices:
            self._bad(name, "one of " + ", ".join(choices))
            return default
        return value

    def text(self, name: str, default: Any = None, *, required: bool = False, hint: str = "") -> Any:
        self.read.add(name)
        if name not in self.raw or not self.raw[name].strip():
            if required:
                self.errors.append(f"algorithm setting '{name}' is required{hint}")
            return default
        return self.raw[name].strip()

    def require(self, name: str, hint: str = "") -> None:
        if name not in self.raw:
            self.errors.append(f"algorithm setting '{name}' is required{hint}")

    def reject_unknown(self, also_allowed: Iterable[str] = (), note: str = "") -> None:
        allowed = self.read | set(also_allowed)
        for name in self.raw:
            if name not in allowed:
                known = ", ".join(sorted(allowed)) or "none"
                self.errors.append(
                    f"unknown algorithm setting '{name}' for algorithm {self.algorithm} (known: {known}){note}"
                )


def _range_phrase(kind: str, lo: Any, hi: Any, lo_open: bool = False, hi_open: bool = False) -> str:
    if lo is not None and hi is not None:
        left, right = ("(" if lo_open else "["), (")" if hi_open else "]")
        return f"{kind} in {left}{lo}, {hi}{right}"
    if lo is not None:
        return f"{kind} {'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f"{kind} {'<' if hi_open else '<='} {hi}"
    return kind


# --------------------------------------------------------------------------- seeds


def call_seed(problem: Problem, trials: Sequence[TrialRecord], salt: str = "") -> int:
    """A 32-bit seed for one call: a function of ``random_state`` (default 0), the algorithm, a
    salt, and the multiset of existing assignments (not trial names, not metrics).

    Different trial lists give different seeds, so two calls never replay the same random draws
    (which would propose duplicates); the same trial list and ``random_state`` give the same seed.
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{problem.settings.get('random_state', '0')}|{problem.algorithm_name}|{salt}|".encode())
    keys = sorted([_assignment_key(t.assignments) for t in trials])
    h.update("\x1e".join(keys).encode())
    return int.from_bytes(h.digest(), "little") & 0x7FFFFFFF


_KEY_CACHE: dict[tuple, str] = {}


def _assignment_key(assignments: Mapping[str, Any]) -> str:
    """``k=v`` joined by \\x1f in name order, memoised on the items (a suggestion service hashes
    the same 1,000 trials on every request; the memo changes no result and is cleared when full)."""
    token: tuple | None = tuple(assignments.items())
    try:
        return _KEY_CACHE[token]
    except KeyError:
        pass
    except TypeError:  # an unhashable value: no memo
        token = None
    key = "\x1f".join(f"{k}={v}" for k, v in sorted(assignments.items()))
    if token is not None and all(type(v) is str for _, v in token):  # a hit is never 1 for "1" or True for 1
        remember(_KEY_CACHE, token, key)
    return key


def stable_seed(*parts: Any) -> int:
    """A 32-bit seed from any printable parts (for draws that must not depend on the batch)."""
    h = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") & 0x7FFFFFFF


# --------------------------------------------------------------------------- interface


class Algorithm(ABC):
    """A suggestion algorithm (Optuna-style small interface).

    - :meth:`validate` lists problems with the experiment for this algorithm (settings named,
      values quoted); an empty list means it can run.
    - :meth:`suggest` returns at most ``n`` new trials; fewer means "nothing to propose right
      now" (e.g. waiting for a rung to finish).
    - :meth:`is_complete` is True when the algorithm will never propose anything again.
    - :meth:`notes` lists (non-fatal) ways this implementation differs from Katib's service of
      the same name, for the local runner to print.
    """

    name: str = ""

    def validate(self, problem: Problem) -> list[str]:
        return []

    @abstractmethod
    def suggest(self, problem: Problem, trials: Sequence[TrialRecord], n: int) -> list[Suggestion]: ...

    def is_complete(self, problem: Problem, trials: Sequence[TrialRecord]) -> bool:
        return False

    def notes(self, problem: Problem) -> list[str]:
        return []

    def check(self, problem: Problem) -> None:
        """Raise UserError if :meth:`validate` finds anything."""
        errors = self.validate(problem)
        if errors:
            raise UserError(f"algorithm {self.name}: " + "; ".join(errors))


def relevant_trials(problem: Problem, trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Trials whose assignments fit the search space (others are ignored by every algorithm)."""
    return [t for t in trials if not problem.space.check(t.assignments)]


def unused_assignment(
    space: SearchSpace,
    taken: set[tuple[str, ...]],
    rng: Any,
    exclude: Sequence[str] = (),
    limit: int = 100_000,
) -> dict[str, str] | None:
    """A random assignment (without ``exclude``) whose key is not in ``taken``, drawn from the
    enumerated space; None when the space is continuous, larger than ``limit`` or exhausted."""
    params = [p for p in space if p.name not in exclude]
    total = 1
    for p in params:
        m = p.grid_size()
        if m is None:
            return None
        total *= m
    if total > limit:
        return None
    columns = [[(canonical(p, v), v) for v in p.grid()] for p in params]
    free = [combo for combo in itertools.product(*columns) if tuple(c for c, _ in combo) not in taken]
    if not free:
        return None
    chosen = free[int(rng.integers(len(free)))]
    return {p.name: text for p, (_, text) in zip(params, chosen, strict=True)}


def unique(
    make: Callable[[int], dict[str, str]],
    taken: set[tuple[str, ...]],
    space: SearchSpace,
    rng: Any,
    exclude: Sequence[str] = (),
    tries: int = 32,
) -> dict[str, str]:
    """Call ``make(attempt)`` until its assignment is new (its ``space.key(a, exclude)`` not in
    ``taken``); after ``tries`` draws, pick an unused point of a finite space at random; if the
    space is exhausted (or continuous and unlucky) keep the last draw. Records the key in ``taken``."""
    a: dict[str, str] = {}
    for attempt in range(tries):
        a = make(attempt)
        k = space.key(a, exclude)
        if k not in taken:
            taken.add(k)
            return a
    fallback = unused_assignment(space, taken, rng, exclude)
    if fallback is not None:
        a = {**a, **fallback}
    taken.add(space.key(a, exclude))
    return a
