"""The Experiment model: typed accessors with Katib's defaults, rendering trials like Katib."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from kftune.errors import UserError
from kftune.katib.experiment import (
    JOB_SUCCESS,
    KUBEFLOW_JOB_SUCCESS,
    Experiment,
    expand_vars,
    load_documents,
    load_experiment,
    load_experiments,
)
from kftune.katib.kubeyaml import load_value

ROOT = Path(__file__).resolve().parents[2]

EXP = load_value(r"""
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata: {name: demo, namespace: team}
spec:
  objective:
    type: maximize
    objectiveMetricName: eval_f1
    additionalMetricNames: [eval_loss]
    metricStrategies: [{name: eval_loss, value: min}]
  algorithm:
    algorithmName: random
    algorithmSettings: [{name: random_state, value: "7"}]
  maxTrialCount: 4
  parameters:
    - {name: lr, parameterType: double, feasibleSpace: {min: "0.1", max: "0.2"}}
    - {name: note, parameterType: categorical, feasibleSpace: {list: [a, b]}}
  trialTemplate:
    primaryContainerName: main
    trialParameters:
      - {name: learningRate, reference: lr}
      - {name: note, reference: note}
      - {name: trialName, reference: "${trialSpec.Name}"}
      - {name: ns, reference: "${trialSpec.Namespace}"}
      - {name: kind, reference: "${trialSpec.Kind}"}
      - {name: api, reference: "${trialSpec.APIVersion}"}
      - {name: team, reference: "${trialSpec.Labels[team]}"}
      - {name: owner, reference: "${trialSpec.Annotations[owner]}"}
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      metadata:
        labels: {team: nlp}
        annotations: {owner: ana}
      spec:
        template:
          metadata:
            labels: {app: x}
          spec:
            containers:
              - name: side
                image: busybox:1
              - name: main
                image: trainer:1
                workingDir: /w/$(PARENT)
                command: [run]
                args: ["--lr=${trialParameters.learningRate}", --note, "${trialParameters.note}",
                       --out, "/o/${trialParameters.trialName}", "${trialParameters.ns}",
                       "${trialParameters.kind}/${trialParameters.api}", "${trialParameters.team}",
                       "${trialParameters.owner}", --parent, $(PARENT), $$(PARENT), $(NOPE), "${trialParameters.x}"]
                env:
                  - {name: A, value: "1"}
                  - {name: B, value: "$(A)-2"}
                  - name: PARENT
                    valueFrom: {fieldRef: {fieldPath: "metadata.labels['kftune.io/parent-trial']"}}
                  - name: POD
                    valueFrom: {fieldRef: {fieldPath: metadata.name}}
