"""``tpe`` and ``multivariate-tpe`` on Optuna's ``TPESampler``, rebuilt from the trials each call.

Every call creates an in-memory study, adds every trial as a ``FrozenTrial`` (Succeeded or
EarlyStopped with a value -> COMPLETE, Created/Running -> RUNNING, anything else -> FAIL) and
asks ``n`` times; each asked trial stays RUNNING, so with ``constant_liar`` the next ask in the
batch avoids it (Katib's hyperopt service could return duplicates in a batch, katib#1329). An
ask that repeats an existing assignment (possible with int/discrete/categorical parameters) is
discarded and asked again. The sampler is seeded per call from ``random_state`` and the trial
list (:func:`kftune.hpo.base.call_seed`), so a given history always gives the same answer.

``tpe`` - Katib runs it on hyperopt. Settings and their Optuna equivalents:
``gamma`` (0.25, in (0, 1)) -> ``gamma(n) = min(ceil(gamma * sqrt(n)), 25)``, hyperopt's split;
``prior_weight`` (1.0, > 0) -> ``prior_weight``; ``n_EI_candidates`` (24, > 0) ->
``n_ei_candidates``; ``random_state`` (>= 0) -> ``seed``. hyperopt in Katib draws the first batch
(``current_request_number`` trials) at random; kftune uses ``n_startup_trials =
parallelTrialCount``. Differences: Optuna's univariate Parzen estimators differ in detail from
hyperopt's (bandwidths, prior placement); normal/logNormal priors become uniform/logUniform.

``multivariate-tpe`` - Katib runs it on Optuna too: ``TPESampler(multivariate=True,
constant_liar=True)`` with ``n_startup_trials`` (10), ``n_ei_candidates`` (24), ``random_state``.

Optuna is imported lazily and its logging silenced. With 1,000 trials a call takes ~150 ms
(study rebuild + ask), which is why ``asha``/``bohb`` use kftune's own KDE instead.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from kftune.hpo.base import (
    Algorithm,
    Problem,
    Settings,
    Suggestion,
    TrialRecord,
    call_seed,
    unused_assignment,
)
from kftune.hpo.space import Parameter, SearchSpace, format_value, parse_value


def optuna_distributions(space: SearchSpace) -> dict[str, Any]:
    """Our parameters as Optuna distributions (normal priors become uniform, see module doc)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for p in space:
        if p.type == "double":
            step = None if p.is_log else p.step
            out[p.name] = FloatDistribution(float(p.min), float(p.max), log=p.is_log, step=step)
        elif p.type == "int":
            if p.is_log and p.step not in (None, 1):
                out[p.name] = CategoricalDistribution([int(v) for v in p.grid()])
            else:
                out[p.name] = IntDistribution(int(p.min), int(p.max), log=p.is_log, step=int(p.step or 1))
        else:
            out[p.name] = CategoricalDistribution(list(p.values))
    return out


def _optuna_value(p: Parameter, text: str) -> Any:
    v = parse_value(p, text)
    if p.type == "int":
        return int(v)
    if p.type == "double":
        return float(v)
    return v


def build_study(problem: Problem, trials: Sequence[TrialRecord], sampler: Any) -> tuple[Any, dict[str, Any]]:
    """An in-memory study holding every trial that fits the space."""
    import optuna
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    dists = optuna_distributions(problem.space)
    study = optuna.create_study(direction=problem.objective.type, sampler=sampler)
    frozen = []
    for t in trials:
        try:
            params = {p.name: _optuna_value(p, t.assignments[p.name]) for p in problem.space}
        except (KeyError, ValueError):
            continue
        value = t.value(problem.objective)
        if value is not None:
            frozen.append(
                create_trial(state=TrialState.COMPLETE, value=value, params=params, distributions=dists)
            )
        elif t.pending:
            frozen.append(create_trial(state=TrialState.RUNNING, params=params, distributions=dists))
        else:
            frozen.append(create_trial(state=TrialState.FAIL, params=params, distributions=dists))
    study.add_trials(frozen)
    return study, dists


