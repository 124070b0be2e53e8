"""``bohb``: Bayesian optimisation + Hyperband (Falkner et al. 2018, "BOHB: Robust and Efficient
Hyperparameter Optimization at Scale"), following its reference implementation (hpbandster).
Not in stock Katib; served by kftune's suggestion service.

Settings:

=========================  ============  ==================================================
``resource_name``          required      the budget parameter (int or double); its
                                         feasibleSpace min/max are the min/max budget
``reduction_factor``       ``3``         eta, an integer > 1
``num_iterations``         ``s_max+1``   how many successive-halving iterations (brackets)
                                         to run; the default is one Hyperband round
``random_fraction``        ``1/3``       share of new configurations drawn at random
``num_samples``            ``64``        candidates drawn per model-based proposal
``bandwidth_factor``       ``3``         widens the good KDE's kernels when drawing candidates
``min_bandwidth``          ``1e-3``      floor for every KDE bandwidth
``top_n_percent``          ``15``        percentage of a budget's results that are "good"
``min_points_in_model``    ``d+1``       results a budget needs before a model is fitted on
                                         it (d = number of parameters besides the resource;
                                         smaller values are raised to d+1, as in hpbandster)
``random_state``           ``0``         seed
=========================  ============  ==================================================

We count **iterations**, not configurations, because BOHB's unit of work is the Hyperband
iteration: with R/r = 9 and eta = 3 one round of 3 iterations starts 9 + 3 + 3 = 15
configurations (hpbandster's bracket sizes), so ``num_iterations: 10`` starts 54.

Schedule (hpbandster): ``s_max = floor(log_eta(R / r))``; budget levels ``R * eta^(l - s_max)``
(l = 0..s_max, rounded for int resources); iteration i uses ``s = s_max - (i mod (s_max + 1))``,
``n0 = floor((s_max + 1) / (s + 1)) * eta^s`` and stage sizes ``max(floor(n0 * eta^-j), 1)`` on
levels ``s_max - s + j``. Within an iteration, stage j+1 is created when every trial of stage j
has finished, from its best results (successive halving, synchronous inside a bracket).
Labels: ``kftune.io/bracket`` = iteration, ``kftune.io/rung`` = budget level, plus the parent
and configuration labels of a promotion, as for ``asha``.

Filling parallel workers (hpbandster's ``Master.run``): each requested suggestion is one free
worker; it goes to the oldest iteration that can use it (a new configuration of its first
stage, or a promotion of a finished stage); only when no started iteration can use another
worker does the next iteration start (until ``num_iterations`` have started). Stage 0
configurations are drawn one at a time, when a worker asks, so each uses the latest model.

Model (hpbandster's ``BOHB`` config generator): for every budget level, all finished results
there (failed = loss +inf); a pair of KDEs (good = best ``max(min_points_in_model,
top_n_percent% of N)``, bad = the next ``max(min_points_in_model, (100-top_n_percent)% of N)``)
is fitted on the highest budget where ``N >= min_points_in_model`` and both sets have more
points than dimensions; with probability ``random_fraction``, or while no budget has a model,
the configuration is random; otherwise it is the best of ``num_samples`` draws from the good
KDE (bandwidth x ``bandwidth_factor``) by ``l(x) / g(x)``. See ``kde.py`` for the KDE itself
(statsmodels is not needed).

``is_complete``: ``num_iterations`` iterations have started and each has created its last stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kftune.hpo.base import (
    Algorithm,
    Problem,
    Settings,
    Suggestion,
    TrialRecord,
    call_seed,
    stable_seed,
    unique,
)
from kftune.hpo.hyperband import Bracket, next_in_bracket, runs_by_bracket
from kftune.hpo.kde import BohbModel, Encoder
from kftune.hpo.ladder import (
    Ladder,
    Run,
    check_budgets,
    int_log,
    new_config_suggestion,
    pending_run,
    promotion_suggestion,
    read_resource,
)
from kftune.hpo.simple import sample_assignment
from kftune.hpo.space import Parameter


def bohb_budgets(r_min: float, r_max: float, eta: int, integer: bool) -> list[float]:
    """hpbandster's budgets ``R * eta^(l - s_max)``, l = 0..s_max."""
    s_max = int_log(r_max / r_min, eta) if r_max > r_min else 0
    out = []
    for level in range(s_max + 1):
        b = r_max * eta ** (level - s_max)
        out.append(float(max(round(b), r_min)) if integer else float(max(b, r_min)))
    return out


