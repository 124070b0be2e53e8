"""Comparing two models' scores: significance tests, bootstrap CI, effect sizes (numpy/scipy only).

One entry point, :func:`compare`, decides whether model A's scores differ from (or beat) model B's.
The registry calls ``compare(new, champion, paired=..., alternative="greater")`` ("less" for
lower-is-better metrics such as loss or perplexity) and moves the champion alias only when
``Comparison.significant is True``.

Policy (``POLICY`` below is the sentence the model card quotes):

* **Which test.** Every applicable test is computed and reported; one is *chosen* for the decision.
  Paired data (runs paired by seed, or by test folds): if there are n >= 3 differences, they are not
  all equal, and Shapiro-Wilk on the differences gives p > 0.05, the paired t-test is chosen,
  otherwise the Wilcoxon signed-rank test. Unpaired data: if both samples have n >= 3, neither is
  constant, and both Shapiro-Wilk p > 0.05, Welch's t-test is chosen, otherwise Mann-Whitney U.
  (The normality threshold is fixed at 0.05, independent of ``alpha``.)
* **Too few runs.** A rank test whose smallest attainable p-value (exact null distribution, zeros
  dropped for Wilcoxon) is not below ``alpha`` is *not testable*: it reports no p-value, only
  "not testable: n too small" with the minimum n (Wilcoxon: 2**-n one-sided, 2**(1-n) two-sided, so
  at alpha=0.05 n >= 5 one-sided, n >= 6 two-sided; Mann-Whitney: 1/C(n1+n2, n1), so n1 = n2 >= 4
  for both). A t-test needs n >= 2 per sample and a non-zero variance. If the chosen test is not
  testable, ``significant`` is ``None`` (cannot tell) - unless the means already answer the
  question (identical data, or the mean is on the wrong side of a one-sided alternative): then
  ``significant`` is ``False``.
* **Significant** means: the chosen test's p-value (one-sided for "greater"/"less") is < ``alpha``
  *and* the mean difference points the same way.
* **p-values** are scipy's: ``ttest_rel``, ``ttest_ind(equal_var=False)``, ``wilcoxon`` (method
  "auto": exact for n <= 50 without ties/zeros, exhaustive permutations for n <= 13 with ties or
  zeros, zero_method "wilcox"), ``mannwhitneyu`` (method "auto", but exhaustive permutations when
  there are ties and C(n1+n2, n1) <= 20000, because scipy's normal approximation with ties is
  anti-conservative for small samples). Paired differences are rounded to 12 decimals first so that
  floating-point noise does not break ties.
* **Confidence interval** of the difference in means (A - B): seeded bootstrap, two-sided at level
  1 - alpha, 9999 resamples, BCa (scipy.stats.bootstrap; pairs resampled together for paired data,
  samples resampled independently otherwise); percentile when BCa is degenerate; a zero-width
  interval when the data do not vary. Descriptive only: the decision uses the test.
* **Effect size**: Cohen's d (pooled SD) for Welch, d_z = mean(d)/sd(d) for the paired t-test,
  rank-biserial correlation for the rank tests (matched-pairs r = (T+ - T-)/(T+ + T-) for Wilcoxon,
  r = 2U/(n1 n2) - 1 for Mann-Whitney); positive when A > B.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats as st

from kftune.errors import UserError

Alternative = Literal["two-sided", "greater", "less"]
ALTERNATIVES = ("two-sided", "greater", "less")

NORMALITY_ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 9999
MWU_EXHAUSTIVE_LIMIT = 20000

WILCOXON = "wilcoxon"
MANN_WHITNEY = "mann-whitney"
PAIRED_T = "paired-t"
WELCH_T = "welch-t"

TEST_LABELS = {
    WILCOXON: "Wilcoxon signed-rank",
    MANN_WHITNEY: "Mann-Whitney U",
    PAIRED_T: "paired t-test",
    WELCH_T: "Welch's t-test",
}

POLICY = (
    "Models are compared on per-run scores (paired by seed or by test fold when possible): the paired "
    "t-test (Welch's t-test for unpaired runs) is used when Shapiro-Wilk does not reject normality "
    "(p > 0.05, n >= 3), otherwise the Wilcoxon signed-rank test (Mann-Whitney U for unpaired runs); "
    "a result is significant when that test's one-sided p-value is below alpha and the mean is better; "
    "a rank test whose smallest attainable p-value is not below alpha is reported as 'not testable' "
    "with the minimum number of runs instead of a p-value; the 95% interval of the mean difference is "
    "a seeded BCa bootstrap (9999 resamples); effect sizes are Cohen's d (d_z when paired) or the "
    "rank-biserial correlation."
)


# ----------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class TestResult:
    """One significance test. ``p_value`` is None when the test is not testable (see ``reason``)."""

    __test__ = False  # not a pytest class

    name: str
    statistic: float | None
    p_value: float | None
    effect_size: float | None
    effect_name: str
    testable: bool
    reason: str = ""
    min_n: int | None = None
    method: str = ""

    @property
    def label(self) -> str:
        return TEST_LABELS.get(self.name, self.name)


@dataclass(frozen=True)
class NormalityResult:
    """Shapiro-Wilk on one sample (or on the paired differences). ``normal`` None: not checkable."""

    sample: str
    n: int
    statistic: float | None
    p_value: float | None
    normal: bool | None
    reason: str = ""


@dataclass(frozen=True)
class Comparison:
    """A vs B. ``diff`` = mean(A) - mean(B); ``significant`` None means "cannot tell" (see reason)."""

    paired: bool
    alternative: str
    alpha: float
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    std_a: float
    std_b: float
    diff: float
    ci: tuple[float, float] | None
    ci_level: float
    ci_method: str
    chosen: str
    p_value: float | None
    effect_size: float | None
    effect_name: str
    significant: bool | None
    reason: str
    tests: dict[str, TestResult] = field(default_factory=dict)
    normality: dict[str, NormalityResult] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of pairs (paired) or the smaller sample size (unpaired)."""
        return min(self.n_a, self.n_b)

    @property
    def chosen_test(self) -> TestResult:
        return self.tests[self.chosen]

    @property
    def chosen_label(self) -> str:
        return TEST_LABELS.get(self.chosen, self.chosen)

    def summary(self, digits: int = 4) -> str:
        """One line for a model card: difference, CI, chosen test, p, effect size, verdict."""
        parts = [f"mean difference {self.diff:+.{digits}f}"]
        if self.ci is not None:
            parts[-1] += (
                f" ({self.ci_level:.0%} CI [{self.ci[0]:+.{digits}f}, {self.ci[1]:+.{digits}f}], "
                f"{self.ci_method})"
            )
        side = "" if self.alternative == "two-sided" else " one-sided"
        test = self.chosen_test
        if test.p_value is None:
            parts.append(f"{test.label}: {test.reason}")
        else:
            parts.append(f"{test.label}{side} p = {format_p(test.p_value)}")
        if self.effect_size is not None:
            parts.append(f"{self.effect_name} = {self.effect_size:+.2f}")
        verdict = {True: "significant", False: "not significant", None: "undecided"}[self.significant]
        parts.append(f"{verdict} at alpha = {self.alpha:g}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci"] = list(self.ci) if self.ci is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Comparison:
        d = dict(d)
        d["ci"] = tuple(d["ci"]) if d.get("ci") is not None else None
        d["tests"] = {k: TestResult(**v) for k, v in (d.get("tests") or {}).items()}
        d["normality"] = {k: NormalityResult(**v) for k, v in (d.get("normality") or {}).items()}
        return cls(**d)


