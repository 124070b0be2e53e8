"""kftune.evaluate.stats against scipy, brute-force exact distributions and data with known answers."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats as st

from kftune.errors import UserError
from kftune.evaluate import stats
from kftune.evaluate.stats import (
    MANN_WHITNEY,
    PAIRED_T,
    WELCH_T,
    WILCOXON,
    Comparison,
    compare,
    format_mean_std,
    group_kfold_indices,
    group_kfold_scores,
    summarize,
)

ALTS = ("two-sided", "greater", "less")


def _rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- against scipy


@pytest.mark.parametrize("alternative", ALTS)
def test_welch_and_mannwhitney_match_scipy(alternative):
    a = _rng(1).normal(0.83, 0.004, 7)
    b = _rng(2).normal(0.825, 0.006, 9)
    c = compare(a, b, paired=False, alternative=alternative, n_resamples=999)
    welch = st.ttest_ind(a, b, equal_var=False, alternative=alternative)
    assert c.tests[WELCH_T].statistic == pytest.approx(welch.statistic, rel=1e-12)
    assert c.tests[WELCH_T].p_value == pytest.approx(welch.pvalue, rel=1e-12)
    mwu = st.mannwhitneyu(a, b, alternative=alternative)  # no ties: scipy's exact method
    assert c.tests[MANN_WHITNEY].statistic == mwu.statistic
    assert c.tests[MANN_WHITNEY].p_value == pytest.approx(mwu.pvalue, rel=1e-12)
    assert c.tests[MANN_WHITNEY].method == "exact"
    for name, x in (("A", a), ("B", b)):
        sw = st.shapiro(x)
        assert c.normality[name].statistic == pytest.approx(sw.statistic)
        assert c.normality[name].p_value == pytest.approx(sw.pvalue)


@pytest.mark.parametrize("alternative", ALTS)
def test_paired_t_and_wilcoxon_match_scipy(alternative):
    b = _rng(3).normal(0.80, 0.01, 8)
    a = b + _rng(4).normal(0.004, 0.003, 8)
    c = compare(a, b, paired=True, alternative=alternative, n_resamples=999)
    rel = st.ttest_rel(a, b, alternative=alternative)
    assert c.tests[PAIRED_T].statistic == pytest.approx(rel.statistic, rel=1e-9)
    assert c.tests[PAIRED_T].p_value == pytest.approx(rel.pvalue, rel=1e-9)
    w = st.wilcoxon(a, b, alternative=alternative)
    assert c.tests[WILCOXON].statistic == w.statistic
    assert c.tests[WILCOXON].p_value == pytest.approx(w.pvalue, rel=1e-12)
    assert c.tests[WILCOXON].method == "exact"
    sw = st.shapiro(a - b)
    assert c.normality["A-B"].p_value == pytest.approx(sw.pvalue, rel=1e-6)


def _exact_wilcoxon_p(d, alternative):
    """Brute force: all 2^n sign flips of the (mid)ranks of the non-zero |d|."""
    nz = np.asarray([x for x in d if x != 0], float)
    ranks = st.rankdata(np.abs(nz))
    obs = ranks[nz > 0].sum()
    dist = np.array(
        [
            sum(r for r, s in zip(ranks, signs, strict=True) if s)
            for signs in itertools.product([0, 1], repeat=nz.size)
        ]
    )
    greater = np.mean(dist >= obs - 1e-9)
    less = np.mean(dist <= obs + 1e-9)
    return {"greater": greater, "less": less, "two-sided": min(1.0, 2 * min(greater, less))}[alternative]


@pytest.mark.parametrize("alternative", ALTS)
def test_wilcoxon_ties_and_zeros(alternative):
    # seed-002-like scores with 3 decimals: tied and zero differences between paired runs
    a = np.array([0.832, 0.833, 0.831, 0.827, 0.830, 0.829, 0.832, 0.834, 0.832, 0.833])
    b = np.array([0.830, 0.829, 0.831, 0.822, 0.828, 0.823, 0.830, 0.834, 0.830, 0.829])
    d = np.round(a - b, 12)
    assert (d == 0).sum() == 2 and np.unique(d[d != 0]).size < (d != 0).sum()
    res = stats.wilcoxon_test(d, alternative, 0.05)
    assert res.testable and res.method == "exhaustive permutations (ties or zeros)"
    assert res.p_value == pytest.approx(st.wilcoxon(d, alternative=alternative).pvalue, rel=1e-12)
    assert res.p_value == pytest.approx(_exact_wilcoxon_p(d, alternative), rel=1e-9)
    # 8 non-zero differences, all positive: the largest possible T+ -> smallest attainable p
    assert res.effect_size == 1.0
    if alternative == "greater":
        assert res.p_value == pytest.approx(1 / 2**8)


def test_wilcoxon_float_noise_does_not_break_ties():
    # 0.2 - 0.1 != 0.4 - 0.3 in floating point; rounding to 12 decimals makes them a tie again
    a, b = [0.2, 0.4, 0.9, 0.7, 0.61, 0.2], [0.1, 0.3, 0.7, 0.5, 0.6, 0.25]
    assert (0.2 - 0.1) != (0.4 - 0.3)
    c = compare(a, b, paired=True, alternative="greater", n_resamples=999)
    d = np.round(np.subtract(a, b), 12)
    assert c.tests[WILCOXON].p_value == pytest.approx(_exact_wilcoxon_p(d, "greater"))


def _exact_mwu_p(a, b, alternative):
    """Brute force over every split of the pooled values: U = #(a>b) + 0.5 #(a==b)."""
    pooled = np.concatenate([a, b])
    n1 = len(a)

    def u(x, y):
        return (x[:, None] > y[None, :]).sum() + 0.5 * (x[:, None] == y[None, :]).sum()

    obs = u(np.asarray(a), np.asarray(b))
    dist = []
    for idx in itertools.combinations(range(pooled.size), n1):
        mask = np.zeros(pooled.size, bool)
        mask[list(idx)] = True
        dist.append(u(pooled[mask], pooled[~mask]))
    dist = np.array(dist)
    greater, less = np.mean(dist >= obs - 1e-9), np.mean(dist <= obs + 1e-9)
    return {"greater": greater, "less": less, "two-sided": min(1.0, 2 * min(greater, less))}[alternative]


