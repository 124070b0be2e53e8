"""Hyperband (Katib's semantics) and BOHB (Falkner et al. 2018 / hpbandster): brackets,
promotions, worker filling and BOHB's switch from random sampling to the KDE."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hpo_sim import config_of, problem, seed_space, simulate, smooth_score

from kftune.hpo import LABEL_BRACKET, LABEL_CONFIG, LABEL_PARENT, LABEL_RUNG, TrialRecord, get_algorithm
from kftune.hpo.bohb import bohb_bracket, bohb_budgets
from kftune.hpo.hyperband import katib_hyperband_schedule
from kftune.hpo.ladder import Ladder, int_log

HB = get_algorithm("hyperband")
BOHB = get_algorithm("bohb")


def katib_calls(r_l: float, eta: int) -> list[tuple[int, int]]:
    """Katib's service, transliterated: (trials, budget) for each batch it creates, in order
    (master bracket, then child brackets; _new_hbParameters / _make_child_bracket)."""
    s_max = int(math.log(r_l) / math.log(eta))
    out = []
    for s in range(s_max, -1, -1):
        n = int(math.ceil(float(s_max + 1) * (float(eta**s) / float(s + 1))))
        r = r_l * eta ** (-s)
        out.append((n, int(r)))
        for i in range(s):
            n_i = math.ceil(n * eta ** (-i))
            out.append((int(math.ceil(n_i / eta)), int(r * eta ** (i + 1))))
    return out


def hb(**settings: str):
    return problem("hyperband", {"resource_name": "num_epochs", "r_l": "9", **settings}, parallel=9)


def finish(trials: list[TrialRecord], score=lambda t: smooth_score(t.assignments)) -> None:
    for t in trials:
        if t.pending:
            t.status = "Succeeded"
            t.metrics = {"eval_f1": score(t)}


def create(sugs, trials: list[TrialRecord]) -> list[TrialRecord]:
    new = [
        TrialRecord(f"t{len(trials) + i:03d}", s.assignments, "Running", {}, s.labels)
        for i, s in enumerate(sugs)
    ]
    trials.extend(new)
    return new


# ----------------------------------------------------------------------------- hyperband


@pytest.mark.parametrize("r_l,eta", [(9, 3), (27, 3), (8, 2), (10, 3), (81, 3)])
def test_hyperband_schedule_matches_katib_formulas(r_l, eta):
    s_max, brackets, budgets = katib_hyperband_schedule(r_l, eta)
    ours = [(size, int(budgets[br.base + j])) for br in brackets for j, size in enumerate(br.sizes)]
    assert ours == katib_calls(r_l, eta)
    assert s_max == int(math.log(r_l) / math.log(eta))


def test_hyperband_schedule_for_r_l_9():
    s_max, brackets, budgets = katib_hyperband_schedule(9, 3)
    assert s_max == 2 and budgets == [1, 3, 9]
    assert [(b.sizes, b.base) for b in brackets] == [([9, 3, 1], 0), ([5, 2], 1), ([3], 2)]


def test_float_safe_log():
    assert int(math.log(243) / math.log(3)) == 4  # Katib's expression
    assert int_log(243, 3) == 5


def test_hyperband_runs_katibs_sequence_to_completion():
    prob = hb()
    trials: list[TrialRecord] = []
    batches = []
    while True:
        sugs = HB.suggest(prob, trials, 20)
        if not sugs:
            assert HB.is_complete(prob, trials)
            break
        batches.append(
            [(s.labels[LABEL_BRACKET], s.labels[LABEL_RUNG], s.assignments["num_epochs"]) for s in sugs]
        )
        assert not HB.is_complete(prob, trials)
        create(sugs, trials)
        finish(trials)
    sizes = [(len(b), b[0][2]) for b in batches]
    # the last stage of a bracket is created together with the next bracket's first stage
    assert sizes == [(9, "1"), (3, "3"), (6, "9"), (5, "9")]
    assert batches[2] == [("0", "2", "9")] + [("1", "1", "3")] * 5
    assert batches[3] == [("1", "2", "9")] * 2 + [("2", "2", "9")] * 3
    assert len(trials) == 23


def test_hyperband_waits_for_the_whole_stage():
    prob = hb()
    trials: list[TrialRecord] = []
    create(HB.suggest(prob, trials, 9), trials)
    finish(trials[:8])
    assert HB.suggest(prob, trials, 5) == []  # one trial of stage 0 still runs
    finish(trials)
    promos = HB.suggest(prob, trials, 5)
    assert len(promos) == 3  # ceil(9 / 3); the next bracket waits for this bracket's last stage
    best = sorted(trials, key=lambda t: -t.metrics["eval_f1"])[:3]
    assert [p.labels[LABEL_PARENT] for p in promos] == [t.name for t in best]
    for p, parent in zip(promos, best, strict=True):
        assert p.assignments["num_epochs"] == "3"
        assert {k: v for k, v in p.assignments.items() if k != "num_epochs"} == {
            k: v for k, v in parent.assignments.items() if k != "num_epochs"
        }


def test_hyperband_failed_trials_are_not_promoted():
    prob = hb()
    trials: list[TrialRecord] = []
    create(HB.suggest(prob, trials, 9), trials)
    finish(trials)
    best = sorted(trials, key=lambda t: -t.metrics["eval_f1"])
    best[0].status, best[0].metrics = "Failed", {}
    promos = HB.suggest(prob, trials, 3)
    assert [p.labels[LABEL_PARENT] for p in promos] == [t.name for t in best[1:4]]


@pytest.mark.parametrize(
    "settings,parallel,message",
    [
        ({"r_l": "9"}, 9, "algorithm setting 'resource_name' is required"),
        ({"resource_name": "num_epochs"}, 9, "algorithm setting 'r_l' is required"),
        ({"resource_name": "num_epochs", "r_l": "-1"}, 9, "'r_l' must be a positive number, got '-1'"),
        ({"resource_name": "num_epochs", "r_l": "9", "eta": "1"}, 9, "'eta' must be an integer > 1, got '1'"),
        ({"resource_name": "epochs", "r_l": "9"}, 9, "names 'epochs', which is not a parameter"),
        ({"resource_name": "num_epochs", "r_l": "9"}, 8, "parallelTrialCount must be not less than 9"),
        ({"resource_name": "num_epochs", "r_l": "9", "rl": "3"}, 9, "unknown algorithm setting 'rl'"),
    ],
)
def test_hyperband_invalid_settings(settings, parallel, message):
    errors = HB.validate(problem("hyperband", settings, parallel=parallel))
    assert any(message in e for e in errors), errors


def test_hyperband_valid_settings_include_katibs_state():
    ok = problem(
        "hyperband",
        {"resource_name": "num_epochs", "r_l": "9", "eta": "3", "current_s": "1", "n": "5"},
        parallel=9,
    )
    assert HB.validate(ok) == []
    outside = problem("hyperband", {"resource_name": "num_epochs", "r_l": "27"}, parallel=27)
    assert HB.validate(outside) == [] and any("outside the feasibleSpace" in n for n in HB.notes(outside))


# ----------------------------------------------------------------------------- bohb


def bohb(**settings: str):
    return problem("bohb", {"resource_name": "num_epochs", "random_state": "1", **settings})


def test_bohb_budgets_and_brackets_follow_hpbandster():
    assert bohb_budgets(1, 9, 3, True) == [1, 3, 9]
    assert bohb_budgets(1, 10, 3, True) == [1, 3, 10]  # 10/9, 10/3, 10 rounded
    assert bohb_budgets(1, 81, 3, True) == [1, 3, 9, 27, 81]
    sizes = [(b.sizes, b.base) for b in (bohb_bracket(i, 2, 3) for i in range(4))]
    assert sizes == [([9, 3, 1], 0), ([3, 1], 1), ([3], 2), ([9, 3, 1], 0)]
    assert [bohb_bracket(i, 4, 3).sizes for i in range(5)] == [
        [81, 27, 9, 3, 1],
        [27, 9, 3, 1],
        [9, 3, 1],
        [6, 2],
        [5],
    ]


def test_bohb_fills_workers_oldest_iteration_first_then_starts_the_next():
    prob = bohb()  # default num_iterations = s_max + 1 = 3
    sugs = BOHB.suggest(prob, [], 20)
    labels = [(s.labels[LABEL_BRACKET], s.labels[LABEL_RUNG], s.assignments["num_epochs"]) for s in sugs]
    assert labels == [("0", "0", "1")] * 9 + [("1", "1", "3")] * 3 + [("2", "2", "9")] * 3
    assert len({s.labels[LABEL_CONFIG] for s in sugs}) == 15


def test_bohb_promotes_after_the_whole_stage_and_completes():
    prob = bohb(num_iterations="1")
    trials: list[TrialRecord] = []
    create(BOHB.suggest(prob, trials, 12), trials)
    assert len(trials) == 9
    finish(trials[:8])
    assert BOHB.suggest(prob, trials, 3) == []
    finish(trials)
    promos = BOHB.suggest(prob, trials, 5)
    best = sorted(trials, key=lambda t: -t.metrics["eval_f1"])[:3]
    assert [(p.labels[LABEL_PARENT], p.labels[LABEL_RUNG], p.assignments["num_epochs"]) for p in promos] == [
        (t.name, "1", "3") for t in best
    ]
    stage1 = create(promos, trials)
    finish(trials)
    (last,) = BOHB.suggest(prob, trials, 5)
    top = max(stage1, key=lambda t: t.metrics["eval_f1"])
    assert (last.labels[LABEL_PARENT], last.labels[LABEL_RUNG], last.assignments["num_epochs"]) == (
        top.name,
        "2",
        "9",
    )
    assert not BOHB.is_complete(prob, trials)
    create([last], trials)
    assert BOHB.is_complete(prob, trials)  # last stage created: nothing more will come
    assert BOHB.suggest(prob, trials, 1) == []


def test_bohb_simulated_run_to_completion():
    prob = bohb(num_iterations="6")
    sim = simulate(prob, 5, lambda t: smooth_score(t.assignments))
    per_iter = {}
    for t in sim.trials:
        per_iter.setdefault(int(t.labels[LABEL_BRACKET]), []).append(int(t.labels[LABEL_RUNG]))
    counts = {i: [rungs.count(level) for level in range(3)] for i, rungs in sorted(per_iter.items())}
    assert counts == {0: [9, 3, 1], 1: [0, 3, 1], 2: [0, 0, 3], 3: [9, 3, 1], 4: [0, 3, 1], 5: [0, 0, 3]}
    assert len(sim.trials) == 40 and BOHB.is_complete(prob, sim.trials)
    for t in sim.trials:
        if t.labels[LABEL_PARENT]:
            parent = next(p for p in sim.trials if p.name == t.labels[LABEL_PARENT])
            assert (
                config_of(parent) == config_of(t) and parent.labels[LABEL_BRACKET] == t.labels[LABEL_BRACKET]
            )


def _level0_results(n: int) -> list[TrialRecord]:
    rng = np.random.default_rng(5)
    from kftune.hpo.simple import sample_assignment

    space = seed_space()
    out = []
    for i in range(n):
        a = sample_assignment(space, rng)
        a["num_epochs"] = "1"
        out.append(
            TrialRecord(
                f"r{i}",
                a,
                "Succeeded",
                {"eval_f1": smooth_score(a)},
                {LABEL_CONFIG: str(i), LABEL_RUNG: "0", LABEL_BRACKET: "0"},
            )
        )
    return out


def test_bohb_switches_from_random_to_the_kde_once_enough_points_exist():
    prob = bohb(random_fraction="0")
    cfg = BOHB.config(prob)
    assert cfg.min_points_in_model == 7  # d + 1, d = 6 parameters besides num_epochs

    def model_level(trials):
        found = BOHB.model(prob, Ladder.build(prob, trials, cfg.resource, cfg.budgets), cfg)
        return None if found is None else found[0]

    # 7 good points and more than d bad ones: N >= 7 + 7 = 14
    assert model_level(_level0_results(13)) is None
    assert model_level(_level0_results(14)) == 0
    # a higher budget with enough results takes over
    trials = _level0_results(30)
    ups = [
        TrialRecord(
            f"u{i}",
            {**t.assignments, "num_epochs": "3"},
            "Succeeded",
            {"eval_f1": t.metrics["eval_f1"] + 0.01},
            {LABEL_CONFIG: t.labels[LABEL_CONFIG], LABEL_RUNG: "1", LABEL_BRACKET: "0", LABEL_PARENT: t.name},
        )
        for i, t in enumerate(trials[:13])
    ]
    assert model_level(trials + ups) == 0
    ups.append(
        TrialRecord(
            "u13",
            {**trials[13].assignments, "num_epochs": "3"},
            "Succeeded",
            {"eval_f1": 0.5},
            {LABEL_CONFIG: "13", LABEL_RUNG: "1", LABEL_BRACKET: "0", LABEL_PARENT: "r13"},
        )
    )
    assert model_level(trials + ups) == 1


def test_bohb_model_proposals_beat_random_ones():
    """With the model fitted and random_fraction 0, new configurations cluster near the optimum."""
    trials = _level0_results(40)
    for t in trials:
        t.labels[LABEL_BRACKET] = "9"  # an old, finished iteration: the next ones sample new configs
    model_sugs = BOHB.suggest(bohb(random_fraction="0", num_iterations="20"), trials, 30)
    random_sugs = BOHB.suggest(bohb(random_fraction="1", num_iterations="20"), trials, 30)
    assert all(s.labels[LABEL_RUNG] in ("0", "1", "2") for s in model_sugs)

    def dist(sugs):
        return np.mean([abs(math.log(float(s.assignments["learning_rate"]) / 2.3e-5)) for s in sugs])

    assert dist(model_sugs) < 0.6 * dist(random_sugs)


def test_bohb_failed_results_are_bad_points_not_promotions():
    prob = bohb(num_iterations="1")
    trials: list[TrialRecord] = []
    create(BOHB.suggest(prob, trials, 9), trials)
    finish(trials)
    best = sorted(trials, key=lambda t: -t.metrics["eval_f1"])
    best[0].status, best[0].metrics = "Failed", {}
    promos = BOHB.suggest(prob, trials, 3)
    assert [p.labels[LABEL_PARENT] for p in promos] == [t.name for t in best[1:4]]


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"reduction_factor": "1"}, "'reduction_factor' must be an integer > 1, got '1'"),
        ({"num_iterations": "0"}, "'num_iterations' must be an integer >= 1, got '0'"),
        ({"random_fraction": "1.5"}, "'random_fraction' must be a number in [0, 1], got '1.5'"),
        ({"num_samples": "0"}, "'num_samples' must be an integer >= 1"),
        ({"bandwidth_factor": "0"}, "'bandwidth_factor' must be a number > 0"),
        ({"min_bandwidth": "-1"}, "'min_bandwidth' must be a number > 0"),
        ({"top_n_percent": "100"}, "'top_n_percent' must be an integer in [1, 99], got '100'"),
        ({"min_points_in_model": "0"}, "'min_points_in_model' must be an integer >= 1"),
        ({"random_state": "-2"}, "'random_state' must be an integer >= 0"),
        ({"num_configurations": "50"}, "unknown algorithm setting 'num_configurations' for algorithm bohb"),
    ],
)
def test_bohb_invalid_settings(settings, message):
    errors = BOHB.validate(bohb(**settings))
    assert any(message in e for e in errors), errors


def test_bohb_valid_settings():
    prob = bohb(
        reduction_factor="2",
        num_iterations="10",
        random_fraction="0.2",
        num_samples="32",
        bandwidth_factor="2",
        min_bandwidth="0.01",
        top_n_percent="20",
        min_points_in_model="3",
        random_state="4",
    )
    assert BOHB.validate(prob) == []
    cfg = BOHB.config(prob)
    assert cfg.budgets == [1, 2, 4, 9]  # 9 * 2^-3 .. 9, rounded for an int resource
    assert cfg.min_points_in_model == 7  # raised to d + 1 like hpbandster
