"""``cmaes``: CMA-ES (Hansen's (mu/mu_w, lambda) with rank-one and rank-mu updates), stateless.

Katib serves ``cmaes`` with goptuna; Optuna's ``CmaEsSampler`` keeps its optimizer pickled in
trial attributes (and needs the ``cmaes`` package), neither of which survives a rebuild from
Katib's trial list. kftune's CMA-ES is instead *replayed*: each proposed trial carries the label
``kftune.io/cma-generation``; every call restarts from the initial state and tells each complete
generation in order (the first ``lambda`` finished members by trial name), which reproduces the
optimizer exactly because the CMA-ES update itself is deterministic; new members of the current
generation are drawn with a seed derived from ``random_state``, the generation and the member's
index. Trials without the label are ignored by the model.

Search space: int and double parameters are optimised in ``[0, 1]`` coordinates (log for
logUniform/logNormal; out-of-bounds draws are resampled, then clipped); discrete and categorical
parameters are drawn uniformly (Optuna's CMA-ES falls back to independent sampling for them too).
The mean starts at the centre of the space; ``lambda = 4 + floor(3 ln d)``.

Settings (goptuna's): ``sigma`` (initial step size, default 1/6 of each range - goptuna's default
``(max - min) / 6``; here a fraction of the range), ``restart_strategy`` (``none`` | ``ipop`` |
``bipop``: IPOP restarts with a doubled population when the search stagnates; ``bipop`` runs as
IPOP), ``random_state``. Validation (Katib): at least two int/double parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kftune.hpo.base import Algorithm, Problem, Settings, Suggestion, TrialRecord, stable_seed, unique
from kftune.hpo.space import Parameter, format_value

LABEL_GENERATION = "kftune.io/cma-generation"


@dataclass
class CmaState:
    """One CMA-ES run's state (all in [0, 1] coordinates)."""

    mean: np.ndarray
    sigma: float
    popsize: int
    cov: np.ndarray = field(init=False)
    p_sigma: np.ndarray = field(init=False)
    p_c: np.ndarray = field(init=False)
    history: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        d = self.mean.size
        self.cov = np.eye(d)
        self.p_sigma = np.zeros(d)
        self.p_c = np.zeros(d)
        mu = self.popsize // 2
        w = np.log(mu + 0.5) - np.log(np.arange(1, mu + 1))
        self.weights = w / w.sum()
        self.mu = mu
        self.mu_eff = 1.0 / float((self.weights**2).sum())
        n = d
        me = self.mu_eff
        self.c_sigma = (me + 2) / (n + me + 5)
        self.d_sigma = 1 + 2 * max(0.0, math.sqrt((me - 1) / (n + 1)) - 1) + self.c_sigma
        self.c_c = (4 + me / n) / (n + 4 + 2 * me / n)
        self.c_1 = 2 / ((n + 1.3) ** 2 + me)
        self.c_mu = min(1 - self.c_1, 2 * (me - 2 + 1 / me) / ((n + 2) ** 2 + me))
        self.chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n))
        self.generation = 0

    def _eig(self) -> tuple[np.ndarray, np.ndarray]:
        c = (self.cov + self.cov.T) / 2
        vals, vecs = np.linalg.eigh(c)
        return np.sqrt(np.maximum(vals, 1e-20)), vecs

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One candidate inside [0, 1]^d (resampled up to 100 times, then clipped)."""
        dvals, b = self._eig()
        x = self.mean
        for _ in range(100):
            z = rng.standard_normal(self.mean.size)
            x = self.mean + self.sigma * (b @ (dvals * z))
            if np.all((x >= 0) & (x <= 1)):
                return x
        return np.clip(x, 0.0, 1.0)

    def tell(self, xs: np.ndarray, losses: np.ndarray) -> None:
        """Update from one generation (``popsize`` rows)."""
        order = np.argsort(losses, kind="stable")
        xs = xs[order]
        y = (xs[: self.mu] - self.mean) / self.sigma
        y_w = self.weights @ y
        old_mean = self.mean
        self.mean = old_mean + self.sigma * y_w
        dvals, b = self._eig()
        c_inv_sqrt = b @ np.diag(1 / dvals) @ b.T
        n = self.mean.size
        self.p_sigma = (1 - self.c_sigma) * self.p_sigma + math.sqrt(
            self.c_sigma * (2 - self.c_sigma) * self.mu_eff
        ) * (c_inv_sqrt @ y_w)
        self.generation += 1
        norm_ps = float(np.linalg.norm(self.p_sigma))
        h_sigma = (
            norm_ps / math.sqrt(1 - (1 - self.c_sigma) ** (2 * self.generation))
            < (1.4 + 2 / (n + 1)) * self.chi_n
        )
        self.p_c = (1 - self.c_c) * self.p_c + (
            h_sigma * math.sqrt(self.c_c * (2 - self.c_c) * self.mu_eff)
        ) * y_w
        rank_mu = (self.weights[:, None] * y).T @ y
        delta = (1 - h_sigma) * self.c_c * (2 - self.c_c)
        self.cov = (
            (1 - self.c_1 - self.c_mu + self.c_1 * delta) * self.cov
            + self.c_1 * np.outer(self.p_c, self.p_c)
            + self.c_mu * rank_mu
        )
        self.sigma *= math.exp((self.c_sigma / self.d_sigma) * (norm_ps / self.chi_n - 1))
        self.sigma = float(min(self.sigma, 1e3))
        self.history.extend(float(v) for v in losses)

    def stagnated(self) -> bool:
        """IPOP's restart test: tiny steps, flat fitness, or an ill-conditioned covariance."""
        dvals, _ = self._eig()
        if self.sigma * float(dvals.max()) < 1e-11:
            return True
        if float(dvals.max() / dvals.min()) ** 2 > 1e14:
            return True
        recent = self.history[-max(10, 3 * self.popsize) :]
        return len(self.history) >= 3 * self.popsize and (max(recent) - min(recent)) < 1e-12


