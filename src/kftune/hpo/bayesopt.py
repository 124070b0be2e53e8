"""``bayesianoptimization``: scikit-optimize's recipe (Katib's skopt service) on scikit-learn.

Katib's service wraps ``skopt.Optimizer``; scikit-optimize is unmaintained and not installed
here, so kftune rebuilds the same loop from scikit-learn parts, from the trial list on each call:

- surrogate (``base_estimator``): ``GP`` = ``ConstantKernel * Matern(nu=2.5)`` + white noise,
  ``normalize_y`` (skopt's default GP); ``RF``/``ET`` = random/extra-trees forests (mean and
  spread of the trees); ``GBRT`` = gradient boosting with 16%/50%/84% quantile losses;
- the first ``n_initial_points`` (default 10) trials are random (finished and running trials
  both count, as skopt counts told points);
- acquisition (``acq_func``): ``EI``, ``PI``, ``LCB`` (kappa 1.96, xi 0.01) on the loss;
  ``gp_hedge`` picks one of the three at random per suggestion (skopt weighs them by past
  gains, which a stateless service cannot keep); ``EIps``/``PIps`` (per second) act as EI/PI:
  Katib's trials report no durations to the service;
- optimiser (``acq_optimizer``): ``sampling`` scores 1,000 random points (skopt: 10,000);
  ``lbfgs`` (and ``auto`` for a GP without choices) also polishes the best 5 with L-BFGS-B;
- the GP's kernel hyperparameters are fitted once per suggestion (skopt restarts that fit
  twice more; each restart costs ~0.3 s here);
- batches use skopt's ``cl_min`` constant liar: each chosen point and every running trial is
  added with the best loss so far before the next point is chosen.

Differences from Katib's service beyond the above: Katib passes every double to skopt as
``Real(min, max, "log-uniform")`` (which fails for min <= 0); kftune follows each parameter's
own distribution. Inputs are [0, 1] coordinates (log where declared), choices one-hot.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

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
from kftune.hpo.simple import sample_assignment
from kftune.hpo.space import SearchSpace, format_value

_N = NormalDist()
N_CANDIDATES = 1000


@dataclass
class BoConfig:
    base_estimator: str
    n_initial_points: int
    acq_func: str
    acq_optimizer: str
    seed: int


class OneHot:
    """[0, 1] coordinates for numbers, one-hot blocks for choices."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.params = list(space)
        self.width = sum(1 if p.is_numeric else p.n_choices for p in self.params)
        self.numeric_cols = []
        col = 0
        for p in self.params:
            if p.is_numeric:
                self.numeric_cols.append(col)
                col += 1
            else:
                col += p.n_choices

    def encode(self, a) -> np.ndarray:
        row = np.zeros(self.width)
        col = 0
        for p in self.params:
            if p.is_numeric:
                row[col] = p.encode(a[p.name])
                col += 1
            else:
                row[col + p.index_of(a[p.name])] = 1.0
                col += p.n_choices
        return row

    def random(self, rng: np.random.Generator, m: int) -> np.ndarray:
        """``m`` rows uniform in model coordinates (= the prior for uniform/logUniform)."""
        out = np.zeros((m, self.width))
        col = 0
        for p in self.params:
            if p.is_numeric:
                out[:, col] = rng.random(m)
                col += 1
            else:
                out[np.arange(m), col + rng.integers(0, p.n_choices, size=m)] = 1.0
                col += p.n_choices
        return out

    def decode(self, row: np.ndarray) -> dict[str, str]:
        out = {}
        col = 0
        for p in self.params:
            if p.is_numeric:
                out[p.name] = format_value(p, p.decode(float(row[col])))
                col += 1
            else:
                out[p.name] = p.values[int(np.argmax(row[col : col + p.n_choices]))]
                col += p.n_choices
        return out


def _surrogate(kind: str, dim: int, seed: int):
    if kind == "GP":
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        kernel = ConstantKernel(1.0, (0.01, 1000.0)) * Matern(
            length_scale=np.ones(dim), length_scale_bounds=[(0.01, 100)] * dim, nu=2.5
        ) + WhiteKernel(1e-2, (1e-9, 1.0))
        return GaussianProcessRegressor(
            kernel=kernel, normalize_y=True, n_restarts_optimizer=0, random_state=seed
        )
    if kind in ("RF", "ET"):
        from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor

        cls = RandomForestRegressor if kind == "RF" else ExtraTreesRegressor
        return cls(n_estimators=100, min_samples_leaf=3, random_state=seed)
    return None  # GBRT: built per quantile in _predict