@pytest.mark.parametrize("alternative", ALTS)
def test_mannwhitney_with_ties_uses_exact_permutations(alternative):
    a = np.array([0.80, 0.81, 0.81, 0.83, 0.82])
    b = np.array([0.79, 0.80, 0.80, 0.80, 0.81])
    res = stats.mannwhitney_test(a, b, alternative, 0.05)
    assert res.method == "exhaustive permutations (ties)"
    assert res.statistic == st.mannwhitneyu(a, b).statistic
    assert res.p_value == pytest.approx(_exact_mwu_p(a, b, alternative), rel=1e-9)
    if alternative == "greater":  # scipy's default normal approximation is anti-conservative here
        assert st.mannwhitneyu(a, b, alternative="greater").pvalue < res.p_value


# ---------------------------------------------------------------- known answers


@pytest.mark.parametrize("paired", [True, False])
def test_identical_samples_are_not_significant(paired):
    x = [0.821, 0.834, 0.829, 0.840, 0.826, 0.831]
    for alternative in ALTS:
        c = compare(x, list(x), paired=paired, alternative=alternative, n_resamples=999)
        assert c.significant is False and c.diff == 0
        assert "identical" in c.reason
    c = compare(x, list(x), paired=False, n_resamples=999)
    assert c.p_value == pytest.approx(1.0)
    assert c.ci[0] <= 0 <= c.ci[1]


