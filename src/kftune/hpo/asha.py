"""``asha``: Asynchronous Successive Halving (Li et al. 2020, "A System for Massively Parallel
Hyperparameter Tuning", Algorithm 2), with a TPE, random or Sobol sampler for new
configurations. Not in stock Katib; served by kftune's suggestion service.

Settings (values are strings, as in Katib):

==========================  ===========  ===================================================
``resource_name``           required     the budget parameter (int or double); its
                                         feasibleSpace min is the grace period r, max is R
``reduction_factor``        ``3``        eta, an integer > 1
``num_configurations``      unlimited    how many distinct configurations to start
``min_early_stopping_rate`` ``0``        s: the first rung trains r * eta^s
``sampler``                 ``tpe``      ``tpe`` | ``random`` | ``sobol`` for new configurations
``random_state``            ``0``        seed
``n_startup_trials``        ``10``       tpe: finished results a rung needs before TPE fits on it
``n_ei_candidates``         ``24``       tpe: candidates drawn from l(x) per proposal
``gamma``                   ``0.25``     tpe: fraction of a rung's results that are "good"
``prior_weight``            ``1.0``      tpe: weight of the uniform prior in l(x) and g(x)
==========================  ===========  ===================================================

Rungs: budgets ``r * eta^(s+k)`` for k = 0, 1, ... while below R, then R itself (for R = 9,
r = 1, eta = 3: 1, 3, 9; for R = 10: 1, 3, 9, 10). Each requested suggestion is one free worker
and gets ``get_job()`` of the paper: for k from the second-highest rung down to 0, the
configurations in the top ``floor(|rung k| / eta)`` of rung k's finished results (by loss,
ties by configuration id) that have no trial at rung k+1 yet are promotable; the first one is
promoted (a new trial resuming it with budget k+1). If none, a new configuration starts at rung
0, as long as fewer than ``num_configurations`` exist; otherwise nothing is proposed (the
suggestion returns fewer than asked). Failed trials count in their rung with the worst loss
and are never promoted; running trials are not yet in their rung's results; a configuration is
promoted at most once per rung.

New configurations with ``sampler: tpe`` come from a multivariate TPE (``kde.tpe_propose``)
fitted on the highest rung that has at least ``n_startup_trials`` finished results; before any
rung has that many they are random. This is kftune's own numpy TPE, not Optuna's: rebuilding an
Optuna study from 1,000 trials costs ~150 ms per suggestion, this costs a few ms
(bench/suggest_latency.py).

``is_complete``: ``num_configurations`` configurations exist, no promotion is possible now, and
no trial below the top rung is still running (only those could make a new promotion possible).
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
from kftune.hpo.kde import Encoder, tpe_propose
from kftune.hpo.ladder import (
    Ladder,
    Run,
    check_budgets,
    new_config_suggestion,
    pending_run,
    promotion_suggestion,
    read_resource,
)
from kftune.hpo.simple import sample_assignment, sobol_points
from kftune.hpo.space import Parameter, format_value


def asha_budgets(r_min: float, r_max: float, eta: int, s: int) -> list[float]:
    """``r * eta^(s+k)`` while below R, then R (the top rung is always the full budget)."""
    out: list[float] = []
    k = 0
    while True:
        b = r_min * eta ** (s + k)
        if b >= r_max * (1 - 1e-12):
            out.append(float(r_max))
            return out
        out.append(float(b))
        k += 1


@dataclass
class AshaConfig:
    resource: Parameter
    eta: int
    s: int
    num_configurations: int | None
    sampler: str
    seed: int
    n_startup_trials: int
    n_ei_candidates: int
    gamma: float
    prior_weight: float
    budgets: list[float]


class Asha(Algorithm):
    name = "asha"

    # ----------------------------------------------------------------- settings
    def _read(self, problem: Problem) -> tuple[AshaConfig | None, list[str]]:
        s = Settings(problem.settings, self.name)
        resource = read_resource(problem, s)
        eta = s.integer("reduction_factor", 3, lo=2, must="an integer > 1")
        num = s.integer("num_configurations", None, lo=1)
        rate = s.integer("min_early_stopping_rate", 0, lo=0)
        sampler = s.choice("sampler", "tpe", ("tpe", "random", "sobol"))
        seed = s.integer("random_state", 0, lo=0)
        n_startup = s.integer("n_startup_trials", 10, lo=1)
        n_ei = s.integer("n_ei_candidates", 24, lo=1)
        gamma = s.number("gamma", 0.25, lo=0, hi=1, lo_open=True, hi_open=True)
        prior_weight = s.number("prior_weight", 1.0, lo=0, lo_open=True)
        s.reject_unknown()
        if resource is None:
            return None, s.errors
        if resource.min * eta**rate > resource.max:
            s.errors.append(
                f"algorithm setting 'min_early_stopping_rate' = {rate} puts the first rung at "
                f"{resource.min} * {eta}^{rate} = {resource.min * eta**rate:g}, above the maximum budget {resource.max:g}"
            )
            return None, s.errors
        budgets = asha_budgets(resource.min, resource.max, eta, rate)
        check_budgets(resource, budgets, s)
        if len(problem.space) < 2:
            s.errors.append("asha needs at least one parameter besides the resource parameter")
        if s.errors:
            return None, s.errors
        cfg = AshaConfig(
            resource, eta, rate, num, sampler, seed, n_startup, n_ei, gamma, prior_weight, budgets
        )
        return cfg, []

    def validate(self, problem: Problem) -> list[str]:
        return self._read(problem)[1]

    def config(self, problem: Problem) -> AshaConfig:
        self.check(problem)
        cfg, _ = self._read(problem)
        assert cfg is not None
        return cfg

    # ----------------------------------------------------------------- the rule
    def suggest(self, problem: Problem, trials: Sequence[TrialRecord], n: int) -> list[Suggestion]:
        cfg = self.config(problem)
        ladder = Ladder.build(problem, trials, cfg.resource, cfg.budgets)
        state = _AshaState(ladder, cfg)
        base_seed = call_seed(problem, trials)
        out: list[Suggestion] = []
        for slot in range(max(n, 0)):
            s = state.get_job(lambda attempt, slot=slot: stable_seed(base_seed, slot, attempt))
            if s is None:
                break
            out.append(s)
            state.add(pending_run(s, cfg.resource, slot, problem.space))
        return out

    def is_complete(self, problem: Problem, trials: Sequence[TrialRecord]) -> bool:
        cfg = self.config(problem)
        if cfg.num_configurations is None:
            return False
        ladder = Ladder.build(problem, trials, cfg.resource, cfg.budgets)
        state = _AshaState(ladder, cfg)
        if len(state.configs) < cfg.num_configurations:
            return False
        top = len(cfg.budgets) - 1
        if any(r.pending and r.rung < top for r in ladder.runs):
            return False
        return state.find_promotion() is None


class _AshaState:
    """Rung results and promotions of one call, updated as the call proposes trials."""

    def __init__(self, ladder: Ladder, cfg: AshaConfig):
        self.ladder = ladder
        self.cfg = cfg
        self.n_rungs = len(cfg.budgets)
        self.configs = ladder.configs()
        self.keys = ladder.config_keys()
        # per rung: configs with any run there (incl. pending/failed) -> "already promoted"
        self.present: list[set[str]] = [set() for _ in range(self.n_rungs)]
        # per rung: config -> best finished run
        best: list[dict[str, Run]] = [{} for _ in range(self.n_rungs)]
        for r in ladder.runs:
            self.present[r.rung].add(r.config)
            if r.pending:
                continue
            cur = best[r.rung].get(r.config)
            if cur is None or r.loss < cur.loss:
                best[r.rung][r.config] = r
        # rung results sorted by (loss, config id)
        self.results: list[list[Run]] = [
            sorted(b.values(), key=lambda r: (r.loss, _config_order(r.config))) for b in best
        ]

    def add(self, run: Run) -> None:
        self.ladder.add(run)
        self.present[run.rung].add(run.config)
        self.configs.add(run.config)
        self.keys.add(run.key)

    def find_promotion(self) -> tuple[Run, int] | None:
        """Li et al.'s get_job(), promotion part: top rung first."""
        eta = self.cfg.eta
        for k in range(self.n_rungs - 2, -1, -1):
            results = self.results[k]
            quota = len(results) // eta
            for run in results[:quota]:
                if run.promotable and run.config not in self.present[k + 1]:
                    return run, k + 1
        return None

    def get_job(self, seed_for) -> Suggestion | None:
        found = self.find_promotion()
        if found is not None:
            run, k = found
            return promotion_suggestion(run, self.cfg.resource, self.cfg.budgets[k], k)
        if self.cfg.num_configurations is not None and len(self.configs) >= self.cfg.num_configurations:
            return None
        assignments = self._new_assignments(seed_for)
        config = self.ladder.next_config_id(self.configs)
        return new_config_suggestion(assignments, self.cfg.resource, self.cfg.budgets[0], 0, config)

    # ----------------------------------------------------------------- samplers
    def _new_assignments(self, seed_for) -> dict[str, str]:
        cfg = self.cfg
        full = self.ladder.problem.space
        space = full.without(cfg.resource.name)
        if cfg.sampler == "tpe" and not hasattr(self, "_model"):
            self._model = self._tpe_data(space)  # results do not change within a call
        model = self._model if cfg.sampler == "tpe" else None

        def make(attempt: int) -> dict[str, str]:
            rng = np.random.default_rng(seed_for(attempt))
            if cfg.sampler == "sobol":
                point = sobol_points(len(space), cfg.seed, len(self.configs) + attempt, 1)[0]
                return {
                    p.name: format_value(p, p.from_quantile(float(q)))
                    for p, q in zip(space, point, strict=True)
                }
            if model is not None:
                encoder, x, losses = model
                vec = tpe_propose(
                    encoder,
                    x,
                    losses,
                    rng,
                    gamma=cfg.gamma,
                    n_candidates=cfg.n_ei_candidates,
                    prior_weight=cfg.prior_weight,
                )
                return encoder.decode(vec)
            return sample_assignment(space, rng)

        rng = np.random.default_rng(seed_for(-1))
        return unique(make, self.keys, full, rng, exclude=(cfg.resource.name,))

    def _tpe_data(self, space) -> tuple[Encoder, np.ndarray, np.ndarray] | None:
        """Encoded results of the highest rung with >= n_startup_trials finished results."""
        for k in range(self.n_rungs - 1, -1, -1):
            results = self.results[k]
            if len(results) >= self.cfg.n_startup_trials and any(r.promotable for r in results):
                encoder = Encoder(space)
                x = encoder.encode_many([r.assignments for r in results])
                losses = np.array([r.loss for r in results], dtype=float)
                finite = losses[np.isfinite(losses)]
                losses[~np.isfinite(losses)] = (finite.max() + 1.0) if finite.size else 0.0
                return encoder, x, losses
        return None


def _config_order(config: str) -> tuple[int, int | str]:
    return (0, int(config)) if config.isdigit() else (1, config)


def expected_rung_sizes(num_configurations: int, eta: int, n_rungs: int) -> list[int]:
    """floor(N / eta^k): the rung sizes ASHA reaches when results arrive best-first (every
    configuration promoted early stays in its rung's top 1/eta), the lower bound otherwise."""
    sizes = [num_configurations]
    for _ in range(n_rungs - 1):
        sizes.append(sizes[-1] // eta)
    return sizes


__all__ = ["Asha", "AshaConfig", "asha_budgets", "expected_rung_sizes"]
