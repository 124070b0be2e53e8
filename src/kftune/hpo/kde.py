"""Kernel density models over a search space, in numpy: the TPE of ASHA and the KDE of BOHB.

Both follow the same recipe: encode finished configurations into model coordinates (numbers in
``[0, 1]``, linear or log, via :meth:`Parameter.encode`; choices by index), split them into
"good" (lowest losses) and "bad", fit a product-kernel density to each - Gaussian kernels on
numeric dimensions, Aitchison-Aitken kernels on choices, like statsmodels' ``KDEMultivariate``
that BOHB's reference implementation (hpbandster) uses - draw candidates around the good points
and keep the one that maximises ``l(x) / g(x)``.

Bandwidths follow statsmodels' ``normal_reference`` rule, ``1.06 * std * N^(-1/(4+d))``, with a
floor: ``min_bandwidth`` for BOHB (1e-3), 0.05 for ASHA's TPE. (hyperopt/optuna's "magic clip",
a floor of ``1 / min(100, 1 + N)``, was tried and dropped: with the handful of good points of a
higher rung it spreads l(x) so wide that l/g favours points *away* from the good ones - in the
seed-000 toy run TPE proposals then landed no closer to the optimum than random ones.) The Aitchison-Aitken weight
of a choice with ``c`` values is capped at ``(c - 1) / c`` (the uniform kernel); statsmodels
does not cap it, which can make the kernel prefer *other* values than the data's.

Everything here is vectorised: fitting BOHB's two KDEs on 1,000 points and scoring 64
candidates takes ~6 ms on this machine, which keeps ``asha``/``bohb`` suggestions well inside
their 50 ms budget (see bench/suggest_latency.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from kftune.hpo.space import SearchSpace, encode_text, format_value

_LOG_TINY = math.log(1e-32)
#: bandwidth floor of ASHA's TPE, in [0, 1] coordinates (see the module doc)
TPE_MIN_BANDWIDTH = 0.05
_inv_cdf = np.vectorize(NormalDist().inv_cdf, otypes=[float])
_erf = np.vectorize(math.erf, otypes=[float])


def _phi(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(z / math.sqrt(2.0)))


class Encoder:
    """Assignments <-> model vectors for a search space (the resource parameter excluded)."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.params = list(space)
        #: 0 for a numeric dimension, else the number of choices
        self.kinds = np.array([0 if p.is_numeric else p.n_choices for p in self.params], dtype=int)

    @property
    def dim(self) -> int:
        return len(self.params)

    def encode(self, assignments: Mapping[str, str]) -> np.ndarray:
        return np.array([p.encode(assignments[p.name]) for p in self.params], dtype=float)

    def encode_many(self, rows: Sequence[Mapping[str, str]]) -> np.ndarray:
        if not rows:
            return np.zeros((0, self.dim))
        params = self.params
        return np.array([[encode_text(p, a[p.name]) for p in params] for a in rows], dtype=float)

    def decode(self, vector: np.ndarray) -> dict[str, str]:
        return {p.name: format_value(p, p.decode(float(u))) for p, u in zip(self.params, vector, strict=True)}

    def uniform(self, rng: np.random.Generator, m: int) -> np.ndarray:
        """``m`` vectors drawn uniformly in model coordinates."""
        out = rng.random((m, self.dim))
        cat = self.kinds > 0
        if cat.any():
            out[:, cat] = np.floor(out[:, cat] * self.kinds[cat])
        return out


def normal_reference_bandwidth(data: np.ndarray) -> np.ndarray:
    """statsmodels' rule of thumb: ``1.06 * std * N ** (-1 / (4 + d))`` per dimension."""
    n, d = data.shape
    if n == 0:
        return np.ones(d)
    return 1.06 * data.std(axis=0) * n ** (-1.0 / (4 + d))