def _fit_predict(
    kind: str, x: np.ndarray, y: np.ndarray, cand: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "GBRT":
            from sklearn.ensemble import GradientBoostingRegressor

            qs = []
            for alpha in (0.16, 0.5, 0.84):
                m = GradientBoostingRegressor(
                    loss="quantile", alpha=alpha, n_estimators=100, random_state=seed
                )
                m.fit(x, y)
                qs.append(m.predict(cand))
            return qs[1], np.maximum((qs[2] - qs[0]) / 2, 1e-9), None
        model = _surrogate(kind, x.shape[1], seed)
        model.fit(x, y)
        if kind == "GP":
            mu, sd = model.predict(cand, return_std=True)
        else:
            per_tree = np.stack([t.predict(cand) for t in model.estimators_])
            mu, sd = per_tree.mean(axis=0), per_tree.std(axis=0)
        return mu, np.maximum(sd, 1e-9), model


def _acquisition(name: str, mu: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """Higher is better (for a loss being minimised)."""
    if name == "LCB":
        return -(mu - 1.96 * sd)
    imp = best - mu - 0.01
    z = imp / sd
    cdf = np.array([_N.cdf(v) for v in z])
    if name == "PI":
        return cdf
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return imp * cdf + sd * pdf


class BayesianOptimization(Algorithm):
    name = "bayesianoptimization"

    def _read(self, problem: Problem) -> tuple[Settings, BoConfig]:
        s = Settings(problem.settings, self.name)
        cfg = BoConfig(
            s.choice("base_estimator", "GP", ("GP", "RF", "ET", "GBRT")),
            s.integer("n_initial_points", 10, lo=0),
            s.choice("acq_func", "gp_hedge", ("gp_hedge", "LCB", "EI", "PI", "EIps", "PIps")),
            s.choice("acq_optimizer", "auto", ("auto", "sampling", "lbfgs")),
            s.integer("random_state", 0, lo=0),
        )
        s.reject_unknown()
        return s, cfg

    def validate(self, problem: Problem) -> list[str]:
        return self._read(problem)[0].errors

    def notes(self, problem: Problem) -> list[str]:
        _, cfg = self._read(problem)
        out = [
            "bayesianoptimization: Katib uses scikit-optimize; kftune rebuilds its GP/forest loop on scikit-learn"
        ]
        if cfg.acq_func == "gp_hedge":
            out.append(
                "bayesianoptimization: gp_hedge picks EI/PI/LCB at random per suggestion (no gain history)"
            )
        if cfg.acq_func in ("EIps", "PIps"):
            out.append(
                f"bayesianoptimization: {cfg.acq_func} runs as {cfg.acq_func[:-2]} (no trial durations)"
            )
        return out

    def suggest(self, problem: Problem, trials: Sequence[TrialRecord], n: int) -> list[Suggestion]:
        self.check(problem)
        _, cfg = self._read(problem)
        space = problem.space
        enc = OneHot(space)
        seed = call_seed(problem, trials)
        fitting = [t for t in trials if not space.check(t.assignments)]
        done = [(t, t.value(problem.objective)) for t in fitting]
        xs = [enc.encode(t.assignments) for t, v in done if v is not None]
        ys = [problem.objective.loss(v) for t, v in done if v is not None]
        lies = [enc.encode(t.assignments) for t in fitting if t.pending]
        taken = {space.key(t.assignments) for t in trials}
        out: list[Suggestion] = []
        for i in range(max(n, 0)):
            rng = np.random.default_rng(stable_seed(seed, i))
            told = len(xs) + len(lies)
            if told < cfg.n_initial_points or len(ys) < 2:
                a = unique(lambda _a, rng=rng: sample_assignment(space, rng), set(taken), space, rng)
            else:
                from threadpoolctl import threadpool_limits  # a scikit-learn dependency

                # small matrices: a multi-threaded BLAS only spins (5x slower on 2 busy cores)
                with threadpool_limits(limits=1, user_api="blas"):
                    a = self._model_point(cfg, enc, space, xs, ys, lies, rng, taken, seed + i)
            taken.add(space.key(a))
            lies.append(enc.encode(a))
            out.append(Suggestion(a))
        return out

    def _model_point(self, cfg, enc, space, xs, ys, lies, rng, taken, seed) -> dict[str, str]:
        best = min(ys)
        x = np.array(xs + lies)
        y = np.array(ys + [best] * len(lies))  # cl_min constant liar
        cand = enc.random(rng, N_CANDIDATES)
        mu, sd, model = _fit_predict(cfg.base_estimator, x, y, cand, seed)
        acq_name = cfg.acq_func
        if acq_name == "gp_hedge":
            acq_name = ("EI", "PI", "LCB")[int(rng.integers(3))]
        acq_name = {"EIps": "EI", "PIps": "PI"}.get(acq_name, acq_name)
        score = _acquisition(acq_name, mu, sd, best)
        order = np.argsort(-score, kind="stable")
        use_lbfgs = cfg.acq_optimizer == "lbfgs" or (
            cfg.acq_optimizer == "auto" and cfg.base_estimator == "GP" and all(p.is_numeric for p in space)
        )
        if use_lbfgs and cfg.base_estimator == "GP" and enc.numeric_cols:
            polished = self._polish(model, enc, cand[order[:5]], acq_name, best)
            for row in polished:
                a = enc.decode(row)
                if space.key(a) not in taken:
                    return a
        ranked = iter(order[:200])
        return unique(lambda _a: enc.decode(cand[next(ranked, order[0])]), set(taken), space, rng, tries=200)

    @staticmethod
    def _polish(model, enc: OneHot, starts: np.ndarray, acq_name: str, best: float) -> list[np.ndarray]:
        from scipy.optimize import minimize

        cols = enc.numeric_cols
        results = []
        for start in starts:

            def negacq(v, start=start):
                row = start.copy()
                row[cols] = v
                mu, sd = model.predict(row[None, :], return_std=True)
                return -float(_acquisition(acq_name, mu, np.maximum(sd, 1e-9), best)[0])

            res = minimize(
                negacq,
                start[cols],
                method="L-BFGS-B",
                bounds=[(0.0, 1.0)] * len(cols),
                options={"maxiter": 30},
            )
            row = start.copy()
            row[cols] = np.clip(res.x, 0, 1)
            results.append((res.fun, row))
        results.sort(key=lambda t: t[0])
        return [r for _, r in results]
