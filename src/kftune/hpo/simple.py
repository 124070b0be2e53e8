"""Model-free algorithms: ``random``, ``sobol`` and ``grid``.

- ``random`` (Katib: hyperopt's ``rand``): independent draws from each parameter's prior.
  Setting: ``random_state``. Batches and repeats are de-duplicated where the space allows.
- ``sobol`` (Katib: goptuna's Sobol sampler): a scrambled Sobol sequence (``scipy.stats.qmc``)
  seeded by ``random_state`` (default 0); the k-th trial gets the k-th point, mapped through
  each parameter's prior quantile function. Katib's goptuna sequence is unscrambled and takes
  no settings (it ignores unknown ones); kftune accepts ``random_state`` and rejects the rest.
- ``grid`` (Katib: optuna's ``GridSampler``): the Cartesian product of every parameter's grid
  (ints by step, doubles need a step and follow Katib's ``np.arange(min, max + step, step)``
  without values above max, lists as listed). kftune proposes the combinations in product order
  (first parameter slowest) instead of optuna's random order, so runs are easy to read; it is
  complete once every combination has a trial.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence

import numpy as np

from kftune.hpo.base import Algorithm, Problem, Settings, Suggestion, TrialRecord, call_seed, unique
from kftune.hpo.space import SearchSpace, format_value


def sample_assignment(space: SearchSpace, rng: np.random.Generator) -> dict[str, str]:
    """One independent draw from every parameter's prior, as strings."""
    return {p.name: format_value(p, p.sample(rng)) for p in space}


def existing_keys(
    space: SearchSpace, trials: Sequence[TrialRecord], exclude: Sequence[str] = ()
) -> set[tuple[str, ...]]:
    return {space.key(t.assignments, exclude) for t in trials}


class RandomSearch(Algorithm):
    name = "random"

    def _settings(self, problem: Problem) -> tuple[Settings, int]:
        s = Settings(problem.settings, self.name)
        seed = s.integer("random_state", 0, lo=0)
        s.reject_unknown()
        return s, seed

    def validate(self, problem: Problem) -> list[str]:
        return self._settings(problem)[0].errors

    def suggest(self, problem: Problem, trials: Sequence[TrialRecord], n: int) -> list[Suggestion]:
        self.check(problem)
        rng = np.random.default_rng(call_seed(problem, trials))
        taken = existing_keys(problem.space, trials)
        return [
            Suggestion(unique(lambda _a: sample_assignment(problem.space, rng), taken, problem.space, rng))
            for _ in range(max(n, 0))
        ]


def sobol_points(dim: int, seed: int, start: int, count: int) -> np.ndarray:
    """Points ``start .. start+count-1`` of the scrambled Sobol sequence for ``seed``."""
    from scipy.stats import qmc  # imported lazily: scipy.stats takes ~1 s to import

    try:
        engine = qmc.Sobol(d=max(dim, 1), scramble=True, rng=np.random.default_rng(seed))
    except TypeError:  # scipy < 1.15 names it seed
        engine = qmc.Sobol(d=max(dim, 1), scramble=True, seed=np.random.default_rng(seed))
    if start:
        engine.fast_forward(start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "balance properties" warning for non-powers of two
        return engine.random(count)


def sobol_assignment(space: SearchSpace, point: np.ndarray) -> dict[str, str]:
    return {p.name: format_value(p, p.from_quantile(float(q))) for p, q in zip(space, point, strict=True)}


class SobolSearch(Algorithm):
    name = "sobol"

    def _settings(self, problem: Problem) -> tuple[Settings, int]:
        s = Settings(problem.settings, self.name)
        seed = s.integer("random_state", 0, lo=0)
        s.reject_unknown(note="; Katib's goptuna sobol ignores settings")
        return s, seed

    def validate(self, problem: Problem) -> list[str]:
        return self._settings(problem)[0].errors

    def notes(self, problem: Problem) -> list[str]:
        return [
            "sobol: kftune scrambles the sequence (seed random_state); Katib's goptuna sequence is unscrambled"
        ]

    def suggest(self, problem: Problem, trials: Sequence[TrialRecord], n: int) -> list[Suggestion]:
        self.check(problem)
        if n <= 0:
            return []
        seed = self._settings(problem)[1]
        space = problem.space
        taken = existing_keys(space, trials)
        start, out, batch = len(trials), [], max(2 * n, 16)
        limit = start + 8 * n + 256
        while len(out) < n and start < limit:
            for point in sobol_points(len(space), seed, start, batch):
                a = sobol_assignment(space, point)
                k = space.key(a)
                if k not in taken:
                    taken.add(k)
                    out.append(Suggestion(a))
                    if len(out) == n:
                        break
            start += batch
        if len(out) < n:  # a finite space nearly exhausted: unused points, then repeats
            rng = np.random.default_rng(seed + len(trials))
            for point in sobol_points(len(space), seed, len(trials), n - len(out)):
                out.append(
                    Suggestion(
                        unique(lambda _a, pt=point: sobol_assignment(space, pt), taken, space, rng, tries=1)
                    )
                )
        return out


class GridSearch(Algorithm):
    name = "grid"

    def validate(self, problem: Problem) -> list[str]:
        s = Settings(problem.settings, self.name)
        s.integer("random_state", 0, lo=0)
        s.reject_unknown()
        errors = list(s.errors)
        for p in problem.space:
            if p.type == "double" and p.step is None:
                errors.append(
                    f"parameter '{p.name}': grid needs feasibleSpace.step for double parameters "
                    "(for a discrete search space, all parameters must include step)"
                )
        total = problem.space.total_combinations()
        if total is not None and problem.max_trial_count is not None and problem.max_trial_count > total:
            errors.append(
                f"maxTrialCount {problem.max_trial_count} > all possible search combinations: {total}"
            )
        return errors

    def combinations(self, space: SearchSpace):
        """All assignments in product order (first parameter varies slowest)."""
        names = space.names
        for values in itertools.product(*(p.grid() for p in space)):
            yield dict(zip(names, values, strict=True))

    def suggest(self, problem: Problem, trials: Sequence[TrialRecord], n: int) -> list[Suggestion]:
        self.check(problem)
        taken = existing_keys(problem.space, trials)
        out: list[Suggestion] = []
        if n <= 0:
            return out
        for a in self.combinations(problem.space):
            k = problem.space.key(a)
            if k in taken:
                continue
            taken.add(k)
            out.append(Suggestion(a))
            if len(out) == n:
                break
        return out

    def is_complete(self, problem: Problem, trials: Sequence[TrialRecord]) -> bool:
        taken = existing_keys(problem.space, trials)
        return all(problem.space.key(a) in taken for a in self.combinations(problem.space))
