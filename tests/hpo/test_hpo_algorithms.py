"""Properties every algorithm must have: feasible, well-formatted values; no duplicates in a
batch where the space allows; determinism for a given random_state; settings validated like
Katib's ValidateAlgorithmSettings."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hpo_sim import problem

from kftune.errors import UserError
from kftune.hpo import (
    KFTUNE_ONLY,
    Objective,
    Problem,
    SearchSpace,
    TrialRecord,
    format_value,
    get_algorithm,
    known_algorithms,
    parse_value,
)

ALL_TYPES = SearchSpace.from_katib(
    [
        {
            "name": "lr",
            "parameterType": "double",
            "feasibleSpace": {"min": "1e-6", "max": "1e-2", "distribution": "logUniform"},
        },
        {"name": "wd", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "0.3"}},
        {
            "name": "warm",
            "parameterType": "double",
            "feasibleSpace": {"min": "0", "max": "0.2", "step": "0.05"},
        },
        {"name": "layers", "parameterType": "int", "feasibleSpace": {"min": "2", "max": "12", "step": "2"}},
        {"name": "bs", "parameterType": "discrete", "feasibleSpace": {"list": ["16", "32", "64"]}},
        {"name": "opt", "parameterType": "categorical", "feasibleSpace": {"list": ["adamw", "sgd"]}},
        {"name": "epochs", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "9"}},
    ]
)

SETTINGS = {
    "random": {},
    "sobol": {},
    "grid": {},
    "tpe": {},
    "multivariate-tpe": {"n_startup_trials": "4"},
    "cmaes": {},
    "bayesianoptimization": {"n_initial_points": "4", "acq_optimizer": "sampling"},
    "hyperband": {"resource_name": "epochs", "r_l": "9"},
    "asha": {"resource_name": "epochs", "num_configurations": "30"},
    "bohb": {"resource_name": "epochs", "min_points_in_model": "3", "num_iterations": "6"},
    "pbt": {"n_population": "5", "truncation_threshold": "0.2", "suggestion_trial_dir": "/var/pbt"},
}
GRID_SPACE = SearchSpace.from_katib(
    [
        {
            "name": "warm",
            "parameterType": "double",
            "feasibleSpace": {"min": "0", "max": "0.2", "step": "0.1"},
        },
        {"name": "layers", "parameterType": "int", "feasibleSpace": {"min": "2", "max": "6", "step": "2"}},
        {"name": "opt", "parameterType": "categorical", "feasibleSpace": {"list": ["adamw", "sgd"]}},
    ]
)


def make(algo: str, seed: str = "0", space: SearchSpace | None = None, **extra: str) -> Problem:
    settings = {**SETTINGS[algo], **extra}
    settings.setdefault("random_state", seed)
    if space is None:
        space = GRID_SPACE if algo == "grid" else ALL_TYPES
    return Problem(space, Objective("maximize", "score"), algo, settings, parallel_trial_count=9)


def score(a: dict[str, str]) -> float:
    lr = float(a["lr"]) if "lr" in a else 1e-4
    return (
        -((math.log10(lr) + 4) ** 2)
        - float(a.get("wd", 0))
        + 0.01 * float(a.get("epochs", 1))
        + (a.get("opt") == "adamw") * 0.1
    )


def run_rounds(prob: Problem, rounds: int = 6, batch: int = 3) -> list[TrialRecord]:
    algo = get_algorithm(prob.algorithm_name)
    trials: list[TrialRecord] = []
    for _ in range(rounds):
        for s in algo.suggest(prob, trials, batch):
            trials.append(
                TrialRecord(
                    f"t{len(trials):03d}",
                    s.assignments,
                    "Succeeded",
                    {"score": score(s.assignments)},
                    s.labels,
                )
            )
    return trials


def test_registry_knows_every_algorithm_and_rejects_others():
    assert known_algorithms() == sorted(SETTINGS)
    assert set(KFTUNE_ONLY) == {"asha", "bohb"}
    with pytest.raises(
        UserError, match="unknown algorithm 'hyperopt': known algorithms are asha, bayesianoptimization, bohb"
    ):
        get_algorithm("hyperopt")
    assert all(get_algorithm(n).name == n for n in known_algorithms())


@pytest.mark.parametrize("algo", sorted(SETTINGS))
def test_values_are_feasible_typed_and_formatted(algo):
    prob = make(algo)
    assert get_algorithm(algo).validate(prob) == []
    trials = run_rounds(prob)
    assert len(trials) >= 5
    space = prob.space
    for t in trials:
        assert list(t.assignments) == space.names or sorted(t.assignments) == sorted(space.names)
        assert space.check(t.assignments) == [], (t.name, t.assignments)
        for name, text in t.assignments.items():
            assert isinstance(text, str)
            assert format_value(space[name], parse_value(space[name], text)) == text  # canonical strings
        for k, v in t.labels.items():  # Kubernetes label syntax: Katib copies them onto the Trial
            assert re.fullmatch(r"([a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", k), k
            assert re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?", v), (k, v)


@pytest.mark.parametrize(
    "algo", ["random", "sobol", "tpe", "multivariate-tpe", "asha", "bohb", "hyperband", "pbt"]
)
def test_log_uniform_is_respected(algo):
    """lr ~ logUniform(1e-6, 1e-2): half of the first, mostly random, draws lie below 1e-4
    (a uniform draw would do so 1% of the time)."""
    prob = make(algo, seed="5")
    trials = run_rounds(prob, rounds=4, batch=5)[:15]
    below = sum(float(t.assignments["lr"]) < 1e-4 for t in trials) / len(trials)
    assert 0.2 <= below <= 0.8, below


SMALL = SearchSpace.from_katib(
    [
        {"name": "a", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "3"}},
        {"name": "b", "parameterType": "int", "feasibleSpace": {"min": "0", "max": "1"}},
        {"name": "c", "parameterType": "categorical", "feasibleSpace": {"list": ["x", "y"]}},
    ]
)


@pytest.mark.parametrize(
    "algo", ["random", "sobol", "grid", "tpe", "multivariate-tpe", "cmaes", "bayesianoptimization"]
)
def test_a_batch_has_no_duplicates_where_the_space_allows(algo):
    """12 combinations: a batch of 12 covers them all (katib#1329: hyperopt's TPE repeated)."""
    prob = make(algo, space=SMALL)
    algorithm = get_algorithm(algo)
    first = algorithm.suggest(prob, [], 12)
    keys = [SMALL.key(s.assignments) for s in first]
    assert len(keys) == 12 and len(set(keys)) == 12
    # with trials already there (running ones included), a new batch avoids them too
    trials = [
        TrialRecord(f"t{i}", s.assignments, "Running" if i % 2 else "Succeeded", {"score": float(i)})
        for i, s in enumerate(first[:6])
    ]
    second = algorithm.suggest(prob, trials, 6)
    assert len({SMALL.key(s.assignments) for s in second} | {SMALL.key(t.assignments) for t in trials}) == 12


def test_asha_and_bohb_batches_have_distinct_configurations():
    for algo in ("asha", "bohb"):
        sugs = get_algorithm(algo).suggest(make(algo), [], 9)
        assert len({ALL_TYPES.key(s.assignments, ("epochs",)) for s in sugs}) == 9


@pytest.mark.parametrize("algo", sorted(SETTINGS))
def test_same_trials_and_random_state_give_the_same_suggestions(algo):
    prob = make(algo, seed="11")
    trials = run_rounds(prob, rounds=4)
    algorithm = get_algorithm(algo)
    once = algorithm.suggest(prob, trials, 3)
    again = algorithm.suggest(
        prob,
        [TrialRecord(t.name, dict(t.assignments), t.status, dict(t.metrics), dict(t.labels)) for t in trials],
        3,
    )
    assert [(s.assignments, s.labels) for s in once] == [(s.assignments, s.labels) for s in again]
    assert run_rounds(prob, rounds=3) == run_rounds(prob, rounds=3)
    if algo != "grid":
        other = make(algo, seed="12")
        assert [t.assignments for t in run_rounds(other, rounds=2)] != [
            t.assignments for t in run_rounds(prob, rounds=2)
        ]


def test_grid_enumerates_exactly_the_product_then_completes():
    prob = make("grid")
    grid = get_algorithm("grid")
    trials: list[TrialRecord] = []
    while True:
        sugs = grid.suggest(prob, trials, 5)
        if not sugs:
            break
        assert not grid.is_complete(prob, trials)
        trials += [
            TrialRecord(f"g{len(trials) + i}", s.assignments, "Succeeded", {"score": 0.0})
            for i, s in enumerate(sugs)
        ]
    combos = [(t.assignments["warm"], t.assignments["layers"], t.assignments["opt"]) for t in trials]
    assert combos[:3] == [("0", "2", "adamw"), ("0", "2", "sgd"), ("0", "4", "adamw")]  # product order
    assert sorted(combos) == sorted(
        (w, n, o) for w in ("0", "0.1", "0.2") for n in ("2", "4", "6") for o in ("adamw", "sgd")
    )
    assert len(combos) == 18 and grid.is_complete(prob, trials)


def test_grid_validation_follows_katib():
    grid = get_algorithm("grid")
    assert grid.validate(make("grid")) == []
    too_many = Problem(GRID_SPACE, Objective("maximize", "s"), "grid", {}, max_trial_count=19)
    assert grid.validate(too_many) == ["maxTrialCount 19 > all possible search combinations: 18"]
    no_step = Problem(ALL_TYPES, Objective("maximize", "s"), "grid", {})
    assert any("parameter 'lr': grid needs feasibleSpace.step" in e for e in grid.validate(no_step))
    with pytest.raises(UserError):
        grid.suggest(no_step, [], 1)


# --------------------------------------------------------------------------- settings, per setting

VALIDATION = [
    # (algorithm, setting, valid value, invalid value, message fragment)
    ("random", "random_state", "3", "-1", "'random_state' must be an integer >= 0, got '-1'"),
    ("random", "gamma", None, "0.5", "unknown algorithm setting 'gamma' for algorithm random"),
    ("sobol", "random_state", "0", "x", "'random_state' must be an integer >= 0, got 'x'"),
    ("grid", "random_state", "1", "1.5", "'random_state' must be an integer >= 0, got '1.5'"),
    ("tpe", "gamma", "0.3", "1", "'gamma' must be a number in (0, 1), got '1'"),
    ("tpe", "prior_weight", "2", "0", "'prior_weight' must be a number > 0, got '0'"),
    ("tpe", "n_EI_candidates", "12", "0", "'n_EI_candidates' must be an integer > 0, got '0'"),
    ("tpe", "random_state", "5", "-5", "'random_state' must be an integer >= 0"),
    ("tpe", "n_startup_trials", None, "5", "unknown algorithm setting 'n_startup_trials' for algorithm tpe"),
    ("multivariate-tpe", "n_startup_trials", "0", "-1", "'n_startup_trials' must be an integer >= 0"),
    ("multivariate-tpe", "n_ei_candidates", "8", "0", "'n_ei_candidates' must be an integer > 0"),
    ("multivariate-tpe", "random_state", "2", "a", "'random_state' must be an integer >= 0"),
    ("cmaes", "sigma", "0.2", "0", "'sigma' must be a number > 0, got '0'"),
    ("cmaes", "restart_strategy", "ipop", "rpop", "'restart_strategy' must be one of none, ipop, bipop"),
    ("cmaes", "random_state", "1", "x", "'random_state' must be an integer >= 0"),
    (
        "bayesianoptimization",
        "base_estimator",
        "RF",
        "SVM",
        "'base_estimator' must be one of GP, RF, ET, GBRT",
    ),
    ("bayesianoptimization", "n_initial_points", "0", "-1", "'n_initial_points' must be an integer >= 0"),
    (
        "bayesianoptimization",
        "acq_func",
        "LCB",
        "UCB",
        "'acq_func' must be one of gp_hedge, LCB, EI, PI, EIps, PIps",
    ),
    (
        "bayesianoptimization",
        "acq_optimizer",
        "lbfgs",
        "adam",
        "'acq_optimizer' must be one of auto, sampling, lbfgs",
    ),
    ("bayesianoptimization", "random_state", "0", "-1", "'random_state' must be an integer >= 0"),
    ("hyperband", "eta", "2", "0", "'eta' must be an integer > 1"),
    ("hyperband", "r_l", "27", "zero", "'r_l' must be a positive number, got 'zero'"),
    ("pbt", "n_population", "8", "4", "'n_population' must be an integer >= 5, got '4'"),
    (
        "pbt",
        "truncation_threshold",
        "0.4",
        "1.2",
        "'truncation_threshold' must be a number in [0, 1], got '1.2'",
    ),
    (
        "pbt",
        "resample_probability",
        "0.25",
        "2",
        "'resample_probability' must be a number in [0, 1], got '2'",
    ),
    ("pbt", "random_state", "3", "x", "'random_state' must be an integer >= 0"),
]


@pytest.mark.parametrize("algo,setting,good,bad,message", VALIDATION)
def test_each_setting_has_a_valid_and_an_invalid_case(algo, setting, good, bad, message):
    algorithm = get_algorithm(algo)
    parallel = 27 if algo == "hyperband" else 9
    base = {**SETTINGS[algo]}
    if good is not None:
        prob = Problem(
            ALL_TYPES,
            Objective("maximize", "s"),
            algo,
            {**base, setting: good},
            parallel_trial_count=parallel,
        )
        if algo == "grid":
            prob = Problem(GRID_SPACE, Objective("maximize", "s"), algo, {**base, setting: good})
        assert algorithm.validate(prob) == []
    prob = Problem(
        GRID_SPACE if algo == "grid" else ALL_TYPES,
        Objective("maximize", "s"),
        algo,
        {**base, setting: bad},
        parallel_trial_count=parallel,
    )
    errors = algorithm.validate(prob)
    assert any(message in e for e in errors), errors


def test_pbt_and_cmaes_structural_rules():
    pbt = get_algorithm("pbt")
    errors = pbt.validate(Problem(ALL_TYPES, Objective("maximize", "s"), "pbt", {}))
    assert errors == [
        "algorithm setting 'suggestion_trial_dir' is required",
        "algorithm setting 'n_population' is required",
        "algorithm setting 'truncation_threshold' is required",
    ]
    one_numeric = SearchSpace.from_katib(
        [
            {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}},
            {"name": "c", "parameterType": "categorical", "feasibleSpace": {"list": ["a", "b"]}},
        ]
    )
    assert get_algorithm("cmaes").validate(Problem(one_numeric, Objective("maximize", "s"), "cmaes", {})) == [
        "cmaes only supports two or more dimensional continuous search space (int/double parameters)"
    ]


