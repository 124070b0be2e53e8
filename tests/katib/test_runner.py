"""``kftune katib run --local`` end to end with scripted trials (``fake_trial.py``): rendering,
collection, statuses, early stopping, ASHA promotions with resume, the record and the output."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml
from runner_helpers import FAKE_TRIAL, experiment_yaml, write_experiment

from kftune.cli import main as kftune_main
from kftune.katib.experiment import load_experiment
from kftune.katib.runner import LocalRunner, render_command
from kftune.katib.runner_overrides import Overrides
from kftune.katib.runner_plan import RunOptions, prepare
from kftune.katib.runner_progress import Progress
from kftune.katib.store import Store

ASHA_PARAMS = """
    - name: lr
      parameterType: double
      feasibleSpace: {min: "0.00001", max: "0.1", distribution: logUniform}
    - name: epochs
      parameterType: int
      feasibleSpace: {min: "1", max: "4"}"""
ASHA_TRIAL_PARAMS = """
      - {name: lr, reference: lr}
      - {name: epochs, reference: epochs}"""
PARENT_ENV = """
                  - name: PARENT
                    valueFrom:
                      fieldRef:
                        fieldPath: metadata.labels['kftune.io/parent-trial']"""
MODE_PARAMS = """
    - name: mode
      parameterType: categorical
      feasibleSpace: {list: [ok, fail, nan, quiet]}"""


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("KFTUNE_HOME", str(tmp_path / "home"))


def run_local(tmp_path: Path, text: str, *args: str, capsys, work: str = "w") -> tuple[int, str, str, Path]:
    path = write_experiment(tmp_path, text)
    work_dir = tmp_path / work
    rc = kftune_main(
        ["katib", "run", str(path), "--local", "--work-dir", str(work_dir), "--progress", "plain", *args]
    )
    out, err = capsys.readouterr()
    return rc, out, err, work_dir


def trials_json(work_dir: Path, capsys) -> list[dict]:
    assert kftune_main(["katib", "trials", str(work_dir), "-o", "json"]) == 0
    return json.loads(capsys.readouterr().out)["items"]


def test_random_search_prints_the_optimal_trial_and_records_everything(tmp_path, capsys):
    rc, out, err, work = run_local(tmp_path, experiment_yaml(max_trials=4, parallel=2), capsys=capsys)
    assert rc == 0, err
    optimal = yaml.safe_load(out)["currentOptimalTrial"]
    result = json.loads((work / "result.json").read_text())
    assert result["currentOptimalTrial"] == optimal
    assert result["condition"]["reason"] == "ExperimentMaxTrialsReached"
    assert result["trials"]["Succeeded"] == 4
    items = trials_json(work, capsys)
    assert [t["name"] for t in items] == ["fake-001", "fake-002", "fake-003", "fake-004"]
    best = max(items, key=lambda t: float(t["objective"]["value"]))
    assert optimal["bestTrialName"] == best["name"]
    assert optimal["parameterAssignments"] == best["parameterAssignments"]
    f1 = optimal["observation"]["metrics"][0]
    assert f1["name"] == "eval_f1" and f1["max"] == f1["latest"] and float(f1["min"]) < float(f1["max"])
    assert all(
        isinstance(m[k], str) for m in optimal["observation"]["metrics"] for k in ("min", "max", "latest")
    )
    # the trial ran in the mapped workingDir and wrote to its mapped output dir
    t = items[0]
    assert t["workingDir"] == str(work / "trials")
    assert t["argv"][:2] == [__import__("sys").executable, str(FAKE_TRIAL)]
    assert (work / "trials" / t["name"] / "metrics.json").is_file()
    assert "epoch=2 eval_f1=" in Path(t["logs"]["stdout"]).read_text()
    assert t["labels"] == {"katib.kubeflow.org/experiment": "fake"}
    # every event is in the store
    db = sqlite3.connect(work / "experiment.db")
    kinds = [k for (k,) in db.execute("SELECT kind FROM events WHERE trial = 'fake-001' ORDER BY id")]
    assert kinds == ["created", "started", "metrics", "metrics", "finished"]
    assert "overrides" not in err
    table = capsys.readouterr()
    assert kftune_main(["katib", "trials", str(work)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "STATUS", "EVAL_F1", "AGE", "PARAMS"]
    assert lines[1].split()[:3] == ["fake-001", "Succeeded", "True"] and table is not None


def test_failures_become_failed_trials_and_the_search_goes_on(tmp_path, capsys):
    text = experiment_yaml(
        algorithm="grid",
        settings={},
        parameters=MODE_PARAMS,
        trial_parameters="\n      - {name: mode, reference: mode}",
        args=["--mode", "${trialParameters.mode}", "--epochs", "1", "--noise"],
        max_trials=4,
        parallel=1,
    )
    rc, _, err, work = run_local(tmp_path, text, capsys=capsys)
    assert rc == 0, err
    by_mode = {t["parameterAssignments"][0]["value"]: t for t in trials_json(work, capsys)}
    assert by_mode["ok"]["condition"] == "Succeeded"
    fail = by_mode["fail"]
    assert (fail["condition"], fail["reason"], fail["exitCode"]) == ("Failed", "TrialFailed", 1)
    assert "RuntimeError: boom at epoch 1" in fail["message"] and fail["observation"] is None
    nan = by_mode["nan"]
    assert (nan["condition"], nan["reason"], nan["exitCode"]) == ("Failed", "NanLoss", 3)
    assert "the loss became nan" in nan["message"]
    assert by_mode["quiet"]["condition"] == "MetricsUnavailable"
    assert "RuntimeError: boom at epoch 1" in err  # the last stderr lines are shown


def test_max_failed_trial_count_fails_the_experiment(tmp_path, capsys):
    text = experiment_yaml(
        args=["--lr", "${trialParameters.lr}", "--mode", "fail"], max_trials=10, parallel=1, max_failed=2
    )
    rc, _, err, work = run_local(tmp_path, text, capsys=capsys)
    assert rc == 1
    result = json.loads((work / "result.json").read_text())
    assert result["condition"]["type"] == "Failed" and result["trials"]["Failed"] == 2
    assert result["currentOptimalTrial"] is None


def test_goal_reached_stops_creating_trials(tmp_path, capsys):
    # every trial scores > 0.01 at epoch 2: the first finished trial reaches the goal
    text = experiment_yaml(
        parameters="""
    - name: lr
      parameterType: double
      feasibleSpace: {min: "0.0005", max: "0.002"}""",
        goal=0.01,
        max_trials=20,
        parallel=1,
    )
    rc, _, err, work = run_local(tmp_path, text, capsys=capsys)
    assert rc == 0
    result = json.loads((work / "result.json").read_text())
    assert result["condition"]["reason"] == "ExperimentGoalReached"
    assert sum(result["trials"].values()) == 1


def test_medianstop_stops_a_running_trial_with_sigterm(tmp_path, capsys):
    text = experiment_yaml(
        algorithm="grid",
        settings={},
        parameters="""
    - name: lr
      parameterType: discrete
      feasibleSpace: {list: ["0.001", "0.0011", "0.00001"]}""",
        args=["--lr", "${trialParameters.lr}", "--epochs", "6", "--sleep-if-bad", "0.3"],
        early_stopping="""  earlyStopping:
    algorithmName: medianstop
    algorithmSettings:
      - {name: min_trials_required, value: "2"}
      - {name: start_step, value: "2"}""",
        max_trials=3,
        parallel=1,
    )
    rc, _, err, work = run_local(tmp_path, text, "--grace-period", "5", capsys=capsys)
    assert rc == 0, err
    items = {t["parameterAssignments"][0]["value"]: t for t in trials_json(work, capsys)}
    assert items["0.001"]["condition"] == items["0.0011"]["condition"] == "Succeeded"
    stopped = items["0.00001"]
    assert stopped["condition"] == "EarlyStopped" and stopped["exitCode"] == 143
    reports = Path(stopped["logs"]["stdout"]).read_text().count("eval_f1=")
    assert 2 <= reports < 6
    assert stopped["observation"] is not None  # early-stopped trials keep what they reported
    store = Store.open(work / "experiment.db")
    created = [e for e in store.events("fake-003") if e["kind"] == "created"][0]["data"]
    assert created["stop_rule"]["comparison"] == "less" and created["stop_rule"]["start_step"] == 2
    assert [e["kind"] for e in store.events("fake-001") if e["kind"] == "created"][0] == "created"
    assert store.trial("fake-001").stop_rule is None  # no rule before 2 trials had succeeded


@pytest.mark.parametrize(
    "algorithm, settings, max_trials",
    [
        # maxTrialCount is the budget (the Katib way): a new configuration whenever none is promotable
        ("asha", {"reduction_factor": "2", "sampler": "random"}, 10),
        # BOHB with budgets 1, 2, 4: iterations with first stages of 4, 2 and 3 trials
        ("bohb", {"reduction_factor": "2", "num_iterations": "3"}, 9),
    ],
)
def test_promotions_resume_from_the_parents_local_output(tmp_path, capsys, algorithm, settings, max_trials):
    text = experiment_yaml(
        "asha",
        algorithm=algorithm,
        settings={"resource_name": "epochs", **settings},
        parameters=ASHA_PARAMS,
        trial_parameters=ASHA_TRIAL_PARAMS,
        args=[
            "--lr",
            "${trialParameters.lr}",
            "--epochs",
            "${trialParameters.epochs}",
            "--resume-from=$(PARENT)",
        ],
        env=PARENT_ENV,
        max_trials=max_trials,
        parallel=2,
    )
    rc, _, err, work = run_local(tmp_path, text, capsys=capsys)
    assert rc == 0, err
    items = trials_json(work, capsys)
    result = json.loads((work / "result.json").read_text())
    assert result["condition"]["reason"] == "ExperimentMaxTrialsReached" and len(items) == max_trials
    promoted = [t for t in items if t["labels"]["kftune.io/parent-trial"]]
    assert promoted, f"{algorithm} promoted nothing"
    by_name = {t["name"]: t for t in items}
    for t in promoted:
        parent = by_name[t["labels"]["kftune.io/parent-trial"]]
        assert (
            f"--resume-from={parent['name']}" in t["argv"]
        )  # the label reached argv through the downward API
        assert t["workingDir"] == str(work / "trials")  # ... relative to workingDir: the parent's output dir
        parent_epochs = int(dict((p["name"], p["value"]) for p in parent["parameterAssignments"])["epochs"])
        out = Path(t["logs"]["stdout"]).read_text()
        assert f"epoch={parent_epochs} " not in out and f"epoch={parent_epochs + 1} " in out
        assert f"resuming from epoch {parent_epochs}" in Path(t["logs"]["stderr"]).read_text()
    fresh = [t for t in items if not t["labels"]["kftune.io/parent-trial"]]
    assert len(fresh) >= 3 and all("--resume-from=" in t["argv"] for t in fresh)
    # the run exported in the shapes of docs/contracts.md (tune/trials.json): epochs trained per trial
    from kftune.katib.runner_export import tune_trials

    exported = {t["name"]: t for t in tune_trials(work)}
    for t in promoted:
        parent = by_name[t["labels"]["kftune.io/parent-trial"]]
        budget = {
            p["name"]: int(float(p["value"])) for p in t["parameterAssignments"] if p["name"] == "epochs"
        }
        parent_budget = int(next(p["value"] for p in parent["parameterAssignments"] if p["name"] == "epochs"))
        curve = exported[t["name"]]["curve"]
        assert [c[0] for c in curve] == list(range(parent_budget + 1, budget["epochs"] + 1))
        assert exported[t["name"]]["epochs"] == budget["epochs"] - parent_budget


def test_a_shell_looking_value_is_one_argv_element_and_runs_no_shell(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    record = tmp_path / "record.json"
    text = experiment_yaml(
        parameters="""
    - name: note
      parameterType: categorical
      feasibleSpace: {list: [a, b]}""",
        trial_parameters="\n      - {name: note, reference: note}",
        args=["--note", "${trialParameters.note}", "--record", str(record)],
        max_trials=1,
        parallel=1,
    )
    path = write_experiment(tmp_path, text)
    plan, store = prepare(RunOptions(path, tmp_path / "w", progress="none"), lambda s: None)
    evil = f"1; touch {marker}; $(touch {marker}) `touch {marker}`"
    cmd = render_command(plan, {"note": evil}, "fake-001", {})
    assert cmd.argv[cmd.argv.index("--note") + 1] == evil
    runner = LocalRunner(plan, store, Progress("eval_f1", "none"))
    runner._new_trial({"note": evil}, {}, None, 0.0)  # an assignment no validator would let through
    while runner._running():
        runner._wait(0.2)
    store.close()
    argv = json.loads(record.read_text())["argv"]
    assert argv[argv.index("--note") + 1] == evil
    assert not marker.exists()


def test_file_collector_text_and_json(tmp_path, capsys):
    for fmt in ("TEXT", "JSON"):
        collector = f"""  metricsCollectorSpec:
    collector: {{kind: File}}
    source:
      fileSystemPath: {{path: /var/log/katib/metrics.log, kind: File, format: {fmt}}}"""
        args = [
            "--lr",
            "${trialParameters.lr}",
            "--epochs",
            "2",
            "--metrics-file",
            "/var/log/katib/metrics.log",
        ]
        text = experiment_yaml(
            args=args + (["--json"] if fmt == "JSON" else []), collector=collector, max_trials=1, parallel=1
        )
        rc, out, err, work = run_local(tmp_path, text, capsys=capsys, work=f"w-{fmt}")
        assert rc == 0, err
        metrics = {m["name"]: m for m in yaml.safe_load(out)["currentOptimalTrial"]["observation"]["metrics"]}
        assert (work / "metrics" / "fake-001" / "metrics.log").is_file()
        assert metrics["eval_f1"]["latest"] != "unavailable"
        # JSON: Katib records string values only (eval_loss is written as a number)
        assert (metrics["eval_loss"]["latest"] == "unavailable") == (fmt == "JSON")


def test_validation_errors_stop_before_anything_runs(tmp_path, capsys):
    text = experiment_yaml().replace("parallelTrialCount: 2", "parallelTrialCount: -1")
    rc, _, err, work = run_local(tmp_path, text, capsys=capsys)
    assert rc == 2
    assert "parallelTrialCount" in err and "nothing was run" in err
    assert not (work / "experiment.db").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (("kind: StdOut", "kind: TensorFlowEvent"), "metrics collector TensorFlowEvent cannot run locally"),
        (
            ("apiVersion: batch/v1\n      kind: Job", "apiVersion: kubeflow.org/v1\n      kind: TFJob"),
            "TFJob",
        ),
        (("command: [python,", "command: [no-such-command-here,"), "not on PATH"),
    ],
)
def test_what_cannot_run_locally_is_said_before_starting(tmp_path, capsys, change, message):
    collector = """  metricsCollectorSpec:
    collector: {kind: StdOut}"""
    text = experiment_yaml(collector=collector)
    old, new = change
    assert old in text
    rc, _, err, work = run_local(tmp_path, text.replace(old, new), capsys=capsys)
    assert rc == 2 and message in err
    assert not list((work / "logs").glob("*")) if (work / "logs").exists() else True


def test_overrides_are_printed_and_validated(tmp_path, capsys):
    text = experiment_yaml(max_trials=9)
    rc, _, err, work = run_local(
        tmp_path,
        text,
        "--max-trial-count",
        "1",
        "--param",
        "lr=0.0009:0.0011",
        "--set-arg",
        "--epochs=3",
        "--set-env",
        "EXTRA=1",
        capsys=capsys,
    )
    assert rc == 0, err
    assert "spec.maxTrialCount: 9 -> 1" in err and "argument --epochs: 2 -> 3" in err
    item = trials_json(work, capsys)[0]
    assert 0.0009 <= float(item["parameterAssignments"][0]["value"]) <= 0.0011
    assert "epoch=3 " in Path(item["logs"]["stdout"]).read_text()
    # an override that breaks the experiment is refused like a bad file
    rc, _, err, _ = run_local(tmp_path, text, "--param", "lr=0.1:0.01", capsys=capsys, work="w2")
    assert rc == 2 and "after the overrides" in err


def test_katib_run_requires_local_and_a_fresh_work_dir(tmp_path, capsys):
    path = write_experiment(tmp_path, experiment_yaml(max_trials=1, parallel=1))
    assert kftune_main(["katib", "run", str(path)]) == 2
    assert "--local" in capsys.readouterr().err
    rc, _, _, work = run_local(tmp_path, experiment_yaml(max_trials=1, parallel=1), capsys=capsys)
    assert rc == 0
    rc, _, err, _ = run_local(tmp_path, experiment_yaml(max_trials=1, parallel=1), capsys=capsys)
    assert rc == 2 and "--resume" in err
    # resuming a finished run changes nothing and prints the same optimum
    rc, out, err, _ = run_local(
        tmp_path, experiment_yaml(max_trials=1, parallel=1), "--resume", capsys=capsys
    )
    assert rc == 0 and "bestTrialName: fake-001" in out
    # a larger --max-trial-count continues a finished search (Katib lets a user raise it)
    rc, out, err, _ = run_local(
        tmp_path,
        experiment_yaml(max_trials=1, parallel=1),
        "--resume",
        "--max-trial-count",
        "2",
        capsys=capsys,
    )
    assert rc == 0 and [t["name"] for t in trials_json(work, capsys)] == ["fake-001", "fake-002"]
    # ... but a different experiment is refused
    rc, _, err, _ = run_local(
        tmp_path,
        experiment_yaml(max_trials=1, parallel=1, args=["--lr", "${trialParameters.lr}", "--epochs", "3"]),
        "--resume",
        capsys=capsys,
    )
    assert rc == 2 and "differs from the one being resumed" in err


def test_tiny_model_range_override_against_the_real_asha_file(tmp_path):
    exp = load_experiment(Path(__file__).resolve().parents[2] / "katib" / "ner-asha.yaml")
    raw, _ = Overrides(params=["learning_rate=1e-4:3e-3"]).apply(exp.raw)
    assert raw["spec"]["parameters"][0]["feasibleSpace"]["min"] == "1e-4"


def test_dry_run_renders_every_katib_file_locally_and_records_nothing(tmp_path, capsys):
    root = Path(__file__).resolve().parents[2] / "katib"
    for path in sorted(root.glob("*.yaml")):
        work = tmp_path / path.stem
        rc = kftune_main(
            [
                "katib",
                "run",
                str(path),
                "--local",
                "--dry-run",
                "--work-dir",
                str(work),
                "--set-arg",
                "--model=tiny",
            ]
        )
        out, err = capsys.readouterr()
        assert rc == 0, f"{path.name}: {err}"
        assert not (work / "experiment.db").exists()
        command = out.splitlines()[-1]
        assert " -m kftune train " in command or " -m torch.distributed.run " in command, out
        assert "--model tiny" in command and f"{work}/trials/" in command  # output dir mapped per trial
        if path.stem in ("ner-asha", "ner-bohb"):
            assert out.splitlines()[1] == f"cd {work}/trials" and "--resume-from=" in command
        if path.stem == "mlm-perplexity":
            assert "--nnodes=1" in command and "PyTorchJob" in err
