"""PBT (Katib's settings and labels) and medianstop (Katib's rule and collector semantics)."""

from __future__ import annotations

import numpy as np
import pytest
from hpo_sim import problem

from kftune.errors import UserError
from kftune.hpo import LABEL_PARENT, Objective, TrialRecord, get_algorithm
from kftune.hpo.earlystop import (
    EarlyStoppingRule,
    MedianStopSettings,
    median_stop_rule,
    should_stop,
    trials_to_stop,
    validate_medianstop,
)
from kftune.hpo.pbt import LABEL_GENERATION, LABEL_MEMBER, LABEL_PBT_PARENT, perturb

PBT = get_algorithm("pbt")


def pbt(**settings: str):
    base = {
        "n_population": "5",
        "truncation_threshold": "0.2",
        "suggestion_trial_dir": "/var/pbt",
        "random_state": "1",
    }
    return problem("pbt", {**base, **settings}, parallel=5)


def add(trials: list[TrialRecord], sugs, status: str = "Running") -> list[TrialRecord]:
    new = [
        TrialRecord(f"p{len(trials) + i:02d}", s.assignments, status, {}, s.labels)
        for i, s in enumerate(sugs)
    ]
    trials.extend(new)
    return new


def succeed(ts: list[TrialRecord], values: list[float]) -> None:
    for t, v in zip(ts, values, strict=True):
        t.status, t.metrics = "Succeeded", {"eval_f1": v}


def test_first_generation_is_n_population_random_members():
    prob = pbt()
    trials: list[TrialRecord] = []
    gen0 = add(trials, PBT.suggest(prob, trials, 8))
    assert len(gen0) == 5  # the population; then nothing until it has finished
    assert all(t.labels == {LABEL_GENERATION: "0", LABEL_PARENT: ""} for t in gen0)
    assert PBT.suggest(prob, trials, 3) == []
    succeed(gen0[:4], [0.1, 0.2, 0.3, 0.4])
    assert PBT.suggest(prob, trials, 3) == []  # 4 of 5 finished


def test_next_generation_exploits_the_bottom_and_explores_the_rest():
    prob = pbt()
    trials: list[TrialRecord] = []
    gen0 = add(trials, PBT.suggest(prob, trials, 5))
    succeed(gen0, [0.1, 0.5, 0.3, 0.9, 0.7])
    gen1 = add(trials, PBT.suggest(prob, trials, 10))
    assert len(gen1) == 5 and all(t.labels[LABEL_GENERATION] == "1" for t in gen1)
    # quantiles (0.2, 0.8) of [0.1 .. 0.9] = (0.26, 0.74): p00 (0.1) is below -> exploit; int(5 * 0.2) = 1
    exploit = gen1[0]
    assert exploit.labels[LABEL_MEMBER] == "p00"
    assert (
        exploit.labels[LABEL_PARENT] == exploit.labels[LABEL_PBT_PARENT] == "p03"
    )  # the only member >= 0.74
    assert exploit.assignments == gen0[3].assignments  # copy parent: hyperparameters and checkpoint
    explore = gen1[1:]
    assert [t.labels[LABEL_MEMBER] for t in explore] == ["p03", "p04", "p01", "p02"]  # best first
    for t in explore:
        member = next(m for m in gen0 if m.name == t.labels[LABEL_MEMBER])
        assert t.labels[LABEL_PARENT] == member.name  # explore continues its own checkpoint
        assert t.assignments != member.assignments
    assert PBT.suggest(prob, trials, 2) == []