@pytest.mark.parametrize("paired", [True, False])
def test_shift_of_ten_std_is_significant(paired):
    b = _rng(5).normal(0.80, 0.01, 10)
    noise = _rng(6).normal(0, 0.01, 10)
    a = (b + 0.10 + 0.1 * noise) if paired else _rng(7).normal(0.90, 0.01, 10)
    c = compare(a, b, paired=paired, alternative="greater", n_resamples=999)
    assert c.significant is True and c.p_value < 1e-3
    assert c.ci[0] > 0.05 and c.ci[1] < 0.15
    assert compare(a, b, paired=paired, alternative="two-sided", n_resamples=999).significant is True
    # asking whether A is *worse* (lower-is-better metric): the mean points the other way
    worse = compare(a, b, paired=paired, alternative="less", n_resamples=999)
    assert worse.significant is False and "is not < 0" in worse.reason
    # and B against A is not better
    assert compare(b, a, paired=paired, alternative="greater", n_resamples=999).significant is False


def test_minimum_n_policy_numbers():
    assert stats.wilcoxon_min_n(0.05, "two-sided") == 6
    assert stats.wilcoxon_min_n(0.05, "greater") == 5
    assert stats.mannwhitney_min_n(0.05, "two-sided") == 4
    assert stats.mannwhitney_min_n(0.05, "greater") == 4
    assert stats.mannwhitney_min_p(3, 3, "greater") == pytest.approx(0.05)  # 1/20: not < 0.05
    assert stats.wilcoxon_min_p(5, "two-sided") == pytest.approx(0.0625)
    # the bounds are what scipy's exact tests actually reach
    assert st.wilcoxon(np.arange(1, 6), alternative="two-sided").pvalue == pytest.approx(0.0625)
    assert st.mannwhitneyu([4, 5, 6], [1, 2, 3], alternative="greater").pvalue == pytest.approx(0.05)


def test_too_small_n_is_not_testable_not_a_p_value():
    # 5 paired runs, two-sided: Wilcoxon cannot reach 0.05 whatever the data
    d = np.array([0.01, 0.02, 0.03, 0.04, 0.05])
    res = stats.wilcoxon_test(d, "two-sided", 0.05)
    assert not res.testable and res.p_value is None
    assert "not testable: n too small" in res.reason and "n >= 6" in res.reason
    assert stats.wilcoxon_test(d, "greater", 0.05).p_value == pytest.approx(1 / 32)

    # 2 paired runs: normality cannot be checked -> Wilcoxon chosen -> undecided, minimum n named
    c = compare([0.85, 0.87], [0.80, 0.81], paired=True, alternative="greater", n_resamples=999)
    assert c.chosen == WILCOXON and c.significant is None and c.p_value is None
    assert "n >= 5" in c.reason and "normality cannot be checked" in c.reason
    assert c.tests[PAIRED_T].testable  # reported for information, not used

    # 3 vs 3 constant runs: not normal -> Mann-Whitney, which cannot reach 0.05 with 3 + 3
    c = compare([0.9, 0.9, 0.9], [0.8, 0.8, 0.8], paired=False, alternative="greater", n_resamples=999)
    assert c.chosen == MANN_WHITNEY and c.significant is None
    assert "n1 = n2 >= 4" in c.reason
    assert "Undecided" in c.summary() or "undecided" in c.summary()

    # ... but a worse mean is a definite "no" whatever n is
    c = compare([0.7, 0.7, 0.7], [0.8, 0.8, 0.8], paired=False, alternative="greater", n_resamples=999)
    assert c.significant is False


def test_normality_check_chooses_the_test():
    rng = _rng(8)
    b = rng.normal(0.8, 0.01, 12)
    normal_a = b + rng.normal(0.01, 0.005, 12)
    c = compare(normal_a, b, paired=True, alternative="greater", n_resamples=999)
    assert c.normality["A-B"].normal is True and c.chosen == PAIRED_T
    assert c.p_value == c.tests[PAIRED_T].p_value
    outlier_a = b + np.r_[np.full(11, 0.01) + rng.normal(0, 0.001, 11), -0.2]
    c = compare(outlier_a, b, paired=True, alternative="greater", n_resamples=999)
    assert c.normality["A-B"].normal is False and c.chosen == WILCOXON
    assert c.effect_name == "rank-biserial r"
    a_skewed = np.r_[rng.normal(0.8, 0.001, 9), 0.95]
    c = compare(a_skewed, b, paired=False, n_resamples=999)
    assert c.normality["A"].normal is False and c.chosen == MANN_WHITNEY