class CmaEs(Algorithm):
    name = "cmaes"

    def _read(self, problem: Problem) -> tuple[Settings, float, str, int]:
        s = Settings(problem.settings, self.name)
        sigma = s.number("sigma", 1 / 6, lo=0, lo_open=True, must="a number > 0")
        restart = s.choice("restart_strategy", "none", ("none", "ipop", "bipop"))
        seed = s.integer("random_state", 0, lo=0)
        s.reject_unknown(note="; goptuna ignores unknown settings")
        if len(self._numeric(problem)) < 2:
            s.errors.append(
                "cmaes only supports two or more dimensional continuous search space (int/double parameters)"
            )
        return s, sigma, restart, seed

    @staticmethod
    def _numeric(problem: Problem) -> list[Parameter]:
        return [p for p in problem.space if p.is_numeric]

    def validate(self, problem: Problem) -> list[str]:
        return self._read(problem)[0].errors

    def notes(self, problem: Problem) -> list[str]:
        return [
            "cmaes: kftune replays its own CMA-ES from labelled trials; Katib uses goptuna (different random draws)"
        ]

    def replay(
        self, problem: Problem, trials: Sequence[TrialRecord]
    ) -> tuple[CmaState, int, int, dict[int, int]]:
        """Rebuild the optimizer: ``(state, current generation, restarts, members per generation)``."""
        _, sigma, restart, seed = self._read(problem)
        numeric = self._numeric(problem)
        d = len(numeric)
        popsize = 4 + int(3 * math.log(d))
        state = CmaState(np.full(d, 0.5), sigma, popsize)
        members: dict[int, list[TrialRecord]] = {}
        for t in trials:
            g = t.labels.get(LABEL_GENERATION)
            if g is not None and g.isdigit() and not problem.space.check(t.assignments):
                members.setdefault(int(g), []).append(t)
        counts = {g: len(ms) for g, ms in members.items()}
        generation, restarts = 0, 0
        while True:
            done = sorted(
                (t for t in members.get(generation, []) if t.value(problem.objective) is not None),
                key=lambda t: t.name,
            )
            if len(done) < state.popsize:
                break
            done = done[: state.popsize]
            xs = np.array([[p.encode(t.assignments[p.name]) for p in numeric] for t in done])
            losses = np.array([problem.objective.loss(t.value(problem.objective)) for t in done])
            state.tell(xs, losses)
            generation += 1
            if restart != "none" and state.stagnated():
                restarts += 1
                rng = np.random.default_rng(stable_seed(seed, "restart", restarts))
                state = CmaState(rng.random(d), sigma, state.popsize * 2)
        return state, generation, restarts, counts

    def suggest(self, problem: Problem, trials: Sequence[TrialRecord], n: int) -> list[Suggestion]:
        self.check(problem)
        _, _, _, seed = self._read(problem)
        state, generation, _, counts = self.replay(problem, trials)
        numeric = self._numeric(problem)
        others = [p for p in problem.space if not p.is_numeric]
        taken = {problem.space.key(t.assignments) for t in trials}
        out = []
        start = counts.get(generation, 0)
        for i in range(max(n, 0)):

            def make(attempt: int, i: int = i) -> dict[str, str]:
                rng = np.random.default_rng(stable_seed(seed, "member", generation, start + i, attempt))
                x = state.draw(rng)
                a = {p.name: format_value(p, p.decode(float(u))) for p, u in zip(numeric, x, strict=True)}
                a.update({p.name: format_value(p, p.sample(rng)) for p in others})
                return {name: a[name] for name in problem.space.names}

            rng = np.random.default_rng(stable_seed(seed, "unused", generation, start + i))
            a = unique(make, taken, problem.space, rng, tries=16)
            out.append(Suggestion(a, {LABEL_GENERATION: str(generation)}))
        return out