# ----------------------------------------------------------------------------------------------
# Summaries and formatting


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float  # ddof=1; nan when n == 1
    min: float
    max: float
    n: int

    def format(self, digits: int = 4) -> str:
        return format_mean_std(self.mean, self.std, digits)

    def __iter__(self):  # mean, std, lo, hi, n = summarize(values)
        return iter((self.mean, self.std, self.min, self.max, self.n))


def summarize(values: Sequence[float]) -> Summary:
    """Mean, sample standard deviation (ddof=1), min, max and n of a list of scores."""
    x = _as_array(values, "values")
    std = float(np.std(x, ddof=1)) if x.size > 1 else float("nan")
    return Summary(float(np.mean(x)), std, float(np.min(x)), float(np.max(x)), int(x.size))


def format_mean_std(mean: float, std: float | None, digits: int = 4) -> str:
    """``0.8231 ± 0.0042``; a single run (std nan/None) is ``0.8231 (n=1)``."""
    if std is None or not math.isfinite(std):
        return f"{mean:.{digits}f} (n=1)"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_p(p: float | None) -> str:
    """p-values: 4 significant digits, ``<1e-04`` below that; ``-`` when absent."""
    if p is None or not math.isfinite(p):
        return "-"
    if p < 1e-4:
        return "<1e-04"
    return f"{p:.4f}"