# --------------------------------------------------------------------------- model-based behaviour


def test_cmaes_advances_generations_and_replays_deterministically():
    space = SearchSpace.from_katib(
        [
            {"name": n, "parameterType": "double", "feasibleSpace": {"min": "-5", "max": "5"}}
            for n in ("x", "y", "z")
        ]
    )
    prob = Problem(space, Objective("minimize", "f"), "cmaes", {"random_state": "1"})
    cma = get_algorithm("cmaes")
    trials: list[TrialRecord] = []
    for _ in range(14):
        for s in cma.suggest(prob, trials, 7):
            f = sum((float(s.assignments[n]) - 1.0) ** 2 for n in "xyz")
            trials.append(TrialRecord(f"c{len(trials):03d}", s.assignments, "Succeeded", {"f": f}, s.labels))
    gens = [int(t.labels["kftune.io/cma-generation"]) for t in trials]
    lam = 4 + int(3 * math.log(3))  # 7
    assert gens[:lam] == [0] * lam and max(gens) >= 10
    state, generation, _, _ = cma.replay(prob, trials)
    assert generation == max(gens) + 1 or generation == max(gens)
    assert np.allclose(state.mean, [0.6, 0.6, 0.6], atol=0.05)  # (1 + 5) / 10 in [0, 1] coordinates
    best = min(t.metrics["f"] for t in trials)
    assert best < 0.05


