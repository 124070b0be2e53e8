"""ASHA (Li et al. 2020, Algorithm 2), rule by rule."""

from __future__ import annotations

import math
import re

import pytest
from hpo_sim import config_of, problem, rung_counts, seed_space, simulate, smooth_score

from kftune.errors import UserError
from kftune.hpo import (
    LABEL_CONFIG,
    LABEL_PARENT,
    LABEL_RUNG,
    Objective,
    SearchSpace,
    TrialRecord,
    get_algorithm,
)
from kftune.hpo.asha import asha_budgets, expected_rung_sizes

ASHA = get_algorithm("asha")
BASE = {"resource_name": "num_epochs", "sampler": "random", "random_state": "3"}


def asha(**settings: str):
    return problem("asha", {**BASE, **settings})


def cfg_assign(i: int, epochs: int = 1) -> dict[str, str]:
    """A distinct, feasible configuration number i."""
    return {
        "learning_rate": f"{1e-5 + i * 1e-7:.7g}",
        "weight_decay": "0.1",
        "warmup_ratio": "0.05",
        "attention_dropout": "0.1",
        "hidden_dropout": "0.1",
        "per_device_train_batch_size": "32",
        "num_epochs": str(epochs),
    }


def run(
    name: str, config: int, rung: int, status: str = "Succeeded", f1: float | None = None, parent: str = ""
) -> TrialRecord:
    epochs = (1, 3, 9)[rung]
    metrics = {} if f1 is None else {"eval_f1": f1}
    labels = {LABEL_CONFIG: str(config), LABEL_RUNG: str(rung), LABEL_PARENT: parent}
    return TrialRecord(name, cfg_assign(config, epochs), status, metrics, labels)


def rung0(values: list[float | None], statuses: list[str] | None = None) -> list[TrialRecord]:
    statuses = statuses or ["Succeeded"] * len(values)
    return [run(f"t{i}", i, 0, s, v) for i, (v, s) in enumerate(zip(values, statuses, strict=True))]


# ----------------------------------------------------------------------------- rungs


def test_rung_budgets_for_grace_1_max_9_eta_3():
    assert asha_budgets(1, 9, 3, 0) == [1, 3, 9]
    cfg = ASHA.config(asha())
    assert cfg.budgets == [1, 3, 9] and cfg.eta == 3 and cfg.s == 0


def test_rung_budgets_cap_at_max_and_early_stopping_rate():
    assert asha_budgets(1, 10, 3, 0) == [1, 3, 9, 10]  # the top rung is always R
    assert asha_budgets(1, 27, 3, 1) == [3, 9, 27]  # s = 1 skips the first rung
    assert asha_budgets(2, 8, 2, 0) == [2, 4, 8]
    assert asha_budgets(9, 9, 3, 0) == [9]


def test_new_configs_start_at_the_bottom_rung_with_labels():
    sugs = ASHA.suggest(asha(num_configurations="50"), [], 4)
    assert len(sugs) == 4
    for i, s in enumerate(sugs):
        assert s.assignments["num_epochs"] == "1"
        assert s.labels == {LABEL_PARENT: "", LABEL_RUNG: "0", LABEL_CONFIG: str(i)}
    assert len({seed_space().key(s.assignments) for s in sugs}) == 4


# ----------------------------------------------------------------------------- promotion rule


def test_no_promotion_until_a_rung_has_eta_results():
    trials = rung0([0.9, 0.8])  # floor(2 / 3) = 0 promotable
    (s,) = ASHA.suggest(asha(), trials, 1)
    assert s.labels[LABEL_RUNG] == "0" and s.labels[LABEL_CONFIG] == "2"


def test_promotes_only_the_top_third_maximize():
    trials = rung0([0.5, 0.9, 0.7, 0.6, 0.8, 0.4])  # floor(6/3) = 2: configs 1 (0.9) and 4 (0.8)
    sugs = ASHA.suggest(asha(), trials, 3)
    promoted = [(s.labels[LABEL_CONFIG], s.labels[LABEL_PARENT]) for s in sugs if s.labels[LABEL_RUNG] == "1"]
    assert promoted == [("1", "t1"), ("4", "t4")]
    assert sugs[2].labels[LABEL_RUNG] == "0"  # then a new configuration


