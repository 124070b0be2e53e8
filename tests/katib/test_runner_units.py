"""The local runner's parts: Katib's collector semantics, experiment status, overrides, paths."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from runner_helpers import experiment_yaml, write_experiment

from kftune.errors import UserError
from kftune.katib.collector import (
    UNAVAILABLE,
    CollectionError,
    Metric,
    MetricLog,
    TextFilter,
    observation,
    observation_available,
    parse_json_line,
)
from kftune.katib.experiment import Experiment, load_experiment
from kftune.katib.runner_overrides import Overrides
from kftune.katib.runner_paths import LocalLayout, build_path_map, trial_roots
from kftune.katib.runner_status import experiment_condition, optimal_trial
from kftune.katib.store import TrialRow

ROOT = Path(__file__).resolve().parents[2]
TRAINER_FILTER = r"(eval_\w+)=([+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"


# ------------------------------------------------------------------------------ collector


def test_default_filter_keeps_only_the_experiments_metrics_as_strings():
    f = TextFilter(["eval_f1", "eval_loss"])
    line = "epoch=2 eval_f1=0.8731 eval_precision=0.87 eval_loss = 4.12e-01"
    assert f.parse(line) == [MetricLog("eval_f1", "0.8731"), MetricLog("eval_loss", "4.12e-01")]
    # Katib skips lines that mention none of the metric names, whatever the regexp would find
    assert f.parse("epoch=2 accuracy=0.9") == []
    # the default regexp accepts an empty number: Katib records the empty string
    assert f.parse("eval_f1=nan") == [MetricLog("eval_f1", "")]


def test_custom_filters_replace_the_default_and_all_apply():
    f = TextFilter(["eval_f1", "eval_loss"], [TRAINER_FILTER, r"(eval_loss):\s*(\S+)"])
    assert f.parse("final test_f1=0.5 eval_f1=0.25 eval_loss: 0.75") == [
        MetricLog("eval_f1", "0.25"),
        MetricLog("eval_loss", "0.75"),
    ]
    assert f.parse("Score=1E0 eval_f1=0.5") == [MetricLog("eval_f1", "0.5")]


def test_json_lines_record_string_values_only_and_bad_json_fails():
    names = ["eval_f1", "eval_loss"]
    assert parse_json_line('{"eval_f1": "0.5", "eval_loss": 0.4, "x": "1"}', names) == [
        MetricLog("eval_f1", "0.5")
    ]
    assert parse_json_line("   ", names) == []
    with pytest.raises(CollectionError, match="not JSON"):
        parse_json_line("eval_f1=0.5", names)
    with pytest.raises(CollectionError, match="not a JSON object"):
        parse_json_line("[1]", names)


def test_observation_min_max_latest_like_getMetrics():
    logs = [MetricLog("eval_f1", v) for v in ("0.5", "0.7", "0.6")] + [MetricLog("eval_loss", "0.3")]
    obs = observation(logs, {"eval_f1": "max", "eval_loss": "min", "eval_recall": "max"})
    assert [m.to_dict() for m in obs] == [
        {"name": "eval_f1", "min": "0.5", "max": "0.7", "latest": "0.6"},
        {"name": "eval_loss", "min": "0.3", "max": "0.3", "latest": "0.3"},
        {"name": "eval_recall", "min": UNAVAILABLE, "max": UNAVAILABLE, "latest": UNAVAILABLE},
    ]
    assert observation_available(obs, "eval_f1")
    # a value that is not a number is still the latest; min/max then fall back to latest
    m = observation([MetricLog("eval_f1", "")], {"eval_f1": "max"})[0]
    assert (m.min, m.max, m.latest, m.value("max")) == (UNAVAILABLE, UNAVAILABLE, "", "")


def test_no_objective_report_makes_every_metric_unavailable():
    obs = observation([MetricLog("eval_loss", "0.3")], {"eval_f1": "max", "eval_loss": "min"})
    assert not observation_available(obs, "eval_f1")
    assert all(m.min == m.max == m.latest == UNAVAILABLE for m in obs)


# ------------------------------------------------------------------------------ status


def _exp(**spec) -> Experiment:
    base = {
        "objective": {"type": "maximize", "objectiveMetricName": "f1"},
        "algorithm": {"algorithmName": "random"},
    }
    base["objective"].update(spec.pop("objective", {}))
    return Experiment({"metadata": {"name": "e"}, "spec": {**base, **spec}})


def _row(name: str, status: str, f1: str | None = None, seq: int = 0) -> TrialRow:
    obs = None if f1 is None else [Metric("f1", f1, f1, f1).to_dict()]
    return TrialRow(name, seq, {"lr": "0.1"}, {}, [], None, {}, None, status, 0.0, observation=obs)


def test_optimal_trial_first_strictly_better_in_creation_order():
    rows = [_row("a", "Succeeded", "0.5"), _row("b", "Succeeded", "0.7"), _row("c", "EarlyStopped", "0.7")]
    rows.append(_row("d", "Failed"))
    assert optimal_trial(rows, _exp()).trial.name == "b"
    assert optimal_trial(rows, _exp(objective={"type": "minimize"})).trial.name == "a"
    assert optimal_trial([_row("x", "Running")], _exp()) is None


def test_conditions_in_katibs_order():
    rows = [_row("a", "Succeeded", "0.9"), _row("b", "Failed"), _row("c", "MetricsUnavailable")]
    # goal first, even with too many failures
    cond = experiment_condition(rows, _exp(objective={"goal": 0.8}, maxFailedTrialCount=1), False)
    assert cond.reason == "ExperimentGoalReached"
    cond = experiment_condition(
        rows, _exp(objective={"goal": 0.95}, maxFailedTrialCount=2, maxTrialCount=3), False
    )
    assert (cond.type, cond.reason) == ("Failed", "ExperimentFailed")
    assert experiment_condition(rows, _exp(maxTrialCount=3), False).reason == "ExperimentMaxTrialsReached"
    assert experiment_condition(rows, _exp(maxTrialCount=4), False).type == "Running"
    assert experiment_condition(rows, _exp(), True).reason == "ExperimentSuggestionEndReached"
    running = [*rows, _row("d", "Running")]
    assert experiment_condition(running, _exp(), True).type == "Running"


# ------------------------------------------------------------------------------ overrides


def _asha_raw() -> dict:
    return load_experiment(ROOT / "katib" / "ner-asha.yaml").raw


def _args(raw: dict) -> list[str]:
    c = raw["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    return [*c["command"], *c["args"]]


def test_set_arg_replaces_both_forms_and_appends_missing_flags():
    raw = _asha_raw()
    before = copy.deepcopy(raw)
    out, notes = Overrides(
        set_args=["--model=tiny", "--resume-from=none", "--max-train-samples=64", "--log-model"]
    ).apply(raw)
    assert raw == before  # the input is not modified
    args = _args(out)
    assert args[args.index("--model") + 1] == "tiny"
    assert "--resume-from=none" in args
    assert args[-3:] == ["--max-train-samples", "64", "--log-model"]
    assert notes == [
        "argument --model: /cache/models/bert-base-cased -> tiny",
        "argument --resume-from: $(KFTUNE_PARENT_TRIAL) -> none",
        "argument --max-train-samples: (added) 64",
        "argument --log-model: (added)",
    ]


def test_drop_arg_env_param_settings_and_counts():
    out, notes = Overrides(
        drop_args=["--tag-family"],
        set_env=["KFTUNE_PARENT_TRIAL=x", "NEW=1"],
        params=["learning_rate=1e-4:3e-3", "batch_size=8,16", "num_epochs=1:3"],
        algorithm_settings=["num_configurations=6", "n_startup_trials=3"],
        max_trial_count=12,
        parallel=2,
        goal=0.9,
    ).apply(_asha_raw())
    spec = out["spec"]
    assert "--tag-family" not in _args(out) and "original" not in _args(out)
    env = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "KFTUNE_PARENT_TRIAL", "value": "x"} in env and {"name": "NEW", "value": "1"} in env
    lr = spec["parameters"][0]["feasibleSpace"]
    assert (lr["min"], lr["max"], lr["distribution"]) == ("1e-4", "3e-3", "logUniform")
    assert spec["parameters"][5]["feasibleSpace"]["list"] == ["8", "16"]
    settings = {s["name"]: s["value"] for s in spec["algorithm"]["algorithmSettings"]}
    assert settings["num_configurations"] == "6" and settings["n_startup_trials"] == "3"
    assert "spec.algorithm setting num_configurations: (unset) -> 6" in notes
    assert (spec["maxTrialCount"], spec["parallelTrialCount"], spec["objective"]["goal"]) == (12, 2, 0.9)
    assert "parameter learning_rate: 6e-6..5e-5 -> 1e-4..3e-3" in notes
    assert "spec.maxTrialCount: 110 -> 12" in notes
    assert "env KFTUNE_PARENT_TRIAL: (valueFrom) -> x" in notes


@pytest.mark.parametrize(
    "overrides, message",
    [
        (Overrides(params=["nope=1:2"]), "no parameter named 'nope'"),
        (Overrides(params=["learning_rate=1e-4"]), "MIN:MAX"),
        (Overrides(params=["learning_rate=a:b"]), "not a number"),
        (Overrides(set_env=["NOVALUE"]), "expected NAME=VALUE"),
        (Overrides(set_args=["model=tiny"]), "expected a flag"),
        (Overrides(drop_args=["--not-there"]), "have no --not-there"),
        (Overrides(early_stopping_settings=["start_step=2"]), "no spec.earlyStopping"),
        (Overrides(parallel=0), "positive"),
    ],
)
def test_bad_overrides_are_user_errors(overrides, message):
    with pytest.raises(UserError, match=message):
        overrides.apply(_asha_raw())


def test_overrides_round_trip_and_counts_split():
    o = Overrides(set_args=["--model=tiny"], max_trial_count=3, goal=0.5)
    assert Overrides.from_dict(o.to_dict()) == o
    assert o.without_counts() == Overrides(set_args=["--model=tiny"], goal=0.5)
    assert Overrides(parallel=2).without_counts().is_empty()


# ------------------------------------------------------------------------------ paths


def test_trial_roots_and_cache_volume_map_to_the_work_dir_and_kftune_home(tmp_path):
    exp = load_experiment(ROOT / "katib" / "ner-asha.yaml")
    assert trial_roots(exp) == ["/cache/trials/ner-asha"]
    home = tmp_path / "home"
    pm = build_path_map(exp, LocalLayout(tmp_path / "w"), kftune_home=home)
    assert pm.map_path("/cache/trials/ner-asha/ner-asha-001") == str(
        tmp_path / "w" / "trials" / "ner-asha-001"
    )
    assert pm.map_path("/cache/trials/ner-asha") == str(tmp_path / "w" / "trials")
    assert pm.map_path("/cache/hf") == str(home.resolve() / "hf")
    assert pm.map_value("--data=/cache/data/conll") == f"--data={home.resolve()}/data/conll"
    assert pm.map_value("/cachex/a") == "/cachex/a"  # a prefix is a whole path component
    assert pm.map_value("relative/path") == "relative/path"


def test_volume_flag_and_configmap_volumes(tmp_path):
    docs = (ROOT / "katib" / "ner-pbt.yaml").read_text()
    from kftune.katib.runner_plan import read_experiment_file

    path = tmp_path / "pbt.yaml"
    path.write_text(docs)
    doc, config_maps = read_experiment_file(path)
    exp = Experiment(doc.data, doc)
    pm = build_path_map(exp, LocalLayout(tmp_path / "w"), {"cache": str(tmp_path / "mine")}, config_maps)
    assert pm.map_path("/cache/x") == str((tmp_path / "mine").resolve() / "x")
    gen = pm.map_path("/etc/kftune/pbt/gen-3.yaml")
    assert Path(gen).read_text() == "num_epochs: 4"


def test_trial_roots_without_working_dir(tmp_path):
    path = write_experiment(tmp_path, experiment_yaml("nowd", working_dir=""))
    exp = load_experiment(path)
    assert trial_roots(exp) == ["/cache/trials/nowd"]


# ------------------------------------------------------------------------------ progress


def test_progress_table_redraws_only_on_change_and_plain_lines_elsewhere():
    import io

    from kftune.katib.runner_progress import Progress, TrialView

    stream = io.StringIO()
    progress = Progress("eval_f1", "table", stream)
    views = [
        TrialView("e-001", "Succeeded", {"lr": "0.001"}, {"kftune.io/rung": "0"}, "0.5", 0.0, 5.0),
        TrialView("e-002", "Running", {"lr": "0.002"}, {"kftune.io/rung": "1"}, "", 1.0, None),
    ]
    progress.update(views, "e (asha): 2 trial(s)")
    first = stream.getvalue()
    lines = first.splitlines()
    assert lines[1].split()[:5] == ["TRIAL", "STATUS", "RUNG", "EVAL_F1", "ELAPSED"]
    assert lines[2].split()[:4] == ["e-001", "Succeeded", "0", "0.5"]
    assert "lr=0.002" in lines[3]
    progress.update(views, "e (asha): 2 trial(s)")
    assert stream.getvalue() == first  # nothing changed: no redraw
    views[1].status, views[1].objective = "Succeeded", "0.7"
    progress.update(views, "e (asha): 2 trial(s)")
    redraw = stream.getvalue()[len(first) :]
    assert redraw.startswith("\x1b[4F\x1b[J") and "0.7" in redraw  # moved up over the old table
    progress.say("e-003 Failed")
    assert "e-003 Failed\n" in stream.getvalue()

    plain = io.StringIO()
    p2 = Progress("eval_f1", "plain", plain)
    p2.update(views, "ignored")
    p2.event("e-001", "Succeeded eval_f1=0.5")
    assert plain.getvalue().endswith("e-001 Succeeded eval_f1=0.5\n") and "TRIAL" not in plain.getvalue()
    assert Progress("x", "auto", io.StringIO()).mode == "plain"  # not a terminal