def test_explore_perturbs_like_katib():
    prob = pbt()
    rng = np.random.default_rng(0)
    lr, bs, epochs = (
        prob.space["learning_rate"],
        prob.space["per_device_train_batch_size"],
        prob.space["num_epochs"],
    )
    values = {perturb(lr, "0.00002", rng) for _ in range(50)}
    assert values == {"0.000016", "0.000024"}  # x 0.8 or x 1.2
    assert {perturb(lr, "0.00005", rng) for _ in range(50)} == {"0.00004", "0.00005"}  # clipped to max
    assert {perturb(bs, "32", rng) for _ in range(50)} == {"16", "64"}  # neighbours in the list
    assert {perturb(bs, "64", rng) for _ in range(50)} == {"32", "16"}  # past the end wraps to the first
    assert {perturb(epochs, "5", rng) for _ in range(50)} == {"4", "6"}  # int(5 * 0.8), int(5 * 1.2)


def test_resample_probability_redraws_instead_of_perturbing():
    prob = pbt(resample_probability="1")
    trials: list[TrialRecord] = []
    gen0 = add(trials, PBT.suggest(prob, trials, 5))
    succeed(gen0, [0.1, 0.5, 0.3, 0.9, 0.7])
    gen1 = add(trials, PBT.suggest(prob, trials, 5))
    lrs0 = {t.assignments["learning_rate"] for t in gen0}
    assert not any(t.assignments["learning_rate"] in lrs0 for t in gen1[1:])
    keep = pbt(resample_probability="0")
    trials = []
    gen0 = add(trials, PBT.suggest(keep, trials, 5))
    succeed(gen0, [0.1, 0.5, 0.3, 0.9, 0.7])
    gen1 = add(trials, PBT.suggest(keep, trials, 5))
    for t in gen1[1:]:
        assert t.assignments == next(m for m in gen0 if m.name == t.labels[LABEL_MEMBER]).assignments


def test_failed_members_are_replaced_and_generations_continue():
    prob = pbt()
    trials: list[TrialRecord] = []
    gen0 = add(trials, PBT.suggest(prob, trials, 5))
    gen0[2].status = "Failed"
    succeed([t for t in gen0 if t.status != "Failed"], [0.1, 0.5, 0.9, 0.7])
    (refill,) = PBT.suggest(prob, trials, 3)
    assert refill.labels[LABEL_GENERATION] == "0"  # replaces the failed member
    add(trials, [refill])
    succeed(trials[-1:], [0.3])
    for generation in (1, 2, 3):
        new = add(trials, PBT.suggest(prob, trials, 5))
        assert {t.labels[LABEL_GENERATION] for t in new} == {str(generation)} and len(new) == 5
        succeed(new, [0.2 * generation + 0.01 * i for i in range(5)])
    assert not PBT.is_complete(prob, trials)


def test_minimize_exploits_the_highest_values():
    prob = problem(
        "pbt",
        {"n_population": "5", "truncation_threshold": "0.2", "suggestion_trial_dir": "/d"},
        objective=Objective("minimize", "eval_f1"),
    )
    trials: list[TrialRecord] = []
    gen0 = add(trials, PBT.suggest(prob, trials, 5))
    succeed(gen0, [0.1, 0.5, 0.3, 0.9, 0.7])
    first = PBT.suggest(prob, trials, 1)[0]
    assert first.labels[LABEL_MEMBER] == "p03" and first.labels[LABEL_PARENT] == "p00"


# ----------------------------------------------------------------------------- medianstop

MAX = Objective("maximize", "eval_f1")
MIN = Objective("minimize", "eval_loss")


def done(name: str, values: list[float], metric: str = "eval_f1") -> TrialRecord:
    return TrialRecord(name, {}, "Succeeded", {metric: values[-1]}, {}, list(enumerate(values, 1)))


def running(name: str, values: list[float]) -> TrialRecord:
    return TrialRecord(name, {}, "Running", {}, {}, list(enumerate(values, 1)))