def test_promotes_the_lowest_values_when_minimizing():
    prob = problem("asha", BASE, objective=Objective("minimize", "eval_f1"))
    trials = rung0([0.5, 0.9, 0.7, 0.6, 0.8, 0.4])
    sugs = ASHA.suggest(prob, trials, 2)
    assert [s.labels[LABEL_CONFIG] for s in sugs] == ["5", "0"]  # 0.4 then 0.5


def test_promotion_resumes_the_parent_with_the_next_budget():
    trials = rung0([0.5, 0.9, 0.7])
    (s,) = ASHA.suggest(asha(), trials, 1)
    parent = trials[1]
    assert s.labels == {LABEL_PARENT: "t1", LABEL_RUNG: "1", LABEL_CONFIG: "1"}
    assert s.assignments["num_epochs"] == "3"
    assert {k: v for k, v in s.assignments.items() if k != "num_epochs"} == {
        k: v for k, v in parent.assignments.items() if k != "num_epochs"
    }


def test_top_rung_is_checked_first():
    trials = rung0([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])  # 3 promotable at rung 0
    trials += [
        run("p0", 0, 1, f1=0.95, parent="t0"),
        run("p1", 1, 1, f1=0.85, parent="t1"),
        run("p2", 2, 1, f1=0.75, parent="t2"),
    ]
    # rung 0 is exhausted (its top 3 are promoted); rung 1 has 3 results -> promote config 0 to rung 2
    (s,) = ASHA.suggest(asha(), trials, 1)
    assert (s.labels[LABEL_RUNG], s.labels[LABEL_CONFIG], s.labels[LABEL_PARENT]) == ("2", "0", "p0")
    assert s.assignments["num_epochs"] == "9"


def test_a_config_is_never_promoted_twice_to_the_same_rung():
    trials = rung0([0.9, 0.1, 0.2])
    trials.append(run("p0", 0, 1, "Running", parent="t0"))
    sugs = ASHA.suggest(asha(), trials, 5)
    assert all(s.labels[LABEL_RUNG] == "0" for s in sugs)
    # and within one batch: one promotion, then new configurations
    sugs = ASHA.suggest(asha(), rung0([0.9, 0.1, 0.2]), 3)
    assert [s.labels[LABEL_RUNG] for s in sugs] == ["1", "0", "0"]


def test_failed_trials_count_as_worst_and_are_never_promoted():
    # 6 results: quota 2; config 0 failed (worst), so the top 2 are configs 1 and 2
    trials = rung0(
        [None, 0.9, 0.8, 0.1, 0.2, 0.3],
        ["Failed", "Succeeded", "Succeeded", "Succeeded", "Succeeded", "Succeeded"],
    )
    promoted = [
        s.labels[LABEL_CONFIG] for s in ASHA.suggest(asha(), trials, 4) if s.labels[LABEL_RUNG] == "1"
    ]
    assert promoted == ["1", "2"]
    # failures still count in the rung's size: 3 failed + 3 good -> quota 2 -> configs 3, 4
    trials = rung0(
        [None, None, None, 0.5, 0.6, 0.4], ["Failed", "Killed", "MetricsUnavailable"] + ["Succeeded"] * 3
    )
    promoted = [
        s.labels[LABEL_CONFIG] for s in ASHA.suggest(asha(), trials, 4) if s.labels[LABEL_RUNG] == "1"
    ]
    assert promoted == ["4", "3"]
    # an early-stopped trial did not train its budget: worst as well
    trials = rung0([0.99, 0.5, 0.4], ["EarlyStopped", "Succeeded", "Succeeded"])
    promoted = [
        s.labels[LABEL_CONFIG] for s in ASHA.suggest(asha(), trials, 2) if s.labels[LABEL_RUNG] == "1"
    ]
    assert promoted == ["1"]
    # all failed: nothing is promoted, even though the quota is 1
    trials = rung0([None] * 3, ["Failed"] * 3)
    assert all(s.labels[LABEL_RUNG] == "0" for s in ASHA.suggest(asha(), trials, 3))