# ----------------------------------------------------------------------------------------------
# Smallest attainable p-values and minimum sample sizes of the rank tests


def _sides(alternative: str) -> int:
    return 2 if alternative == "two-sided" else 1


def wilcoxon_min_p(n: int, alternative: str = "two-sided") -> float:
    """Smallest p the exact signed-rank test can give with n non-zero differences."""
    return min(1.0, _sides(alternative) / 2.0**n)


def mannwhitney_min_p(n1: int, n2: int, alternative: str = "two-sided") -> float:
    """Smallest p the exact Mann-Whitney U test can give with samples of n1 and n2."""
    return min(1.0, _sides(alternative) / math.comb(n1 + n2, n1))


def wilcoxon_min_n(alpha: float = 0.05, alternative: str = "two-sided") -> int:
    """Fewest non-zero paired differences for which Wilcoxon can give p < alpha."""
    n = 1
    while wilcoxon_min_p(n, alternative) >= alpha:
        n += 1
    return n


def mannwhitney_min_n(alpha: float = 0.05, alternative: str = "two-sided") -> int:
    """Fewest runs per model (n1 = n2) for which Mann-Whitney U can give p < alpha."""
    n = 1
    while mannwhitney_min_p(n, n, alternative) >= alpha:
        n += 1
    return n


# ----------------------------------------------------------------------------------------------
# Individual tests


def _side_word(alternative: str) -> str:
    return "two-sided" if alternative == "two-sided" else "one-sided"


def shapiro_check(x: np.ndarray, sample: str) -> NormalityResult:
    """Shapiro-Wilk; normality is only assumed with n >= 3, a non-constant sample and p > 0.05."""
    n = int(x.size)
    if n < 3:
        return NormalityResult(sample, n, None, None, None, f"n={n} < 3: normality cannot be checked")
    if np.ptp(x) == 0:
        return NormalityResult(sample, n, None, None, None, "all values equal: not a normal sample")
    res = st.shapiro(x)
    p = float(res.pvalue)
    normal = p > NORMALITY_ALPHA
    why = f"Shapiro-Wilk p={p:.4f} {'>' if normal else '<='} {NORMALITY_ALPHA}"
    return NormalityResult(sample, n, float(res.statistic), p, normal, why)


