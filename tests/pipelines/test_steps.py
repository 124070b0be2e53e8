"""The work behind the components, without KFP: argv editing, the tune step's cluster mode against an
in-memory Kubernetes API, the run-directory layout. Fast."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from kftune.errors import UserError
from kftune.steps.argv import drop_flag, flag_value, set_flag, train_args
from kftune.steps.retrain import retrain_argv
from kftune.steps.rundir import RunDir, resolve_run_dir, write_json
from kftune.steps.tune import (
    TuneFailed,
    TuneSettings,
    cluster_experiment,
    cluster_name,
    config_tag,
    delete_experiment,
    tune,
)

ROOT = Path(__file__).resolve().parents[2]


def test_argv_editing_both_flag_forms():
    argv = ["--seed", "42", "--resume-from=parent", "--output-dir", "/x", "--keep", "both", "--log-model"]
    assert flag_value(argv, "--resume-from") == "parent" and flag_value(argv, "--seed") == "42"
    assert flag_value(argv, "--log-model") == "" and flag_value(argv, "--nope") is None
    out = drop_flag(argv, "--resume-from")
    assert "--resume-from=parent" not in out and out[:2] == ["--seed", "42"]
    out = set_flag(set_flag(out, "--seed", "3"), "--keep", "best")
    assert out == ["--seed", "3", "--output-dir", "/x", "--keep", "best", "--log-model"]
    assert set_flag(["--a=1"], "--b", "2") == ["--a=1", "--b", "2"]
    assert drop_flag(["--resume-from", "--seed", "1"], "--resume-from") == ["--seed", "1"]  # empty value


def test_train_args_of_every_trial_command_form():
    tail = ["--task", "ner"]
    assert train_args(["kftune", "train", *tail]) == tail
    assert train_args(["/usr/bin/python", "-m", "kftune", "train", *tail]) == tail
    assert (
        train_args(["python", "-m", "torch.distributed.run", "--nnodes=1", "-m", "kftune", "train", *tail])
        == tail
    )
    with pytest.raises(ValueError):
        train_args(["python", "train.py"])


def test_run_dir_and_cluster_names():
    assert resolve_run_dir("/tmp/x", "job") == "/tmp/x"
    assert resolve_run_dir("", "2f1c-AB_9") == "/cache/runs/2f1c-ab-9"
    name = cluster_name("ner-asha", "5c4e9f0a-1111-2222", config_tag("original", "uncased-cased-mix"))
    assert name == "ner-asha-orig-uncased-cased-mix-5c4e9f0a" and len(name) <= 40
    long = cluster_name("x" * 60, "abc", "tag")
    assert len(long) <= 40 and long.endswith("-abc")
    assert cluster_name("ner-asha", "j1") != cluster_name("ner-asha", "j1", "simp-cased")


def _best_dir(tmp_path: Path) -> RunDir:
    rd = RunDir.at(tmp_path / "run")
    write_json(
        rd.best_json,
        {
            "bestTrialName": "ner-asha-007",
            "experiment": "ner-asha",
            "argv": ["python", "-m", "kftune", "train", "--task", "ner", "--data", "demo:ner", "--model", "tiny",
                     "--num-epochs", "3", "--schedule-epochs", "9", "--resume-from=ner-asha-002", "--seed", "42",
                     "--output-dir", "/cache/trials/ner-asha/ner-asha-007", "--experiment", "ner-asha",
                     "--trial", "ner-asha-007", "--keep", "both"],
        },
    )  # fmt: skip
    return rd


def test_retrain_runs_the_best_trials_own_arguments_with_another_seed(tmp_path):
    rd = _best_dir(tmp_path)
    args = retrain_argv(rd, 5)
    assert flag_value(args, "--seed") == "5"
    assert flag_value(args, "--output-dir") == str(rd.path / "retrain" / "seed-5")
    assert flag_value(args, "--resume-from") is None  # a promotion's parent is not retrained from
    assert flag_value(args, "--num-epochs") == "3" and flag_value(args, "--schedule-epochs") == "9"
    assert flag_value(args, "--keep") == "best" and flag_value(args, "--trial") == "seed-5"
    assert flag_value(args, "--experiment") == "ner-asha-retrain"
    other = retrain_argv(rd, 5, model="minilm", other="minilm")
    assert flag_value(other, "--model") == "minilm"
    assert flag_value(other, "--output-dir") == str(rd.path / "others" / "minilm" / "seed-5")


# ----------------------------------------------------------------------------- cluster mode


EXPERIMENT = (ROOT / "katib" / "ner-asha.yaml").read_text()


class FakeCustomObjects:
    """An in-memory ``CustomObjectsApi`` for Experiments and Trials; Katib's controller is played
    by ``finish`` (the status the experiment reaches on its first read)."""

    def __init__(self, finish: dict):
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.finish = finish
        self.calls: list[tuple] = []

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.calls.append(("create", plural, namespace, body["metadata"]["name"]))
        key = (namespace, plural, body["metadata"]["name"])
        if key in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        self.objects[key] = copy.deepcopy(body)
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.calls.append(("get", plural, namespace, name))
        obj = self.objects.get((namespace, plural, name))
        if obj is None:
            raise ApiException(status=404, reason="NotFound")
        if plural == "experiments" and "status" not in obj:
            obj["status"] = {
                "conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}]
            }
            return copy.deepcopy(obj)  # first read: still running
        if plural == "experiments":
            obj["status"] = self.finish["status"]
            for trial in self.finish.get("trials", []):
                t = copy.deepcopy(trial)
                t["metadata"]["labels"] = {
                    **t["metadata"].get("labels", {}),
                    "katib.kubeflow.org/experiment": name,
                }
                self.objects[(namespace, "trials", t["metadata"]["name"])] = t
        return copy.deepcopy(obj)

    def list_namespaced_custom_object(self, group, version, namespace, plural, label_selector=""):
        key, _, value = label_selector.partition("=")
        items = [o for (ns, p, _), o in self.objects.items()
                 if ns == namespace and p == plural and (o["metadata"].get("labels") or {}).get(key) == value]  # fmt: skip
        return {"items": copy.deepcopy(items)}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.calls.append(("delete", plural, namespace, name))
        if self.objects.pop((namespace, plural, name), None) is None:
            raise ApiException(status=404, reason="NotFound")
        return {}


class FakeDBManager:
    """Katib's DB manager as a real gRPC server on 127.0.0.1 (``GetObservationLog`` only), with
    the MySQL backend's semantics: rows of the trial, filtered by metric name, in time order."""

    def __init__(self, logs: dict[str, list[tuple[str, str]]]):
        from concurrent import futures

        import grpc

        from kftune.katib.dbmanager import add_db_manager_servicer

        self.logs = logs
        self.asked: list[tuple[str, str]] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        add_db_manager_servicer(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def GetObservationLog(self, request, context):  # noqa: N802 - the gRPC method
        from kftune.katib import proto

        api = proto.pb2()
        self.asked.append((request.trial_name, request.metric_name))
        rows = [
            (m, v)
            for m, v in self.logs.get(request.trial_name, [])
            if not request.metric_name or m == request.metric_name
        ]
        return api.GetObservationLogReply(observation_log=api.ObservationLog(metric_logs=[
            api.MetricLog(time_stamp=f"2026-11-23T10:00:{i:02d}Z", metric=api.Metric(name=m, value=v))
            for i, (m, v) in enumerate(rows)
        ]))  # fmt: skip

    def stop(self):
        self.server.stop(0)


def _trial(name: str, f1: float, lr: str, epochs: str = "3", parent: str = "") -> dict:
    return {
        "metadata": {"name": name, **({"labels": {"kftune.io/parent-trial": parent}} if parent else {})},
        "spec": {
            "parameterAssignments": [{"name": "learning_rate", "value": lr}, {"name": "num_epochs", "value": epochs}],
            "primaryContainerName": "trainer",
            "runSpec": {"spec": {"template": {"spec": {"containers": [
                {"name": "trainer", "command": ["kftune", "train"],
                 "args": ["--task", "ner", "--learning-rate", lr, "--output-dir", f"/cache/trials/x/{name}"]}]}}}},
        },
        "status": {
            "conditions": [{"type": "Succeeded", "status": "True", "reason": "TrialSucceeded"}],
            "observation": {"metrics": [{"name": "eval_f1", "min": "0.5", "max": str(f1), "latest": str(f1)}]},
        },
    }  # fmt: skip


def test_cluster_tune_creates_waits_reads_best_and_trials(tmp_path):
    best = {"bestTrialName": "t-2", "parameterAssignments": [{"name": "learning_rate", "value": "3e-5"}],
            "observation": {"metrics": [{"name": "eval_f1", "max": "0.91", "min": "0.5", "latest": "0.91"}]}}  # fmt: skip
    api = FakeCustomObjects(
        {
            "status": {"conditions": [{"type": "Succeeded", "status": "True", "reason": "ExperimentMaxTrialsReached"}],
                       "currentOptimalTrial": best},
            "trials": [_trial("t-1", 0.8, "1e-5", "1"), _trial("t-2", 0.91, "3e-5", "3", parent="t-1")],
        }
    )  # fmt: skip
    db = FakeDBManager({
        "t-1": [("eval_f1", "0.8"), ("eval_loss", "0.6")],
        "t-2": [("eval_f1", "0.85"), ("eval_loss", "0.4"), ("eval_f1", "unavailable"), ("eval_f1", "0.91")],
    })  # fmt: skip
    settings = TuneSettings(mode="cluster", experiment=EXPERIMENT, namespace="team-a", max_trial_count=10,
                            parallel_trial_count=2, max_failed_trial_count=3, train_variant="cased", poll_s=0.01,
                            db_manager=f"127.0.0.1:{db.port}")  # fmt: skip
    try:
        out = tune(tmp_path / "run", settings, job_id="0d3c2b1a-9999", api=api)
    finally:
        db.stop()
    name = "ner-asha-cased-0d3c2b1a"
    assert api.calls[0] == ("create", "experiments", "team-a", name)
    created = json.loads((tmp_path / "run" / "tune" / "experiment.json").read_text())
    assert yaml.safe_load((tmp_path / "run" / "tune" / "experiment.yaml").read_text()) == created
    assert created["spec"]["maxTrialCount"] == 10 and created["spec"]["parallelTrialCount"] == 2
    assert created["metadata"]["labels"]["kftune.io/pipeline-run"] == "0d3c2b1a-9999"
    args = created["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert flag_value(args, "--train-variant") == "cased" and flag_value(args, "--eval-variant") == "cased"
    assert out["bestTrialName"] == "t-2" and out["objective"] == {"type": "maximize", "metric": "eval_f1"}
    assert out["argv"][:2] == ["kftune", "train"] and flag_value(out["argv"], "--learning-rate") == "3e-5"
    trials = json.loads((tmp_path / "run" / "tune" / "trials.json").read_text())
    assert {t["name"]: t["metrics"]["eval_f1"] for t in trials} == {"t-1": 0.8, "t-2": 0.91}
    assert all(t["status"] == "Succeeded" for t in trials)
    # curves from the DB manager, objective only; t-2 resumed t-1 (1 epoch) and trained epochs 2-3 itself
    by_name = {t["name"]: t for t in trials}
    assert sorted(db.asked) == [("t-1", "eval_f1"), ("t-2", "eval_f1")]
    assert by_name["t-1"]["curve"] == [[1, 0.8]] and by_name["t-1"]["epochs"] == 1
    assert by_name["t-2"]["curve"] == [[2, 0.85], [3, 0.91]] and by_name["t-2"]["epochs"] == 2
    # the exit handler deletes it; a second delete finds nothing and says so
    assert delete_experiment("cluster", name, "team-a", api=api) == f"deleted experiment team-a/{name}"
    assert "not found" in delete_experiment("cluster", name, "team-a", api=api)
    assert delete_experiment("local", name, "team-a", api=api).startswith("local mode")


@pytest.mark.parametrize(("env", "expected"), [(None, "1800"), ("600", "600"), ("0", "0"), ("90.5", "90.5")])
def test_the_installs_stall_timeout_reaches_the_search_trials(monkeypatch, env, expected):
    """The settings ConfigMap's KFTUNE_STALL_TIMEOUT_S (chart: stallTimeoutSeconds) replaces the
    YAML's value in every trial's environment; without it the YAML's own value stays."""
    if env is None:
        monkeypatch.delenv("KFTUNE_STALL_TIMEOUT_S", raising=False)
    else:
        monkeypatch.setenv("KFTUNE_STALL_TIMEOUT_S", env)
    raw = cluster_experiment(EXPERIMENT, TuneSettings(mode="cluster"), "0d3c2b1a")
    container = raw["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    values = [e.get("value") for e in container["env"] if e["name"] == "KFTUNE_STALL_TIMEOUT_S"]
    assert values == [expected]


def test_a_bad_stall_timeout_in_the_settings_fails_the_tune_step(monkeypatch):
    monkeypatch.setenv("KFTUNE_STALL_TIMEOUT_S", "soon")
    with pytest.raises(UserError, match="KFTUNE_STALL_TIMEOUT_S='soon'"):
        cluster_experiment(EXPERIMENT, TuneSettings(mode="cluster"), "0d3c2b1a")


def test_cluster_tune_without_the_db_manager_warns_and_keeps_the_trials(tmp_path, capsys):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    best = {"bestTrialName": "t-1", "parameterAssignments": [{"name": "learning_rate", "value": "1e-5"}],
            "observation": {"metrics": [{"name": "eval_f1", "max": "0.8", "min": "0.5", "latest": "0.8"}]}}  # fmt: skip
    api = FakeCustomObjects(
        {"status": {"conditions": [{"type": "Succeeded", "status": "True"}], "currentOptimalTrial": best},
         "trials": [_trial("t-1", 0.8, "1e-5", "1"), _trial("t-2", 0.7, "3e-5", "3", parent="t-1")]}
    )  # fmt: skip
    settings = TuneSettings(
        mode="cluster", experiment=EXPERIMENT, poll_s=0.01, db_manager=f"127.0.0.1:{port}"
    )
    out = tune(tmp_path / "run", settings, job_id="abcdef12", api=api)
    assert out["bestTrialName"] == "t-1"
    trials = {t["name"]: t for t in json.loads((tmp_path / "run" / "tune" / "trials.json").read_text())}
    assert trials["t-1"]["curve"] == [] and trials["t-1"]["epochs"] == 1
    assert trials["t-2"]["epochs"] == 2  # its own epochs: 3 minus its parent's 1
    err = capsys.readouterr().err
    assert "warning: no learning curves" in err and f"127.0.0.1:{port}" in err and "UNAVAILABLE" in err
    # db_manager "" does not ask at all
    settings = TuneSettings(mode="cluster", experiment=EXPERIMENT, poll_s=0.01, db_manager="")
    tune(tmp_path / "run2", settings, job_id="abcdef13", api=FakeCustomObjects(api.finish))
    assert "no learning curves" not in capsys.readouterr().err


def test_cluster_tune_failed_experiment_fails_the_step_with_katibs_reason(tmp_path):
    api = FakeCustomObjects(
        {"status": {"conditions": [
            {"type": "Running", "status": "False"},
            {"type": "Failed", "status": "True", "reason": "ExperimentMaxFailedTrialsReached",
             "message": "Experiment has failed because max failed count has reached"}]}}
    )  # fmt: skip
    settings = TuneSettings(mode="cluster", experiment=EXPERIMENT, poll_s=0.01)
    with pytest.raises(TuneFailed) as exc:
        tune(tmp_path / "run", settings, job_id="abcdef12", api=api)
    assert "ExperimentMaxFailedTrialsReached" in str(exc.value) and "ner-asha-abcdef12" in str(exc.value)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "failed" and info["failed_step"] == "tune"
    assert "max failed count" in info["error"]


def test_bad_mode_and_missing_experiment_are_user_errors(tmp_path):
    from kftune.errors import UserError

    with pytest.raises(UserError, match="choose local or cluster"):
        tune(tmp_path, TuneSettings(mode="k8s", experiment=EXPERIMENT))
    with pytest.raises(UserError, match="neither YAML text nor a file"):
        tune(tmp_path, TuneSettings(mode="local", experiment="katib/nope.yaml"))


def test_prepare_skips_when_the_experiment_file_names_data_and_model(capsys):
    from kftune.steps.publish import prepare

    assert prepare("ner", "", "")["skipped"] is True
    assert "nothing to build" in capsys.readouterr().out