def test_effect_sizes_of_known_shifts():
    b = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    sd = np.std(b, ddof=1)
    a = b + 2 * sd
    assert stats.cohens_d(a, b) == pytest.approx(2.0)
    assert stats.cohens_d(b, a) == pytest.approx(-2.0)
    assert stats.rank_biserial(a + 10, b, paired=False) == 1.0  # complete separation
    assert stats.rank_biserial(b, b, paired=False) == 0.0
    # d = [1, -2, 3, 4]: ranks 1..4, T+ = 8, T- = 2 -> r = 0.6
    assert stats.rank_biserial([1, -2, 3, 4], [0, 0, 0, 0], paired=True) == pytest.approx(0.6)
    c = compare(b + np.array([1, 2, 3, 4, 5]), b, paired=True, n_resamples=999)
    assert c.chosen == PAIRED_T and c.effect_name == "d_z"
    assert c.effect_size == pytest.approx(3 / np.std([1, 2, 3, 4, 5], ddof=1))
    u = compare(a, b, paired=False, n_resamples=999)
    assert u.chosen == WELCH_T and u.effect_size == pytest.approx(2.0)


@pytest.mark.parametrize("paired", [True, False])
def test_bootstrap_ci_covers_the_true_difference(paired):
    """Seeded simulation: the 95% BCa interval covers the true mean difference ~95% of the time."""
    rng = _rng(11)
    true_diff, hits, reps = 0.01, 0, 150
    for i in range(reps):
        b = rng.normal(0.80, 0.01, 12)
        a = (b + rng.normal(true_diff, 0.01, 12)) if paired else rng.normal(0.80 + true_diff, 0.01, 12)
        ci, method = stats.bootstrap_ci(a, b, paired=paired, seed=i, n_resamples=999)
        assert method.startswith("BCa")
        hits += ci[0] <= true_diff <= ci[1]
    assert 0.86 <= hits / reps <= 0.99


def test_bootstrap_is_seeded():
    a, b = _rng(1).normal(0, 1, 8), _rng(2).normal(0, 1, 8)
    ci1, _ = stats.bootstrap_ci(a, b, paired=False, seed=3, n_resamples=999)
    ci2, _ = stats.bootstrap_ci(a, b, paired=False, seed=3, n_resamples=999)
    ci3, _ = stats.bootstrap_ci(a, b, paired=False, seed=4, n_resamples=999)
    assert ci1 == ci2 and ci1 != ci3


# ---------------------------------------------------------------- inputs, summaries, serialisation


def test_pairing_by_seed_mapping():
    a = {1: 0.83, 2: 0.84, 3: 0.82, 4: 0.86, 5: 0.85, 6: 0.87}
    b = {6: 0.85, 5: 0.84, 4: 0.83, 3: 0.815, 2: 0.83, 1: 0.82}
    by_key = compare(a, b, paired=True, n_resamples=999)
    aligned = compare([a[k] for k in sorted(a)], [b[k] for k in sorted(a)], paired=True, n_resamples=999)
    assert by_key.tests[PAIRED_T].p_value == aligned.tests[PAIRED_T].p_value
    with pytest.raises(UserError, match="only in A \\[1\\]"):
        compare(a, {k: v for k, v in b.items() if k != 1}, paired=True)
    with pytest.raises(UserError, match="as many runs"):
        compare([0.8, 0.9], [0.8], paired=True)
    with pytest.raises(UserError, match="NaN"):
        compare([0.8, float("nan")], [0.8, 0.7], paired=False)
    with pytest.raises(UserError, match="alternative"):
        compare([0.8], [0.7], paired=False, alternative="bigger")