def wilcoxon_test(d: np.ndarray, alternative: str, alpha: float) -> TestResult:
    """Wilcoxon signed-rank on paired differences d = a - b (zeros dropped)."""
    nz = d[d != 0]
    n = int(nz.size)
    effect = _rank_biserial_paired(nz) if n else None
    min_n = wilcoxon_min_n(alpha, alternative)
    if n == 0:
        return TestResult(
            WILCOXON, None, None, None, "rank-biserial r", False,
            "not testable: all paired differences are zero", min_n,
        )  # fmt: skip
    if wilcoxon_min_p(n, alternative) >= alpha:
        return TestResult(
            WILCOXON, None, None, effect, "rank-biserial r", False,
            f"not testable: n too small ({n} non-zero paired differences; the {_side_word(alternative)} "
            f"Wilcoxon signed-rank test needs n >= {min_n} to reach p < {alpha:g})",
            min_n,
        )  # fmt: skip
    res = st.wilcoxon(d, zero_method="wilcox", alternative=alternative, method="auto")
    ties_or_zeros = np.unique(np.abs(nz)).size < n or n < d.size
    if n > 50:
        method = "normal approximation"
    elif ties_or_zeros:
        method = "exhaustive permutations (ties or zeros)" if n <= 13 else "normal approximation (ties)"
    else:
        method = "exact"
    return TestResult(
        WILCOXON, float(res.statistic), float(res.pvalue), effect, "rank-biserial r", True,
        min_n=min_n, method=method,
    )  # fmt: skip


def mannwhitney_test(a: np.ndarray, b: np.ndarray, alternative: str, alpha: float) -> TestResult:
    """Mann-Whitney U of a vs b; exhaustive permutations when there are ties in small samples."""
    n1, n2 = int(a.size), int(b.size)
    min_n = mannwhitney_min_n(alpha, alternative)
    if mannwhitney_min_p(n1, n2, alternative) >= alpha:
        return TestResult(
            MANN_WHITNEY, None, None, _rank_biserial_unpaired(a, b), "rank-biserial r", False,
            f"not testable: n too small (n1={n1}, n2={n2}; the {_side_word(alternative)} Mann-Whitney U "
            f"test needs n1 = n2 >= {min_n}, or sizes with C(n1+n2, n1) > {_sides(alternative) / alpha:g}, "
            f"to reach p < {alpha:g})",
            min_n,
        )  # fmt: skip
    ties = np.unique(np.concatenate([a, b])).size < n1 + n2
    if ties and math.comb(n1 + n2, n1) <= MWU_EXHAUSTIVE_LIMIT:
        method: Any = st.PermutationMethod(n_resamples=np.inf)
        label = "exhaustive permutations (ties)"
    else:
        method = "auto"
        label = "normal approximation" if ties or min(n1, n2) > 8 else "exact"
    res = st.mannwhitneyu(a, b, alternative=alternative, method=method)
    return TestResult(
        MANN_WHITNEY, float(res.statistic), float(res.pvalue), _rank_biserial_unpaired(a, b),
        "rank-biserial r", True, min_n=min_n, method=label,
    )  # fmt: skip


def paired_t_test(a: np.ndarray, b: np.ndarray, alternative: str) -> TestResult:
    d = a - b
    n = int(d.size)
    if n < 2:
        return TestResult(PAIRED_T, None, None, None, "d_z", False, f"not testable: n={n} < 2 pairs", 2)
    if np.ptp(np.round(d, 12)) == 0:
        return TestResult(
            PAIRED_T, None, None, None, "d_z", False,
            "not testable: the paired differences have zero variance", 2,
        )  # fmt: skip
    res = st.ttest_rel(a, b, alternative=alternative)
    return TestResult(
        PAIRED_T, float(res.statistic), float(res.pvalue), float(np.mean(d) / np.std(d, ddof=1)), "d_z", True,
        min_n=2, method=f"df={n - 1}",
    )  # fmt: skip