def test_running_trials_are_not_yet_results():
    # 2 finished + 4 running: quota floor(2/3) = 0 although the running ones exist
    trials = rung0([0.9, 0.8]) + [run(f"r{i}", 2 + i, 0, "Running") for i in range(4)]
    (s,) = ASHA.suggest(asha(), trials, 1)
    assert s.labels[LABEL_RUNG] == "0" and s.labels[LABEL_CONFIG] == "6"


def test_number_of_configurations_is_capped():
    prob = asha(num_configurations="5")
    sugs = ASHA.suggest(prob, [], 8)
    assert len(sugs) == 5  # fewer than asked: nothing more to start
    trials = [TrialRecord(f"t{i}", s.assignments, "Running", {}, s.labels) for i, s in enumerate(sugs)]
    assert ASHA.suggest(prob, trials, 3) == []
    assert not ASHA.is_complete(prob, trials)


def test_is_complete_exactly_when_nothing_more_can_come():
    prob = asha(num_configurations="3")
    trials = rung0([0.9, 0.5, 0.1])
    assert not ASHA.is_complete(prob, trials)  # config 0 can still be promoted
    trials.append(run("p0", 0, 1, "Running", parent="t0"))
    assert not ASHA.is_complete(prob, trials)  # p0 is below the top rung and running
    trials[-1] = run("p0", 0, 1, "Succeeded", 0.95, parent="t0")
    assert ASHA.suggest(prob, trials, 1) == []  # rung 1 has 1 result: quota 0
    assert ASHA.is_complete(prob, trials)
    unlimited = asha()
    assert not ASHA.is_complete(unlimited, trials)