@dataclass
class KDE:
    """A product-kernel density on model coordinates, optionally mixed with a uniform prior.

    ``prior_weight`` w mixes ``N / (N + w)`` of the kernel density with ``w / (N + w)`` of the
    uniform density on the unit cube / uniform choices (TPE's prior; 0 for BOHB).
    """

    data: np.ndarray
    kinds: np.ndarray
    bw: np.ndarray
    prior_weight: float = 0.0

    @staticmethod
    def fit(data: np.ndarray, kinds: np.ndarray, *, min_bandwidth: float, prior_weight: float = 0.0) -> KDE:
        bw = np.maximum(normal_reference_bandwidth(data), min_bandwidth)
        cat = kinds > 0
        if cat.any():
            bw[cat] = np.minimum(bw[cat], (kinds[cat] - 1) / np.maximum(kinds[cat], 1))
            bw[cat] = np.maximum(bw[cat], min(min_bandwidth, 0.5))
        return KDE(data, kinds, bw, prior_weight)

    def _log_prior(self) -> float:
        cat = self.kinds[self.kinds > 0]
        return -float(np.log(cat).sum()) if cat.size else 0.0

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        """Log density at each row of ``x`` (shape ``(m, d)``)."""
        m = x.shape[0]
        n = self.data.shape[0]
        if n == 0:
            return np.full(m, self._log_prior())
        num = self.kinds == 0
        cat = ~num
        # (m, n) log kernel values summed over dimensions
        total = np.zeros((m, n))
        if num.any():
            h = self.bw[num]
            z = (x[:, None, num] - self.data[None, :, num]) / h
            total += (-0.5 * z * z - np.log(h) - 0.5 * math.log(2 * math.pi)).sum(axis=2)
        if cat.any():
            lam = self.bw[cat]
            c = self.kinds[cat].astype(float)
            same = np.rint(x[:, None, cat]) == np.rint(self.data[None, :, cat])
            other = np.log(np.maximum(lam / np.maximum(c - 1, 1), 1e-300))
            total += np.where(same, np.log(np.maximum(1 - lam, 1e-300)), other).sum(axis=2)
        w = self.prior_weight
        top = total.max(axis=1)
        kernel = top + np.log(np.exp(total - top[:, None]).sum(axis=1))  # log sum over points
        if w <= 0:
            return kernel - math.log(n)
        prior = self._log_prior()
        return np.logaddexp(kernel, math.log(w) + prior) - math.log(n + w)

    def sample(self, rng: np.random.Generator, m: int, bandwidth_factor: float = 1.0) -> np.ndarray:
        """``m`` draws: pick a data point (or, with the prior's weight, a uniform draw), then
        perturb numeric dimensions with a normal truncated to [0, 1] (sd = bandwidth x factor)
        and keep each choice with probability ``1 - bw``, else draw it uniformly (BOHB's rule)."""
        n, d = self.data.shape
        out = np.empty((m, d))
        from_prior = np.zeros(m, dtype=bool)
        if self.prior_weight > 0 or n == 0:
            from_prior = rng.random(m) < (self.prior_weight / (n + self.prior_weight) if n else 1.0)
        idx = rng.integers(0, max(n, 1), size=m)
        centres = self.data[idx] if n else rng.random((m, d))
        num = self.kinds == 0
        if num.any():
            mu = centres[:, num]
            sd = np.broadcast_to(self.bw[num] * bandwidth_factor, mu.shape)
            lo, hi = _phi((0.0 - mu) / sd), _phi((1.0 - mu) / sd)
            u = lo + rng.random(mu.shape) * (hi - lo)
            u = np.clip(u, 1e-12, 1 - 1e-12)
            out[:, num] = np.clip(mu + sd * _inv_cdf(u), 0.0, 1.0)
        for j in np.flatnonzero(~num):
            c = int(self.kinds[j])
            keep = rng.random(m) < (1.0 - self.bw[j])
            out[:, j] = np.where(keep, np.rint(centres[:, j]), rng.integers(0, c, size=m))
        if from_prior.any():
            prior = rng.random((int(from_prior.sum()), d))
            cat = self.kinds > 0
            prior[:, cat] = np.floor(prior[:, cat] * self.kinds[cat])
            out[from_prior] = prior
        return out


def split_good_bad(losses: np.ndarray, n_good: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``n_good`` lowest losses and of the rest (stable order on ties)."""
    order = np.argsort(losses, kind="stable")
    return order[:n_good], order[n_good:]


def tpe_propose(
    encoder: Encoder,
    x: np.ndarray,
    losses: np.ndarray,
    rng: np.random.Generator,
    *,
    gamma: float = 0.25,
    n_candidates: int = 24,
    prior_weight: float = 1.0,
) -> np.ndarray:
    """One TPE proposal (multivariate): good = the ``ceil(gamma * N)`` lowest losses, densities
    with a uniform prior of weight ``prior_weight``, best of ``n_candidates`` draws from l(x)."""
    n = x.shape[0]
    n_good = min(max(1, math.ceil(gamma * n)), n)
    good, bad = split_good_bad(losses, n_good)
    kinds = encoder.kinds
    lkde = KDE.fit(x[good], kinds, min_bandwidth=TPE_MIN_BANDWIDTH, prior_weight=prior_weight)
    gkde = KDE.fit(x[bad], kinds, min_bandwidth=TPE_MIN_BANDWIDTH, prior_weight=prior_weight)
    cand = lkde.sample(rng, n_candidates)
    score = lkde.logpdf(cand) - gkde.logpdf(cand)
    return cand[int(np.argmax(score))]


@dataclass
class BohbModel:
    """hpbandster's pair of KDEs for one budget (good = top ``top_n_percent``)."""

    good: KDE
    bad: KDE

    @staticmethod
    def fit(
        x: np.ndarray,
        losses: np.ndarray,
        kinds: np.ndarray,
        *,
        min_points_in_model: int,
        top_n_percent: int,
        min_bandwidth: float,
    ) -> BohbModel | None:
        """Fit as hpbandster's ``BOHB.new_result`` does, or None when there are too few points:
        needs ``N >= min_points_in_model`` and more good and more bad points than dimensions."""
        n, d = x.shape
        if n < min_points_in_model:
            return None
        n_good = max(min_points_in_model, (top_n_percent * n) // 100)
        n_bad = max(min_points_in_model, ((100 - top_n_percent) * n) // 100)
        order = np.argsort(losses, kind="stable")
        good, bad = order[:n_good], order[n_good : n_good + n_bad]
        if good.size <= d or bad.size <= d:
            return None
        return BohbModel(
            KDE.fit(x[good], kinds, min_bandwidth=min_bandwidth),
            KDE.fit(x[bad], kinds, min_bandwidth=min_bandwidth),
        )

    def propose(
        self, rng: np.random.Generator, num_samples: int, bandwidth_factor: float
    ) -> np.ndarray | None:
        """The best of ``num_samples`` draws around good points by ``l(x) / g(x)``, or None."""
        cand = self.good.sample(rng, num_samples, bandwidth_factor)
        score = np.maximum(self.good.logpdf(cand), _LOG_TINY) - np.maximum(self.bad.logpdf(cand), _LOG_TINY)
        if not np.isfinite(score).any():
            return None
        return cand[int(np.nanargmax(score))]