def test_bayesianoptimization_uses_its_model_after_the_initial_points():
    space = SearchSpace.from_katib(
        [
            {"name": n, "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}
            for n in ("x", "y")
        ]
    )
    prob = Problem(
        space,
        Objective("minimize", "f"),
        "bayesianoptimization",
        {"n_initial_points": "5", "acq_func": "EI", "random_state": "0"},
    )
    bo = get_algorithm("bayesianoptimization")
    trials: list[TrialRecord] = []
    for _ in range(12):
        (s,) = bo.suggest(prob, trials, 1)
        f = (float(s.assignments["x"]) - 0.3) ** 2 + (float(s.assignments["y"]) - 0.7) ** 2
        trials.append(TrialRecord(f"b{len(trials)}", s.assignments, "Succeeded", {"f": f}))
    assert min(t.metrics["f"] for t in trials[5:]) < min(t.metrics["f"] for t in trials[:5])
    assert min(t.metrics["f"] for t in trials) < 0.01
    assert any("gp_hedge" in n for n in bo.notes(problem("bayesianoptimization", {})))


def test_optuna_tpe_learns_from_completed_trials():
    prob = make("multivariate-tpe", seed="3")
    trials = run_rounds(prob, rounds=12, batch=3)
    late = [abs(math.log10(float(t.assignments["lr"])) + 4) for t in trials[-12:]]
    early = [abs(math.log10(float(t.assignments["lr"])) + 4) for t in trials[:4]]
    assert np.mean(late) < np.mean(early)


@pytest.mark.parametrize("algo", ["random", "sobol", "grid", "asha", "bohb", "hyperband", "pbt", "cmaes"])
def test_the_order_of_the_trial_list_does_not_matter(algo):
    """Katib lists trials in its own order; the stateless algorithms answer the same."""
    prob = make(algo, seed="2")
    trials = run_rounds(prob, rounds=5)
    trials[-1].status, trials[-1].metrics = "Running", {}
    shuffled = [trials[i] for i in np.random.default_rng(0).permutation(len(trials))]
    algorithm = get_algorithm(algo)
    assert [(s.assignments, s.labels) for s in algorithm.suggest(prob, trials, 3)] == [
        (s.assignments, s.labels) for s in algorithm.suggest(prob, shuffled, 3)
    ]


def test_importing_every_algorithm_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, importlib\n"
        "from kftune.hpo.registry import _ALGORITHMS\n"
        "for module, _ in _ALGORITHMS.values(): importlib.import_module(module)\n"
        "import kftune.hpo.earlystop\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'optuna' not in sys.modules and 'sklearn' not in sys.modules, 'heavy imports are lazy'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("estimator", ["RF", "ET", "GBRT"])
def test_bayesianoptimization_other_estimators_run(estimator):
    prob = make("bayesianoptimization", base_estimator=estimator, acq_optimizer="lbfgs", acq_func="gp_hedge")
    trials = run_rounds(prob, rounds=2, batch=3)  # 4 initial points, then 2 from the model
    assert len(trials) == 6 and all(prob.space.check(t.assignments) == [] for t in trials)


def test_call_seed_hashes_the_multiset_of_assignments():
    """call_seed's fast string building hashes exactly what its definition says (reference below),
    for string values and for values that are not strings."""
    import hashlib

    from kftune.hpo.base import call_seed

    def reference(prob, trials, salt=""):
        h = hashlib.blake2b(digest_size=8)
        h.update(f"{prob.settings.get('random_state', '0')}|{prob.algorithm_name}|{salt}|".encode())
        keys = sorted("\x1f".join(f"{k}={v}" for k, v in sorted(t.assignments.items())) for t in trials)
        h.update("\x1e".join(keys).encode())
        return int.from_bytes(h.digest(), "little") & 0x7FFFFFFF

    prob = problem("random", {"random_state": "7"})
    trials = [TrialRecord(f"t{i}", {"b": str(i % 3), "a": f"{i / 7:.4f}"}, "Succeeded") for i in range(20)]
    assert call_seed(prob, trials, "x") == reference(prob, trials, "x")
    assert call_seed(prob, trials) == call_seed(prob, trials[::-1])  # a multiset: order does not count
    assert call_seed(prob, trials) != call_seed(prob, trials[:-1])
    odd = [TrialRecord("t", {"a": 1, "b": "x"}, "Succeeded")]  # type: ignore[dict-item]
    assert call_seed(prob, odd) == reference(prob, odd)