def test_running_top_rung_trial_does_not_block_completion():
    prob = asha(num_configurations="9")
    trials = rung0([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    trials += [run(f"p{i}", i, 1, f1=0.9 - i / 10, parent=f"t{i}") for i in range(3)]
    trials.append(run("q0", 0, 2, "Running", parent="p0"))
    assert ASHA.suggest(prob, trials, 2) == []
    assert ASHA.is_complete(prob, trials)


def test_trials_without_labels_are_placed_by_their_budget():
    trials = [
        TrialRecord(f"h{i}", cfg_assign(i, 1), "Succeeded", {"eval_f1": v})
        for i, v in enumerate([0.1, 0.9, 0.5])
    ]
    (s,) = ASHA.suggest(asha(), trials, 1)
    assert s.labels[LABEL_PARENT] == "h1" and s.labels[LABEL_RUNG] == "1"
    assert re.fullmatch(r"h[0-9a-f]{10}", s.labels[LABEL_CONFIG])  # a valid Kubernetes label value


# ----------------------------------------------------------------------------- simulated runs


def _oracle_check(sim, eta: int = 3, n_rungs: int = 3) -> None:
    """Re-derive each proposal from the trials it was made from, with the paper's rule."""
    for snapshot, t in sim.proposals:
        rungs: dict[int, list[tuple[float, str]]] = {}
        present: dict[int, set[str]] = {}
        for s in snapshot:
            k = int(s.labels[LABEL_RUNG])
            present.setdefault(k, set()).add(s.labels[LABEL_CONFIG])
            if s.status == "Succeeded":
                rungs.setdefault(k, []).append((-s.metrics["eval_f1"], s.labels[LABEL_CONFIG]))
            elif s.status != "Running":
                rungs.setdefault(k, []).append((math.inf, s.labels[LABEL_CONFIG]))
        k_new = int(t.labels[LABEL_RUNG])
        if k_new > 0:
            ranked = sorted(rungs.get(k_new - 1, []), key=lambda lc: (lc[0], int(lc[1])))
            top = [c for _, c in ranked[: len(ranked) // eta]]
            assert t.labels[LABEL_CONFIG] in top, "promoted a config outside the top 1/eta"
            assert t.labels[LABEL_CONFIG] not in present.get(k_new, set()), "promoted twice"
        else:
            for k, results in rungs.items():  # a new config only when nothing was promotable
                if k + 1 >= n_rungs:
                    continue
                ranked = sorted(results, key=lambda lc: (lc[0], int(lc[1])))
                top = [c for loss, c in ranked[: len(ranked) // eta] if math.isfinite(loss)]
                assert all(c in present.get(k + 1, set()) for c in top), (
                    f"a promotion from rung {k} was skipped"
                )


def test_simulated_run_best_first_gives_exactly_50_16_5():
    """Quality decreasing with the configuration id: results reach each rung best-first, so every
    configuration promoted early stays in its rung's final top third, and the rungs hold exactly
    floor(50/3) = 16 and floor(16/3) = 5 configurations."""
    prob = asha(num_configurations="50")
    sim = simulate(prob, 4, lambda t: 1 - 0.01 * int(config_of(t)) + 0.001 * int(t.assignments["num_epochs"]))
    assert rung_counts(sim, 3) == [50, 16, 5] == expected_rung_sizes(50, 3, 3)
    assert sorted(int(config_of(t)) for t in sim.at_rung(2)) == [0, 1, 2, 3, 4]
    assert ASHA.is_complete(prob, sim.trials)
    _oracle_check(sim)


@pytest.mark.parametrize(
    "sampler,workers,expected",
    [
        ("random", 4, [50, 24, 10]),
        ("sobol", 3, [50, 19, 7]),
        ("tpe", 4, [50, 38, 26]),
        ("tpe", 1, [50, 27, 16]),
    ],
)
def test_simulated_run_with_a_toy_objective(sampler, workers, expected):
    """Results arrive in no particular order: a configuration promoted early may later drop out of
    its rung's top third, so rungs end at least floor(N/3) (Li et al. accept these "mispromotions").
    With TPE the later configurations are better than the early ones, so many newcomers enter the
    top third after the first promotions and the upper rungs grow well past 16 / 5. The exact
    counts pin down these deterministic runs."""
    prob = asha(num_configurations="50", sampler=sampler)
    sim = simulate(prob, workers, lambda t: smooth_score(t.assignments))
    counts = rung_counts(sim, 3)
    assert counts == expected
    assert counts[1] >= counts[0] // 3 and counts[2] >= counts[1] // 3
    assert len({config_of(t) for t in sim.trials}) == 50
    for t in sim.trials:  # every promotion resumes its parent with only the budget changed
        if t.labels[LABEL_PARENT]:
            parent = next(p for p in sim.trials if p.name == t.labels[LABEL_PARENT])
            assert int(parent.labels[LABEL_RUNG]) + 1 == int(t.labels[LABEL_RUNG])
            assert {k: v for k, v in parent.assignments.items() if k != "num_epochs"} == {
                k: v for k, v in t.assignments.items() if k != "num_epochs"
            }
    assert ASHA.is_complete(prob, sim.trials)
    _oracle_check(sim)


def test_simulated_run_with_failures_never_promotes_a_failure():
    prob = asha(num_configurations="30")
    sim = simulate(prob, 3, lambda t: smooth_score(t.assignments), fail=lambda t: int(config_of(t)) % 5 == 0)
    failed = {config_of(t) for t in sim.trials if t.status == "Failed"}
    assert failed and not any(config_of(t) in failed for t in sim.at_rung(1))
    assert ASHA.is_complete(prob, sim.trials)
    _oracle_check(sim)


def test_tpe_sampler_fits_on_the_highest_rung_with_enough_results():
    prob = asha(num_configurations="500", sampler="tpe", n_startup_trials="10")
    state_trials = rung0([0.1 * (i % 7) for i in range(9)])
    cfg = ASHA.config(prob)
    from kftune.hpo.asha import _AshaState
    from kftune.hpo.ladder import Ladder

    space = seed_space().without("num_epochs")
    state = _AshaState(Ladder.build(prob, state_trials, cfg.resource, cfg.budgets), cfg)
    assert state._tpe_data(space) is None  # 9 < 10 finished results: random
    trials = rung0([0.1 * (i % 7) for i in range(12)])
    trials += [run(f"p{i}", i, 1, f1=0.5, parent=f"t{i}") for i in range(4)]
    state = _AshaState(Ladder.build(prob, trials, cfg.resource, cfg.budgets), cfg)
    enc, x, losses = state._tpe_data(space)
    assert x.shape == (12, 6)  # rung 1 has only 4 results: the model uses rung 0
    trials += [run(f"p{i}", i, 1, f1=0.5, parent=f"t{i}") for i in range(4, 12)]
    state = _AshaState(Ladder.build(prob, trials, cfg.resource, cfg.budgets), cfg)
    assert state._tpe_data(space)[1].shape == (12, 6)  # 12 at rung 1 now: the higher rung wins
    assert all(r.rung == 1 for r in state.results[1])


def test_tpe_sampler_concentrates_on_good_regions():
    """After 40 random configurations TPE's proposals lie closer to the best learning rate."""
    prob = asha(num_configurations="200", sampler="tpe")
    rand = asha(num_configurations="200", sampler="random")
    sim = simulate(prob, 1, lambda t: smooth_score(t.assignments), max_trials=90)
    sim_r = simulate(rand, 1, lambda t: smooth_score(t.assignments), max_trials=90)

    def dist(s):
        late = s.at_rung(0)[40:]
        return sum(abs(math.log(float(t.assignments["learning_rate"]) / 2.3e-5)) for t in late) / len(late)

    assert dist(sim) < 0.8 * dist(sim_r)


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"reduction_factor": "1"}, "algorithm setting 'reduction_factor' must be an integer > 1, got '1'"),
        ({"reduction_factor": "2.5"}, "'reduction_factor' must be an integer > 1, got '2.5'"),
        ({"num_configurations": "0"}, "'num_configurations' must be an integer >= 1, got '0'"),
        ({"min_early_stopping_rate": "-1"}, "'min_early_stopping_rate' must be an integer >= 0"),
        ({"min_early_stopping_rate": "3"}, "puts the first rung at 1 * 3^3 = 27, above the maximum budget 9"),
        ({"sampler": "cmaes"}, "'sampler' must be one of tpe, random, sobol, got 'cmaes'"),
        ({"random_state": "x"}, "'random_state' must be an integer >= 0, got 'x'"),
        ({"gamma": "1.5"}, "'gamma' must be a number in (0, 1), got '1.5'"),
        ({"n_startup_trials": "0"}, "'n_startup_trials' must be an integer >= 1"),
        ({"n_ei_candidates": "0"}, "'n_ei_candidates' must be an integer >= 1"),
        ({"prior_weight": "0"}, "'prior_weight' must be a number > 0"),
        ({"resource_name": "epochs"}, "names 'epochs', which is not a parameter"),
        ({"resource_name": "per_device_train_batch_size"}, "must be of type int or double, not categorical"),
        ({"grace_period": "1"}, "unknown algorithm setting 'grace_period' for algorithm asha"),
    ],
)
def test_invalid_settings_are_reported(settings, message):
    errors = ASHA.validate(asha(**settings))
    assert any(message in e for e in errors), errors
    with pytest.raises(UserError, match="algorithm asha"):
        ASHA.suggest(asha(**settings), [], 1)


def test_valid_settings_and_missing_resource():
    ok = asha(
        reduction_factor="2",
        num_configurations="50",
        min_early_stopping_rate="1",
        sampler="sobol",
        random_state="0",
        gamma="0.2",
        n_startup_trials="5",
        n_ei_candidates="32",
        prior_weight="2",
    )
    assert ASHA.validate(ok) == []
    assert ASHA.config(ok).budgets == [2, 4, 8, 9]
    missing = problem("asha", {})
    assert ASHA.validate(missing) == [
        "algorithm setting 'resource_name' is required (the name of the budget parameter, e.g. num_epochs)"
    ]
    zero = SearchSpace.from_katib(
        [
            {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}},
            {"name": "e", "parameterType": "int", "feasibleSpace": {"min": "0", "max": "9"}},
        ]
    )
    assert (
        "needs feasibleSpace.min > 0" in ASHA.validate(problem("asha", {"resource_name": "e"}, space=zero))[0]
    )