""")


def exp(data=None) -> Experiment:
    return Experiment(copy.deepcopy(data or EXP))


def test_accessors_apply_katib_defaults():
    e = exp()
    assert (e.name, e.namespace) == ("demo", "team")
    assert e.parallel_trial_count == 3 and e.max_trial_count == 4 and e.max_failed_trial_count is None
    assert e.resume_policy == "Never"
    assert e.objective.metric_names == ("eval_f1", "eval_loss")
    assert e.objective.metric_strategies == {"eval_f1": "max", "eval_loss": "min"}
    assert e.algorithm.name == "random" and e.algorithm.settings == {"random_state": "7"}
    assert e.early_stopping is None
    assert e.parameter_names == ["lr", "note"]
    tt = e.trial_template
    assert tt.primary_container_name == "main" and tt.kind == "Job" and tt.api_version == "batch/v1"
    assert tt.success_condition == JOB_SUCCESS and tt.primary_pod_labels == {}
    assert [p.meta_key for p in tt.trial_parameters][:3] == [None, None, "Name"]
    mc = e.metrics_collector
    assert mc.kind == "StdOut" and mc.metrics_format == ()


def test_kubeflow_job_defaults_and_file_collector_defaults():
    data = copy.deepcopy(EXP)
    data["spec"]["trialTemplate"]["trialSpec"]["kind"] = "PyTorchJob"
    data["spec"]["metricsCollectorSpec"] = {"collector": {"kind": "File"}}
    e = exp(data)
    assert e.trial_template.success_condition == KUBEFLOW_JOB_SUCCESS
    assert e.trial_template.primary_pod_labels == {"training.kubeflow.org/job-role": "master"}
    assert (e.metrics_collector.path, e.metrics_collector.file_format) == (
        "/var/log/katib/metrics.log",
        "TEXT",
    )


def test_render_trial_substitutes_values_and_metadata_as_katib_does():
    e = exp()
    job = e.render_trial({"lr": "0.15", "note": "b"}, "demo-abc")
    assert job["metadata"] == {
        "labels": {"team": "nlp"},
        "annotations": {"owner": "ana"},
        "name": "demo-abc",
        "namespace": "team",
    }
    args = job["spec"]["template"]["spec"]["containers"][1]["args"]
    assert args[:8] == ["--lr=0.15", "--note", "b", "--out", "/o/demo-abc", "team", "Job/batch/v1", "nlp"]
    assert args[8] == "ana"
    assert args[-1] == "${trialParameters.x}"  # no trialParameter: left as written
    assert EXP["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][1]["args"][
        0
    ] == ("--lr=${trialParameters.learningRate}")  # the experiment is not modified


def test_a_shell_looking_value_stays_one_argv_element():
    e = exp()
    argv = e.trial_argv({"lr": "0.1", "note": "1; rm -rf ~"}, "t0", labels={"kftune.io/parent-trial": "p"})
    assert argv[:4] == ["run", "--lr=0.1", "--note", "1; rm -rf ~"] and "p" in argv
    job = e.render_trial({"lr": "0.1", "note": "1; rm -rf ~"}, "t1", namespace="other")
    cmd = e.trial_command(job)
    assert cmd.argv[3] == "1; rm -rf ~"
    assert cmd.argv.count("1; rm -rf ~") == 1 and "rm" not in cmd.argv


def test_trial_command_resolves_downward_api_env_and_k8s_expansion():
    e = exp()
    job = e.render_trial({"lr": "0.1", "note": "a"}, "demo-t2")
    cmd = e.trial_command(job, labels={"kftune.io/parent-trial": "demo-t1"})
    assert cmd.env == {"A": "1", "B": "1-2", "PARENT": "demo-t1", "POD": "demo-t2"}
    assert cmd.argv[0] == "run" and cmd.image == "trainer:1" and cmd.working_dir == "/w/demo-t1"
    i = cmd.argv.index("--parent")
    assert cmd.argv[i + 1 : i + 4] == ["demo-t1", "$(PARENT)", "$(NOPE)"]
    fresh = e.trial_command(job)  # a new configuration: no parent label -> empty value
    assert fresh.argv[i + 1] == "" and fresh.env["PARENT"] == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "1"),
        ("x$(A)y$(B)", "x1y"),
        ("$$(A)", "$(A)"),
        ("$(MISSING)", "$(MISSING)"),
        ("$(A", "$(A"),
        ("$A", "$A"),
        ("$", "$"),
        ("a$$b", "a$b"),
    ],
)
def test_expand_vars_follows_kubernetes(text, expected):
    assert expand_vars(text, {"A": "1", "B": ""}) == expected


@pytest.mark.parametrize(
    ("assignments", "labels", "message"),
    [
        ({"lr": "0.1"}, None, "lacks"),
        ({"lr": "0.1", "note": "a", "extra": "1"}, None, "not referenced"),
        ({"lr": "0.1", "note": "a"}, {}, "no key 'team'"),
    ],
)
def test_render_trial_fails_where_katib_fails(assignments, labels, message):
    data = copy.deepcopy(EXP)
    if labels is not None:
        data["spec"]["trialTemplate"]["trialSpec"]["metadata"]["labels"] = labels
    with pytest.raises(UserError, match=message):
        exp(data).render_trial(assignments, "t")


def test_pytorchjob_primary_container_is_the_masters():
    e = load_experiment(ROOT / "katib" / "mlm-perplexity.yaml")
    job = e.render_trial({"learning_rate": "1e-4", "warmup_ratio": "0.05", "weight_decay": "0"}, "mlm-1")
    cmd = e.trial_command(job)
    assert cmd.argv[0] == "torchrun" and cmd.argv[cmd.argv.index("train") - 1] == "kftune"
    assert cmd.argv[cmd.argv.index("--output-dir") + 1] == "/cache/trials/mlm-perplexity/mlm-1"


def test_load_documents_reads_directories_and_keeps_files(tmp_path):
    (tmp_path / "a.yaml").write_text("kind: ConfigMap\n---\nkind: Experiment\nmetadata: {name: a}\n")
    (tmp_path / "b.yml").write_text("kind: Experiment\nmetadata: {name: b}\n")
    (tmp_path / "notes.txt").write_text("kind: Experiment\n")
    docs = load_documents(tmp_path)
    assert [(d.path.name, d.index, d.start_line) for d in docs] == [
        ("a.yaml", 0, 1),
        ("a.yaml", 1, 3),
        ("b.yml", 0, 1),
    ]
    assert [e.name for e in load_experiments(tmp_path)] == ["a", "b"]
    with pytest.raises(UserError, match="holds 2 Experiments"):
        load_experiment(tmp_path)


def test_load_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_documents(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Experiment\nspec: [1,\n")
    with pytest.raises(UserError, match=r"bad.yaml:\d+: YAML syntax error"):
        load_experiment(bad)
    (tmp_path / "cm.yaml").write_text("kind: ConfigMap\n")
    with pytest.raises(UserError, match="no kind: Experiment"):
        load_experiment(tmp_path / "cm.yaml")