def ask_unique(
    problem: Problem, trials: Sequence[TrialRecord], sampler: Any, n: int, tries: int = 16
) -> list[Suggestion]:
    """Ask ``n`` times, discarding asks that repeat an existing or batch assignment."""
    from optuna.trial import TrialState, create_trial

    if n <= 0:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning, independent-sampling warnings
        study, dists = build_study(problem, trials, sampler)
        space = problem.space
        taken = {space.key(t.assignments) for t in trials}
        out: list[Suggestion] = []
        rng = np.random.default_rng(call_seed(problem, trials, "unused"))
        for _ in range(n):
            a: dict[str, str] = {}
            for _attempt in range(tries):
                trial = study.ask(dists)
                a = {p.name: format_value(p, trial.params[p.name]) for p in space}
                if space.key(a) not in taken:
                    break
                study.tell(trial, state=TrialState.FAIL)
            else:  # the sampler keeps repeating itself: take an unused point of a finite space
                unused = unused_assignment(space, taken, rng)
                if unused is not None:
                    a = unused
                    params = {p.name: _optuna_value(p, a[p.name]) for p in space}
                    study.add_trial(
                        create_trial(state=TrialState.RUNNING, params=params, distributions=dists)
                    )
            taken.add(space.key(a))
            out.append(Suggestion(a))
        return out


class Tpe(Algorithm):
    """Katib's ``tpe`` (hyperopt settings) on Optuna's TPESampler."""

    name = "tpe"

    def _read(self, problem: Problem) -> tuple[Settings, dict[str, Any]]:
        s = Settings(problem.settings, self.name)
        gamma = s.number("gamma", 0.25, lo=0, hi=1, lo_open=True, hi_open=True)
        prior_weight = s.number("prior_weight", 1.0, lo=0, lo_open=True)
        n_ei = s.integer("n_EI_candidates", 24, lo=1, must="an integer > 0")
        s.integer("random_state", 0, lo=0)
        s.reject_unknown()
        return s, {"gamma": gamma, "prior_weight": prior_weight, "n_ei_candidates": n_ei}

    def validate(self, problem: Problem) -> list[str]:
        return self._read(problem)[0].errors

    def notes(self, problem: Problem) -> list[str]:
        return [
            "tpe: Katib runs hyperopt's TPE; kftune runs Optuna's TPESampler with hyperopt's gamma split, "
            "prior_weight and n_EI_candidates, and n_startup_trials = parallelTrialCount"
        ]

    def sampler(self, problem: Problem, trials: Sequence[TrialRecord]) -> Any:
        import optuna

        _, kw = self._read(problem)
        g = kw["gamma"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna 5 marks gamma/prior_weight deprecated (still honoured)
            return optuna.samplers.TPESampler(
                gamma=lambda n: min(int(math.ceil(g * math.sqrt(n))), 25),
                prior_weight=kw["prior_weight"],
                n_ei_candidates=kw["n_ei_candidates"],
                n_startup_trials=max(1, problem.parallel_trial_count),
                constant_liar=True,
                seed=call_seed(problem, trials),
            )

    def suggest(self, problem: Problem, trials: Sequence[TrialRecord], n: int) -> list[Suggestion]:
        self.check(problem)
        return ask_unique(problem, trials, self.sampler(problem, trials), n)


class MultivariateTpe(Algorithm):
    """Katib's ``multivariate-tpe`` (optuna service settings)."""

    name = "multivariate-tpe"

    def _read(self, problem: Problem) -> tuple[Settings, dict[str, Any]]:
        s = Settings(problem.settings, self.name)
        n_startup = s.integer("n_startup_trials", 10, lo=0)
        n_ei = s.integer("n_ei_candidates", 24, lo=1, must="an integer > 0")
        s.integer("random_state", 0, lo=0)
        s.reject_unknown()
        return s, {"n_startup_trials": n_startup, "n_ei_candidates": n_ei}

    def validate(self, problem: Problem) -> list[str]:
        return self._read(problem)[0].errors

    def sampler(self, problem: Problem, trials: Sequence[TrialRecord]) -> Any:
        import optuna

        _, kw = self._read(problem)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.samplers.TPESampler(
                multivariate=True, constant_liar=True, seed=call_seed(problem, trials), **kw
            )

    def suggest(self, problem: Problem, trials: Sequence[TrialRecord], n: int) -> list[Suggestion]:
        self.check(problem)
        return ask_unique(problem, trials, self.sampler(problem, trials), n)