def welch_t_test(a: np.ndarray, b: np.ndarray, alternative: str) -> TestResult:
    n1, n2 = int(a.size), int(b.size)
    if min(n1, n2) < 2:
        return TestResult(
            WELCH_T,
            None,
            None,
            None,
            "Cohen's d",
            False,
            f"not testable: n1={n1}, n2={n2}; needs >= 2 each",
            2,
        )
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return TestResult(
            WELCH_T, None, None, None, "Cohen's d", False, "not testable: both samples have zero variance", 2
        )
    res = st.ttest_ind(a, b, equal_var=False, alternative=alternative)
    return TestResult(
        WELCH_T, float(res.statistic), float(res.pvalue), cohens_d(a, b), "Cohen's d", True,
        min_n=2, method=f"df={float(res.df):.2f}",
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Effect sizes


def cohens_d(a: Sequence[float], b: Sequence[float]) -> float:
    """(mean(a) - mean(b)) / pooled standard deviation (ddof=1)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n1, n2 = a.size, b.size
    pooled = math.sqrt(((n1 - 1) * np.var(a, ddof=1) + (n2 - 1) * np.var(b, ddof=1)) / (n1 + n2 - 2))
    diff = float(np.mean(a) - np.mean(b))
    if pooled == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / pooled


def _rank_biserial_paired(nz: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation (T+ - T-) / (T+ + T-) over non-zero differences."""
    ranks = st.rankdata(np.abs(nz))
    t_plus = float(ranks[nz > 0].sum())
    t_minus = float(ranks[nz < 0].sum())
    return (t_plus - t_minus) / (t_plus + t_minus)


def _rank_biserial_unpaired(a: np.ndarray, b: np.ndarray) -> float:
    """2 U_a / (n1 n2) - 1 = P(A > B) - P(A < B)."""
    gt = (a[:, None] > b[None, :]).sum()
    lt = (a[:, None] < b[None, :]).sum()
    return float((gt - lt) / (a.size * b.size))


def rank_biserial(a: Sequence[float], b: Sequence[float], *, paired: bool) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if paired:
        d = np.round(a - b, 12)
        return _rank_biserial_paired(d[d != 0])
    return _rank_biserial_unpaired(a, b)


# ----------------------------------------------------------------------------------------------
# Bootstrap


def bootstrap_ci(
    a: Sequence[float],
    b: Sequence[float],
    *,
    paired: bool,
    level: float = 0.95,
    seed: int = 0,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
) -> tuple[tuple[float, float] | None, str]:
    """Two-sided bootstrap CI of mean(a) - mean(b): BCa, percentile if BCa is degenerate."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if paired:
        d = a - b
        if d.size < 2:
            return None, "none (n < 2)"
        if np.ptp(d) == 0:
            return (float(d[0]), float(d[0])), "none (no variation)"
        data: tuple[np.ndarray, ...] = (d,)

        def stat(x, axis=-1):
            return np.mean(x, axis=axis)
    else:
        if min(a.size, b.size) < 2:
            return None, "none (n < 2)"
        if np.ptp(a) == 0 and np.ptp(b) == 0:
            diff = float(a[0] - b[0])
            return (diff, diff), "none (no variation)"
        data = (a, b)

        def stat(x, y, axis=-1):
            return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = st.bootstrap(
                data, stat, n_resamples=n_resamples, confidence_level=level, method=method,
                rng=np.random.default_rng(seed), vectorized=True,
            )  # fmt: skip
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return (lo, hi), f"{method} bootstrap, {n_resamples} resamples, seed {seed}"
    return None, "none (bootstrap failed)"


# ----------------------------------------------------------------------------------------------
# compare()


def _as_array(values: Any, what: str) -> np.ndarray:
    try:
        x = np.asarray(list(values), dtype=float)
    except (TypeError, ValueError) as e:
        raise UserError(f"{what}: expected a list of numbers, got {values!r} ({e})") from None
    if x.ndim != 1 or x.size == 0:
        raise UserError(f"{what}: expected a non-empty list of numbers, got {values!r}")
    if not np.all(np.isfinite(x)):
        raise UserError(f"{what}: contains NaN or infinite scores {x.tolist()}; drop failed runs first")
    return x


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        if set(a) != set(b):
            raise UserError(
                f"paired comparison: the runs do not match: only in A {sorted(set(a) - set(b))}, "
                f"only in B {sorted(set(b) - set(a))}; pair runs by the same seeds/folds"
            )
        keys = sorted(a, key=str)
        return _as_array([a[k] for k in keys], "A"), _as_array([b[k] for k in keys], "B")
    x, y = _as_array(_values(a), "A"), _as_array(_values(b), "B")
    if x.size != y.size:
        raise UserError(
            f"paired comparison needs as many runs in A as in B (got {x.size} and {y.size}); "
            "pair them by seed or fold, or use paired=False"
        )
    return x, y


def _values(x: Any) -> Any:
    return list(x.values()) if isinstance(x, Mapping) else x


def compare(
    a: Sequence[float] | Mapping[Any, float],
    b: Sequence[float] | Mapping[Any, float],
    *,
    paired: bool,
    alternative: Alternative = "two-sided",
    alpha: float = 0.05,
    seed: int = 0,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
) -> Comparison:
    """Compare scores of model A with model B (see the module docstring for the policy).

    ``a``/``b``: one score per run. Paired runs must be aligned (same seed / same fold at the same
    index), or given as mappings {seed_or_fold: score} with the same keys. ``alternative``:
    "greater" asks whether A is better than B for a higher-is-better metric, "less" for a
    lower-is-better one.
    """
    if alternative not in ALTERNATIVES:
        raise UserError(f"alternative must be one of {', '.join(ALTERNATIVES)}, got {alternative!r}")
    if not 0 < alpha < 1:
        raise UserError(f"alpha must be in (0, 1), got {alpha}")
    if paired:
        x, y = _pair(a, b)
    else:
        x, y = _as_array(_values(a), "A"), _as_array(_values(b), "B")

    sa, sb = summarize(x), summarize(y)
    diff = sa.mean - sb.mean
    tests: dict[str, TestResult] = {}
    normality: dict[str, NormalityResult] = {}
    if paired:
        d = np.round(x - y, 12)
        normality["A-B"] = shapiro_check(d, "A-B")
        tests[PAIRED_T] = paired_t_test(x, y, alternative)
        tests[WILCOXON] = wilcoxon_test(d, alternative, alpha)
        use_t = normality["A-B"].normal is True
        chosen = PAIRED_T if use_t else WILCOXON
        no_difference = bool(np.all(d == 0))
    else:
        normality["A"] = shapiro_check(x, "A")
        normality["B"] = shapiro_check(y, "B")
        tests[WELCH_T] = welch_t_test(x, y, alternative)
        tests[MANN_WHITNEY] = mannwhitney_test(x, y, alternative, alpha)
        use_t = all(r.normal is True for r in normality.values())
        chosen = WELCH_T if use_t else MANN_WHITNEY
        no_difference = bool(np.array_equal(np.sort(x), np.sort(y)))
    if use_t and not tests[chosen].testable:  # normal but degenerate for t: fall back to ranks
        chosen = WILCOXON if paired else MANN_WHITNEY
    if use_t:
        why_test = f"{TEST_LABELS[chosen]} chosen: normality not rejected (" + "; ".join(
            f"{r.sample}: {r.reason}" for r in normality.values()
        ) + ")"  # fmt: skip
    else:
        why_test = f"{TEST_LABELS[chosen]} chosen: " + "; ".join(
            f"{r.sample}: {r.reason}" for r in normality.values() if r.normal is not True
        )

    ci, ci_method = bootstrap_ci(x, y, paired=paired, level=1 - alpha, seed=seed, n_resamples=n_resamples)
    test = tests[chosen]
    significant, verdict = _decide(test, diff, no_difference, alternative, alpha)
    return Comparison(
        paired=paired, alternative=alternative, alpha=alpha, n_a=sa.n, n_b=sb.n,
        mean_a=sa.mean, mean_b=sb.mean, std_a=sa.std, std_b=sb.std, diff=diff,
        ci=ci, ci_level=1 - alpha, ci_method=ci_method, chosen=chosen, p_value=test.p_value,
        effect_size=test.effect_size, effect_name=test.effect_name, significant=significant,
        reason=f"{verdict}. {why_test}.", tests=tests, normality=normality,
    )  # fmt: skip


def _decide(
    test: TestResult, diff: float, no_difference: bool, alternative: str, alpha: float
) -> tuple[bool | None, str]:
    if no_difference:
        return False, "Not significant: the two models' scores are identical"
    if alternative == "greater" and diff <= 0:
        return False, f"Not significant: mean(A) - mean(B) = {diff:+.4g} is not > 0"
    if alternative == "less" and diff >= 0:
        return False, f"Not significant: mean(A) - mean(B) = {diff:+.4g} is not < 0"
    if test.p_value is None:
        return None, f"Undecided: {test.label} {test.reason}"
    side = "two-sided" if alternative == "two-sided" else f"one-sided ({alternative})"
    if test.p_value < alpha:
        return True, f"Significant: {test.label} {side} p = {format_p(test.p_value)} < alpha = {alpha:g}"
    return False, f"Not significant: {test.label} {side} p = {format_p(test.p_value)} >= alpha = {alpha:g}"


# ----------------------------------------------------------------------------------------------
# Paired by test folds (seed 002)


def _metric_fn(metric: str | Callable[[Any, Any], float]) -> Callable[[Any, Any], float]:
    if callable(metric):
        return metric
    from sklearn.metrics import accuracy_score, f1_score

    named: dict[str, Callable[[Any, Any], float]] = {
        "accuracy": accuracy_score,
        "macro_f1": lambda t, p: f1_score(t, p, average="macro"),
        "micro_f1": lambda t, p: f1_score(t, p, average="micro"),
    }
    if metric not in named:
        raise UserError(f"unknown metric {metric!r}: use one of {', '.join(named)} or pass a function")
    return named[metric]


def group_kfold_scores(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    groups: Sequence[Any],
    k: int,
    metric: str | Callable[[Any, Any], float],
) -> list[float]:
    """Score predictions on k folds of a test set split by group (document or sentence id).

    Folds come from sklearn's ``GroupKFold(n_splits=k)`` (no shuffling): deterministic for given
    groups, so two models scored on the same test set get the same folds and can be compared with
    ``compare(scores_a, scores_b, paired=True)``. Items of y_true/y_pred may be labels or whole tag
    sequences (NER); ``metric(y_true_fold, y_pred_fold)`` gets plain lists. Returns one score per fold.
    """
    from sklearn.model_selection import GroupKFold

    n = len(y_true)
    if len(y_pred) != n or len(groups) != n:
        raise UserError(
            f"group_kfold_scores: y_true, y_pred and groups must have the same length "
            f"(got {n}, {len(y_pred)}, {len(groups)})"
        )
    n_groups = len(set(groups))
    if k < 2 or k > n_groups:
        raise UserError(f"group_kfold_scores: k={k} folds needs 2 <= k <= number of groups ({n_groups})")
    fn = _metric_fn(metric)
    scores = []
    for _, idx in GroupKFold(n_splits=k).split(np.zeros(n), groups=list(groups)):
        scores.append(float(fn([y_true[i] for i in idx], [y_pred[i] for i in idx])))
    return scores


def group_kfold_indices(groups: Sequence[Any], k: int) -> list[list[int]]:
    """The test-set indices of each fold, as :func:`group_kfold_scores` uses them."""
    from sklearn.model_selection import GroupKFold

    n = len(groups)
    if k < 2 or k > len(set(groups)):
        raise UserError(f"k={k} folds needs 2 <= k <= number of groups ({len(set(groups))})")
    return [idx.tolist() for _, idx in GroupKFold(n_splits=k).split(np.zeros(n), groups=list(groups))]
