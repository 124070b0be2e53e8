"""Search spaces: Katib parameter specs, string values, priors and model coordinates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hpo_sim import SEED000_PARAMETERS, seed_space

from kftune.errors import UserError
from kftune.hpo import Objective, Parameter, Problem, SearchSpace, format_value, parse_value


def p(ptype: str, **fs) -> Parameter:
    return Parameter.from_katib({"name": "x", "parameterType": ptype, "feasibleSpace": fs})


def test_from_katib_parses_the_seed_space():
    space = seed_space()
    assert space.names == [d["name"] for d in SEED000_PARAMETERS]
    lr = space["learning_rate"]
    assert (lr.type, lr.min, lr.max, lr.step, lr.distribution) == ("double", 6e-6, 5e-5, None, "logUniform")
    epochs = space["num_epochs"]
    assert (epochs.min, epochs.max, epochs.step) == (1, 9, 1) and isinstance(
        epochs.min, int
    )  # int step defaults to 1
    assert space["per_device_train_batch_size"].values == ("16", "32", "64")


def test_from_katib_accepts_yaml_numbers_and_enum_spellings():
    q = Parameter.from_katib(
        {
            "name": "lr",
            "parameterType": "double",
            "feasibleSpace": {"min": 1e-5, "max": 0.1, "distribution": "LOG_UNIFORM"},
        }
    )
    assert q.distribution == "logUniform" and q.min == 1e-5
    d = Parameter.from_katib(
        {"name": "bs", "parameterType": "discrete", "feasibleSpace": {"list": [16, 32.0]}}
    )
    assert d.values == ("16", "32")


@pytest.mark.parametrize(
    "spec,message",
    [
        (
            {"name": "x", "parameterType": "float", "feasibleSpace": {"min": "0", "max": "1"}},
            "spec.parameters[0].parameterType",
        ),
        (
            {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "1", "max": "0"}},
            "min 1.0 is greater than max 0.0",
        ),
        (
            {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0"}},
            "need feasibleSpace min and max",
        ),
        (
            {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "a", "max": "1"}},
            "min must be a number",
        ),
        (
            {"name": "x", "parameterType": "int", "feasibleSpace": {"min": "0.5", "max": "3"}},
            "min must be an integer",
        ),
        (
            {"name": "x", "parameterType": "int", "feasibleSpace": {"min": "0", "max": "3", "step": "0"}},
            "step must be > 0",
        ),
        (
            {
                "name": "x",
                "parameterType": "double",
                "feasibleSpace": {"min": "0", "max": "1", "distribution": "logUniform"},
            },
            "needs min > 0",
        ),
        (
            {
                "name": "x",
                "parameterType": "double",
                "feasibleSpace": {"min": "0", "max": "1", "distribution": "beta"},
            },
            "distribution must be one of",
        ),
        (
            {"name": "x", "parameterType": "categorical", "feasibleSpace": {"list": []}},
            "non-empty feasibleSpace list",
        ),
        (
            {"name": "x", "parameterType": "categorical", "feasibleSpace": {"list": ["a", "a"]}},
            "duplicate values in list: a",
        ),
        (
            {"name": "x", "parameterType": "discrete", "feasibleSpace": {"list": ["1", "two"]}},
            "discrete value must be a number",
        ),
        (
            {"parameterType": "int", "feasibleSpace": {"min": "0", "max": "1"}},
            "spec.parameters[0].name: missing",
        ),
    ],
)
def test_from_katib_rejects_bad_parameters_with_their_path(spec, message):
    with pytest.raises(UserError) as err:
        SearchSpace.from_katib([spec])
    assert message in str(err.value)
    assert str(err.value).startswith("spec.parameters[0]")


def test_duplicate_names_are_rejected():
    with pytest.raises(UserError, match=r"spec.parameters\[1\].name: duplicate parameter name 'a'"):
        SearchSpace.from_katib(
            [{"name": "a", "parameterType": "int", "feasibleSpace": {"min": "0", "max": "1"}}] * 2
        )


def test_format_value_writes_strings_like_katib():
    lr = p("double", min="1e-6", max="1")
    assert format_value(lr, 0.0001) == "0.0001"
    assert format_value(lr, 2.326071e-05) == "0.00002326071"
    assert format_value(lr, 0.1 + 0.2) == "0.3"  # 12 significant digits
    assert format_value(lr, 3.0) == "3"
    assert format_value(p("int", min="1", max="9"), 3) == "3"
    assert format_value(p("discrete", list=["16", "32"]), 32.0) == "32"
    assert format_value(p("categorical", list=["adamw", "sgd"]), "sgd") == "sgd"
    with pytest.raises(ValueError):
        format_value(p("int", min="1", max="9"), 2.5)


def test_parse_value_checks_feasibility():
    stepped = p("double", min="0.1", max="0.5", step="0.1")
    assert parse_value(stepped, "0.3") == pytest.approx(0.3)
    for bad in ("0.35", "0.6", "abc", "nan"):
        with pytest.raises(ValueError):
            parse_value(stepped, bad)
    ints = p("int", min="1", max="9", step="2")
    assert parse_value(ints, "5") == 5 and isinstance(parse_value(ints, "5"), int)
    with pytest.raises(ValueError):
        parse_value(ints, "4")
    with pytest.raises(ValueError):
        parse_value(p("categorical", list=["a"]), "b")
    assert parse_value(p("discrete", list=["16", "32"]), "32.0") == "32"


def test_grid_follows_katibs_arange_semantics():
    assert p("double", min="0.1", max="0.5", step="0.1").grid() == ["0.1", "0.2", "0.3", "0.4", "0.5"]
    assert p("double", min="0", max="1", step="0.3").grid() == ["0", "0.3", "0.6", "0.9"]  # 1.2 > max dropped
    assert p("int", min="16", max="256", step="16").grid()[:3] == ["16", "32", "48"]
    assert p("int", min="1", max="3").grid() == ["1", "2", "3"]
    with pytest.raises(ValueError, match="needs feasibleSpace.step"):
        p("double", min="0", max="1").grid()


@pytest.mark.parametrize(
    "fs,ptype",
    [
        ({"min": "6e-6", "max": "5e-5", "distribution": "logUniform"}, "double"),
        ({"min": "0", "max": "0.2"}, "double"),
        ({"min": "0", "max": "1", "step": "0.25"}, "double"),
        ({"min": "1", "max": "9"}, "int"),
        ({"min": "16", "max": "256", "step": "16"}, "int"),
        ({"min": "1", "max": "1000", "distribution": "logUniform"}, "int"),
        ({"min": "-1", "max": "1", "distribution": "normal"}, "double"),
        ({"min": "0.001", "max": "10", "distribution": "logNormal"}, "double"),
        ({"list": ["a", "b", "c"]}, "categorical"),
        ({"list": ["16", "32", "64"]}, "discrete"),
    ],
)
def test_samples_and_decoded_values_are_feasible_and_round_trip(fs, ptype):
    q = p(ptype, **fs)
    rng = np.random.default_rng(0)
    for _ in range(200):
        text = format_value(q, q.sample(rng))
        assert q.contains(text), text
        assert format_value(q, q.decode(q.encode(text))) == text  # encode/decode keeps the value
    for u in (0.0, 1e-9, 0.5, 1 - 1e-9, 1.0):
        assert q.contains(format_value(q, q.decode(u)))
        assert q.contains(format_value(q, q.from_quantile(u)))


def test_log_uniform_prior_is_uniform_in_log_space():
    q = p("double", min="1e-6", max="1e-2", distribution="logUniform")
    rng = np.random.default_rng(1)
    logs = np.log10([q.sample(rng) for _ in range(4000)])
    hist, _ = np.histogram(logs, bins=4, range=(-6, -2))
    assert hist.min() > 850  # ~1000 per decade; a uniform prior would put ~0 in the lowest decade
    assert abs(np.median(logs) + 4) < 0.1


def test_normal_prior_is_truncated_and_centred():
    q = p("double", min="0", max="6", distribution="normal")  # mu 3, sigma 1
    rng = np.random.default_rng(2)
    xs = np.array([q.sample(rng) for _ in range(4000)])
    assert xs.min() >= 0 and xs.max() <= 6
    assert abs(xs.mean() - 3) < 0.05 and abs(xs.std() - 1) < 0.06


SEED_ASSIGNMENT = {
    "learning_rate": "1e-5",
    "weight_decay": "0.1",
    "warmup_ratio": "0",
    "attention_dropout": "0",
    "hidden_dropout": "0",
    "per_device_train_batch_size": "32",
    "num_epochs": "2",
}


def test_space_helpers():
    space = seed_space()
    a = dict(SEED_ASSIGNMENT)
    assert space.check(a) == []
    assert space.key(a) == space.key({**a, "learning_rate": "0.00001"})  # canonical strings
    assert space.key(a, exclude=("num_epochs",)) == space.key(
        {**a, "num_epochs": "9"}, exclude=("num_epochs",)
    )
    errors = space.check({**a, "num_epochs": "10", "extra": "1"})
    assert any("outside [1, 9]" in e for e in errors) and "unknown parameter 'extra'" in errors
    assert space.without("num_epochs").names == space.names[:-1]
    assert space.total_combinations() is None
    grid = SearchSpace.from_katib(
        [
            {"name": "bs", "parameterType": "int", "feasibleSpace": {"min": "16", "max": "64", "step": "16"}},
            {"name": "o", "parameterType": "categorical", "feasibleSpace": {"list": ["a", "b"]}},
        ]
    )
    assert grid.total_combinations() == 8


def test_parse_key_memo_gives_the_unmemoised_answer_every_time():
    from kftune.hpo.space import clear_caches

    space = seed_space()
    a = dict(SEED_ASSIGNMENT)
    cases = [
        a,
        {**a, "learning_rate": "0.00001"},  # the same configuration, spelled differently
        {**a, "num_epochs": "10"},  # infeasible
        {k: v for k, v in a.items() if k != "hidden_dropout"},  # missing
        {**a, "weight_decay": "abc"},
        {**a, "weight_decay": ["0.1"]},  # unhashable: no memo, same answer
        {**a, "per_device_train_batch_size": "48"},
    ]
    for exclude in ((), ("num_epochs",)):
        fresh = [space._parse_key(c, exclude) for c in cases]
        assert [space.parse_key(c, exclude) for c in cases] == fresh  # filling the memo
        assert [space.parse_key(c, exclude) for c in cases] == fresh  # served from it
    assert space.parse_key(a) != space.parse_key(a, ("num_epochs",))  # exclude is part of the memo key
    assert space.parse_key({**a, "num_epochs": "10"}) is None
    assert space.parse_key({**a, "num_epochs": "10"}, ("num_epochs",)) == space.parse_key(a, ("num_epochs",))
    assert space._key_cache
    clear_caches(space)
    assert not space._key_cache and all(not p._cache for p in space)


def test_problem_from_katib_spec():
    spec = {
        "parallelTrialCount": 4,
        "maxTrialCount": "50",
        "objective": {
            "type": "maximize",
            "objectiveMetricName": "eval_f1",
            "goal": "0.99",
            "additionalMetricNames": ["eval_loss"],
        },
        "algorithm": {
            "algorithmName": "asha",
            "algorithmSettings": [
                {"name": "resource_name", "value": "num_epochs"},
                {"name": "reduction_factor", "value": 3},
            ],
        },
        "parameters": SEED000_PARAMETERS,
    }
    prob = Problem.from_katib(spec)
    assert prob.objective == Objective("maximize", "eval_f1", 0.99, ("eval_loss",))
    assert prob.settings == {"resource_name": "num_epochs", "reduction_factor": "3"}
    assert (prob.max_trial_count, prob.parallel_trial_count, prob.max_failed_trial_count) == (50, 4, None)
    with pytest.raises(UserError, match=r"spec.objective.type: must be maximize or minimize"):
        Problem.from_katib({**spec, "objective": {"type": "max", "objectiveMetricName": "f1"}})
    with pytest.raises(UserError, match=r"spec.algorithm.algorithmName: missing"):
        Problem.from_katib({**spec, "algorithm": {}})
    with pytest.raises(UserError, match=r"spec.maxTrialCount: must be an integer"):
        Problem.from_katib({**spec, "maxTrialCount": "many"})


def test_objective_loss_orientation():
    assert Objective("maximize", "f1").loss(0.9) == -0.9
    assert Objective("minimize", "loss").loss(0.9) == 0.9
    with pytest.raises(ValueError):
        Objective("max", "f1")
    assert not math.isnan(Objective("minimize", "loss").loss(0.0))


def test_encode_memo_gives_the_unmemoised_coordinates():
    from kftune.hpo.kde import Encoder
    from kftune.hpo.space import clear_caches

    space = seed_space().without("num_epochs")
    enc = Encoder(space)
    rows = [
        {k: v for k, v in SEED_ASSIGNMENT.items() if k != "num_epochs"},
        {**{k: v for k, v in SEED_ASSIGNMENT.items() if k != "num_epochs"}, "learning_rate": "4.5e-5"},
    ]
    fresh = np.array([[p.encode(a[p.name]) for p in space] for a in rows])
    assert np.array_equal(enc.encode_many(rows), fresh)  # filling the memo
    assert np.array_equal(enc.encode_many(rows), fresh)  # served from it
    assert all(p._enc_cache for p in space)
    clear_caches(space)
    assert not any(p._enc_cache for p in space)


def test_memos_never_answer_for_a_value_of_another_type():
    """1 == True and hash(1) == hash(True): a memo keyed on values must not serve one for the other."""
    from kftune.hpo.base import _assignment_key

    assert _assignment_key({"a": "1"}) == "a=1"
    assert _assignment_key({"a": True}) == "a=True"  # not the memoised "a=1"
    assert _assignment_key({"a": 1}) == "a=1"
    space = seed_space()
    good = dict(SEED_ASSIGNMENT)
    assert space.parse_key(good) is not None
    assert space.parse_key({**good, "num_epochs": 2}) == space.parse_key(good)  # an int parses the same