def bohb_bracket(iteration: int, s_max: int, eta: int) -> Bracket:
    s = s_max - (iteration % (s_max + 1))
    n0 = int((s_max + 1) // (s + 1)) * eta**s
    sizes = [max(int(n0 * eta ** (-j) + 1e-9), 1) for j in range(s + 1)]
    return Bracket(iteration, sizes, s_max - s)


@dataclass
class BohbConfig:
    resource: Parameter
    eta: int
    s_max: int
    budgets: list[float]
    num_iterations: int
    random_fraction: float
    num_samples: int
    bandwidth_factor: float
    min_bandwidth: float
    top_n_percent: int
    min_points_in_model: int
    seed: int


class Bohb(Algorithm):
    name = "bohb"

    def _read(self, problem: Problem) -> tuple[BohbConfig | None, list[str]]:
        s = Settings(problem.settings, self.name)
        resource = read_resource(problem, s)
        eta = s.integer("reduction_factor", 3, lo=2, must="an integer > 1")
        iterations = s.integer("num_iterations", None, lo=1)
        random_fraction = s.number("random_fraction", 1 / 3, lo=0, hi=1)
        num_samples = s.integer("num_samples", 64, lo=1)
        bandwidth_factor = s.number("bandwidth_factor", 3.0, lo=0, lo_open=True)
        min_bandwidth = s.number("min_bandwidth", 1e-3, lo=0, lo_open=True)
        top_n_percent = s.integer("top_n_percent", 15, lo=1, hi=99)
        d = len(problem.space) - 1
        min_points = s.integer("min_points_in_model", d + 1, lo=1)
        seed = s.integer("random_state", 0, lo=0)
        s.reject_unknown()
        if resource is None:
            return None, s.errors
        if d < 1:
            s.errors.append("bohb needs at least one parameter besides the resource parameter")
        budgets = bohb_budgets(resource.min, resource.max, eta, resource.type == "int")
        check_budgets(resource, budgets, s)
        if s.errors:
            return None, s.errors
        s_max = len(budgets) - 1
        cfg = BohbConfig(
            resource,
            eta,
            s_max,
            budgets,
            iterations if iterations is not None else s_max + 1,
            random_fraction,
            num_samples,
            bandwidth_factor,
            min_bandwidth,
            top_n_percent,
            max(min_points, d + 1),
            seed,
        )
        return cfg, []

    def validate(self, problem: Problem) -> list[str]:
        return self._read(problem)[1]

    def config(self, problem: Problem) -> BohbConfig:
        self.check(problem)
        cfg, _ = self._read(problem)
        assert cfg is not None
        return cfg

    # ----------------------------------------------------------------- model
    def model(self, problem: Problem, ladder: Ladder, cfg: BohbConfig) -> tuple[int, BohbModel] | None:
        """The KDE pair on the highest budget level that supports one, with its level."""
        space = problem.space.without(cfg.resource.name)
        encoder = Encoder(space)
        by_level: dict[int, list[Run]] = {}
        for r in ladder.runs:
            if not r.pending:
                by_level.setdefault(r.rung, []).append(r)
        for level in sorted(by_level, reverse=True):
            runs = by_level[level]
            if len(runs) < cfg.min_points_in_model:
                continue
            x = encoder.encode_many([r.assignments for r in runs])
            losses = np.array([r.loss for r in runs], dtype=float)
            model = BohbModel.fit(
                x,
                losses,
                encoder.kinds,
                min_points_in_model=cfg.min_points_in_model,
                top_n_percent=cfg.top_n_percent,
                min_bandwidth=cfg.min_bandwidth,
            )
            if model is not None:
                return level, model
        return None

    # ----------------------------------------------------------------- suggestions
    def suggest(self, problem: Problem, trials: Sequence[TrialRecord], n: int) -> list[Suggestion]:
        cfg = self.config(problem)
        ladder = Ladder.build(problem, trials, cfg.resource, cfg.budgets)
        fitted = self.model(problem, ladder, cfg)
        space = problem.space.without(cfg.resource.name)
        encoder = Encoder(space)
        base_seed = call_seed(problem, trials)
        keys = ladder.config_keys()
        configs = ladder.configs()
        out: list[Suggestion] = []
        for slot in range(max(n, 0)):
            by_iter = runs_by_bracket(ladder.runs)
            started = sorted(by_iter)

            def new_config(level: int, iteration: int, slot: int = slot) -> Suggestion:

                def make(attempt: int) -> dict[str, str]:
                    rng = np.random.default_rng(stable_seed(base_seed, slot, attempt))
                    vec = None
                    if fitted is not None and rng.random() >= cfg.random_fraction:
                        vec = fitted[1].propose(rng, cfg.num_samples, cfg.bandwidth_factor)
                    return encoder.decode(vec) if vec is not None else sample_assignment(space, rng)

                rng = np.random.default_rng(stable_seed(base_seed, slot, "unused"))
                a = unique(make, keys, problem.space, rng, exclude=(cfg.resource.name,))
                return new_config_suggestion(
                    a, cfg.resource, cfg.budgets[level], level, ladder.next_config_id(configs), iteration
                )

            def promote(run: Run, level: int, iteration: int) -> Suggestion:
                return promotion_suggestion(run, cfg.resource, cfg.budgets[level], level, iteration)

            made: Suggestion | None = None
            for it in started:
                made = self._next(cfg, it, by_iter.get(it, []), new_config, promote)
                if made is not None:
                    break
            if made is None and len(started) < cfg.num_iterations:
                it = (max(started) + 1) if started else 0
                made = self._next(cfg, it, [], new_config, promote)
            if made is None:
                break
            out.append(made)
            ladder.add(pending_run(made, cfg.resource, slot, problem.space))
            configs.add(made.labels["kftune.io/config"])
            keys.add(problem.space.key(made.assignments, (cfg.resource.name,)))
        return out

    @staticmethod
    def _next(cfg: BohbConfig, iteration: int, runs: Sequence[Run], new_config, promote) -> Suggestion | None:
        bracket = bohb_bracket(iteration, cfg.s_max, cfg.eta)
        status, made = next_in_bracket(
            bracket,
            runs,
            lambda level: new_config(level, iteration),
            lambda run, level: promote(run, level, iteration),
        )
        return made if status == "run" else None

    def is_complete(self, problem: Problem, trials: Sequence[TrialRecord]) -> bool:
        cfg = self.config(problem)
        ladder = Ladder.build(problem, trials, cfg.resource, cfg.budgets)
        by_iter = runs_by_bracket(ladder.runs)
        if len(by_iter) < cfg.num_iterations:
            return False
        dummy = Suggestion({})
        for it, runs in by_iter.items():
            status, _ = next_in_bracket(
                bohb_bracket(it, cfg.s_max, cfg.eta), runs, lambda _l: dummy, lambda _r, _l: dummy
            )
            if status != "done":
                return False
        return True