def test_summarize_and_format():
    s = summarize([0.82, 0.83, 0.84])
    assert (s.mean, s.min, s.max, s.n) == (pytest.approx(0.83), 0.82, 0.84, 3)
    assert s.std == pytest.approx(0.01)
    assert s.format() == "0.8300 ± 0.0100"
    mean, std, lo, hi, n = s
    assert (lo, hi, n) == (0.82, 0.84, 3) and mean == s.mean and std == s.std
    assert format_mean_std(0.82314, 0.00421) == "0.8231 ± 0.0042"
    one = summarize([0.5])
    assert math.isnan(one.std) and one.format() == "0.5000 (n=1)"
    assert stats.format_p(0.031249) == "0.0312" and stats.format_p(1e-7) == "<1e-04"
    assert stats.format_p(None) == "-"


def test_comparison_round_trips_through_json():
    c = compare([0.83, 0.84, 0.85, 0.86, 0.82], [0.80, 0.81, 0.79, 0.82, 0.80], paired=True, n_resamples=999)
    back = Comparison.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c
    assert back.summary() == c.summary()


def test_policy_sentence_is_quotable():
    assert "Wilcoxon" in stats.POLICY and "Shapiro-Wilk" in stats.POLICY and "not testable" in stats.POLICY
    assert "\n" not in stats.POLICY


# ---------------------------------------------------------------- GroupKFold


def test_group_kfold_scores_pair_two_models_by_fold():
    rng = _rng(12)
    docs = np.repeat(np.arange(80), rng.integers(2, 6, 80))  # sentences of 80 documents
    n = docs.size
    y_true = rng.integers(0, 3, n).tolist()
    good = [t if rng.random() < 0.9 else (t + 1) % 3 for t in y_true]
    weak = [t if rng.random() < 0.6 else (t + 1) % 3 for t in y_true]
    folds = group_kfold_indices(docs.tolist(), 5)
    assert sorted(i for f in folds for i in f) == list(range(n))
    for f in folds:  # no document is split across folds
        others = set(range(n)) - set(f)
        assert not {docs[i] for i in f} & {docs[i] for i in others}
    s_good = group_kfold_scores(y_true, good, docs.tolist(), 5, "accuracy")
    assert s_good == group_kfold_scores(y_true, good, docs.tolist(), 5, "accuracy")  # deterministic
    manual = [np.mean([y_true[i] == good[i] for i in f]) for f in folds]
    assert s_good == pytest.approx(manual)
    assert group_kfold_scores(y_true, y_true, docs.tolist(), 5, "macro_f1") == [1.0] * 5
    s_weak = group_kfold_scores(y_true, weak, docs.tolist(), 5, "accuracy")
    c = compare(s_good, s_weak, paired=True, alternative="greater", n_resamples=999)
    assert c.n == 5 and c.diff > 0.2 and c.significant is True


def test_group_kfold_scores_sequences_and_errors():
    # NER-style: items are tag sequences; the metric gets lists of sequences
    y_true = [["B-PER", "O"], ["O"], ["B-LOC"], ["O", "O"]]
    y_pred = [["B-PER", "O"], ["B-LOC"], ["B-LOC"], ["O", "O"]]

    def token_acc(t, p):
        pairs = [(x, y) for ts, ps in zip(t, p, strict=True) for x, y in zip(ts, ps, strict=True)]
        return sum(x == y for x, y in pairs) / len(pairs)

    scores = group_kfold_scores(y_true, y_pred, ["d1", "d1", "d2", "d3"], 3, token_acc)
    assert sorted(scores) == [pytest.approx(2 / 3), 1.0, 1.0]
    with pytest.raises(UserError, match="number of groups"):
        group_kfold_scores(y_true, y_pred, ["d1", "d1", "d2", "d2"], 3, token_acc)
    with pytest.raises(UserError, match="same length"):
        group_kfold_scores(y_true, y_pred[:3], ["d1", "d1", "d2", "d3"], 2, token_acc)
    with pytest.raises(UserError, match="unknown metric"):
        group_kfold_scores(y_true, y_pred, ["d1", "d1", "d2", "d3"], 2, "f2")