def test_no_rule_before_min_trials_required_have_succeeded():
    settings = MedianStopSettings(min_trials_required=3, start_step=2)
    trials = [done("a", [0.5, 0.7, 0.8]), done("b", [0.6, 0.8, 0.9]), running("c", [0.1, 0.1])]
    assert median_stop_rule(MAX, trials, settings) is None
    assert trials_to_stop(MAX, trials, settings) == []
    trials.append(TrialRecord("f", {}, "Failed", {}, {}, [(1, 0.9), (2, 0.9)]))  # failures do not count
    assert trials_to_stop(MAX, trials, settings) == []
    trials.append(done("d", [0.7, 0.9]))
    assert trials_to_stop(MAX, trials, settings) == ["c"]


def test_rule_value_is_katibs_mean_of_first_start_step_averages():
    settings = MedianStopSettings(min_trials_required=2, start_step=2)
    rule = median_stop_rule(MAX, [done("a", [0.5, 0.7, 0.99]), done("b", [0.6, 0.8])], settings)
    # a: (0.5 + 0.7) / 2 = 0.6; b: 0.7; Katib averages the averages: 0.65
    assert rule == EarlyStoppingRule("eval_f1", pytest.approx(0.65), "less", 2)
    rule = median_stop_rule(
        MIN, [done("a", [3.0, 2.0], "eval_loss"), done("b", [5.0, 1.0], "eval_loss")], settings
    )
    assert rule.comparison == "greater" and rule.value == pytest.approx(2.75)


def test_stop_only_at_or_after_start_step_on_the_best_value_so_far():
    rule = EarlyStoppingRule("eval_f1", 0.6, "less", 3)
    assert not should_stop(rule, [(1, 0.1), (2, 0.1)], MAX)  # before start_step
    assert should_stop(rule, [(1, 0.1), (2, 0.2), (3, 0.5)], MAX)  # best 0.5 < 0.6 at step 3
    assert should_stop(rule, [(1, 0.1), (2, 0.2), (3, 0.5), (4, 0.9)], MAX)  # decided at step 3
    assert not should_stop(rule, [(1, 0.7), (2, 0.2), (3, 0.3)], MAX)  # the best so far (0.7) counts
    assert not should_stop(rule, [(1, 0.1), (2, 0.2), (3, 0.6)], MAX)  # equal is not below
    low = EarlyStoppingRule("eval_loss", 1.0, "greater", 1)
    assert should_stop(low, [(1, 1.5)], MIN) and not should_stop(low, [(1, 0.5)], MIN)
    assert not should_stop(None, [(1, 0.0)] * 10, MAX)


def test_trials_to_stop_uses_the_rule_each_trial_was_created_with():
    settings = MedianStopSettings(min_trials_required=1, start_step=1)
    trials = [done("a", [0.9]), running("b", [0.5]), running("c", [0.5])]
    assert trials_to_stop(MAX, trials, settings) == ["b", "c"]
    rules = {"b": None, "c": EarlyStoppingRule("eval_f1", 0.4, "less", 1)}
    assert trials_to_stop(MAX, trials, settings, rules) == []


@pytest.mark.parametrize(
    "settings,message",
    [
        (
            {"min_trials_required": "0"},
            "early stopping setting 'min_trials_required' must be an integer > 0, got '0'",
        ),
        ({"min_trials_required": "x"}, "'min_trials_required' must be an integer > 0, got 'x'"),
        ({"start_step": "0"}, "early stopping setting 'start_step' must be an integer >= 1, got '0'"),
        ({"start_steps": "2"}, "unknown early stopping setting 'start_steps' for algorithm medianstop"),
    ],
)
def test_medianstop_settings_invalid(settings, message):
    assert any(message in e for e in validate_medianstop(settings)), validate_medianstop(settings)
    with pytest.raises(UserError):
        MedianStopSettings.parse(settings)


def test_medianstop_settings_valid_and_defaults():
    assert validate_medianstop({"min_trials_required": "5", "start_step": "1"}) == []
    assert MedianStopSettings.parse({}) == MedianStopSettings(3, 4)
    assert MedianStopSettings.parse({"start_step": "2"}).start_step == 2
