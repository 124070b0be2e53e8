"""Each validator rule with a valid and an invalid case, built by mutating one good Experiment.

A case names the rule, how to change the good experiment, and what the rule must report:
``"error"``, ``"warning"`` or ``None`` (valid: the rule reports nothing). The good experiment
itself has no finding at all. ``test_every_rule_has_valid_and_invalid_cases`` keeps this table
complete as rules are added.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from kftune.katib import validator
from kftune.katib.experiment import Experiment
from kftune.katib.findings import Check, Options, run_rules
from kftune.katib.katib_config import KatibConfig
from kftune.katib.kubeyaml import Document, load_value

GOOD_YAML = r"""
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata:
  name: ner-test
  namespace: kftune
spec:
  objective:
    type: maximize
    objectiveMetricName: eval_f1
    additionalMetricNames: [eval_loss]
  algorithm:
    algorithmName: asha
    algorithmSettings:
      - {name: resource_name, value: num_epochs}
      - {name: reduction_factor, value: "3"}
  parallelTrialCount: 2
  maxTrialCount: 10
  maxFailedTrialCount: 2
  parameters:
    - name: learning_rate
      parameterType: double
      feasibleSpace: {min: "1e-5", max: "5e-5", distribution: logUniform}
    - name: batch_size
      parameterType: discrete
      feasibleSpace: {list: ["16", "32"]}
    - name: num_epochs
      parameterType: int
      feasibleSpace: {min: "1", max: "9"}
  metricsCollectorSpec:
    collector: {kind: StdOut}
  trialTemplate:
    primaryContainerName: trainer
    trialParameters:
      - {name: learningRate, reference: learning_rate}
      - {name: batchSize, reference: batch_size}
      - {name: numEpochs, reference: num_epochs}
      - {name: trialName, reference: "${trialSpec.Name}"}
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        backoffLimit: 0
        template:
          metadata:
            labels: {sidecar.istio.io/inject: "false"}
          spec:
            restartPolicy: Never
            containers:
              - name: trainer
                image: ghcr.io/kftune/trainer:0.1.0
                command: [kftune, train]
                args: [--task, ner, --data, /cache/data/conll, --model, tiny,
                       --learning-rate, "${trialParameters.learningRate}",
                       --per-device-train-batch-size, "${trialParameters.batchSize}",
                       --num-epochs, "${trialParameters.numEpochs}", --schedule-epochs, "9",
                       "--resume-from=$(KFTUNE_PARENT_TRIAL)",
                       --output-dir, "/cache/trials/ner-test/${trialParameters.trialName}"]
                env:
                  - name: KFTUNE_PARENT_TRIAL
                    valueFrom: {fieldRef: {fieldPath: "metadata.labels['kftune.io/parent-trial']"}}
                resources:
                  limits: {nvidia.com/gpu: 1}
"""
GOOD = load_value(GOOD_YAML)
OPTIONS = Options(KatibConfig(), check_algorithm_settings=False)


def findings(data: dict[str, Any]) -> list:
    doc = Document(path=Path("exp.yaml"), index=0, start_line=1, data=data)
    check = Check(Experiment(data, doc), doc, OPTIONS)
    run_rules(check, validator.rules())
    return check.findings


def _step(path: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]


def put(data: dict, path: str, value: Any) -> None:
    *parents, last = _step(path)
    for key in parents:
        data = data[key]
    data[last] = value


def drop(data: dict, path: str) -> None:
    *parents, last = _step(path)
    for key in parents:
        data = data[key]
    del data[last]


def get(data: dict, path: str) -> Any:
    for key in _step(path):
        data = data[key]
    return data


CONTAINER = "spec.trialTemplate.trialSpec.spec.template.spec.containers[0]"
ARGS = CONTAINER + ".args"


def set_arg(flag: str, value: str | None):
    """Mutation: set (or with None, remove) a trainer flag in the good experiment's args."""

    def mutate(d: dict) -> None:
        args = get(d, ARGS)
        joined = [i for i, a in enumerate(args) if a.startswith(flag + "=")]
        if joined:
            args[joined[0] : joined[0] + 1] = [] if value is None else [f"{flag}={value}"]
        elif flag in args:
            i = args.index(flag)
            if value is None:
                del args[i : i + 2]
            else:
                args[i + 1] = value
        elif value is not None:
            args += [flag, value]

    return mutate


def seq(*mutations):
    def mutate(d: dict) -> None:
        for m in mutations:
            m(d)

    return mutate


def P(path: str, value: Any):  # noqa: N802 - reads like the YAML it edits
    return lambda d: put(d, path, value)


def D(path: str):  # noqa: N802
    return lambda d: drop(d, path)


def hyperband(parallel: int = 9, max_trials: int = 23, r_l: str = "9"):
    return seq(
        P(
            "spec.algorithm",
            {
                "algorithmName": "hyperband",
                "algorithmSettings": [
                    {"name": "resource_name", "value": "num_epochs"},
                    {"name": "r_l", "value": r_l},
                    {"name": "eta", "value": "3"},
                ],
            },
        ),
        P("spec.parallelTrialCount", parallel),
        P("spec.maxTrialCount", max_trials),
    )


def pytorchjob(with_master: bool = True, extra_field: bool = False):
    def mutate(d: dict) -> None:
        pod = copy.deepcopy(get(d, "spec.trialTemplate.trialSpec.spec.template"))
        pod["spec"]["containers"][0]["name"] = "pytorch"
        if extra_field:
            pod["spec"]["containers"][0]["cmd"] = ["x"]
        replicas = {"Worker": {"replicas": 1, "template": copy.deepcopy(pod)}}
        if with_master:
            replicas["Master"] = {"replicas": 1, "template": pod}
        put(
            d,
            "spec.trialTemplate.trialSpec",
            {
                "apiVersion": "kubeflow.org/v1",
                "kind": "PyTorchJob",
                "spec": {"pytorchReplicaSpecs": replicas},
            },
        )
        put(d, "spec.trialTemplate.primaryContainerName", "pytorch")

    return mutate


PTJ = "spec.trialTemplate.trialSpec.spec"


def rename_replica(old: str, new: str):
    def mutate(d: dict) -> None:
        replicas = get(d, PTJ + ".pytorchReplicaSpecs")
        replicas[new] = replicas.pop(old)

    return mutate


def add_param(name: str, ptype: str, fs: dict, trial_param: str | None = None, flag: str | None = None):
    def mutate(d: dict) -> None:
        d["spec"]["parameters"].append({"name": name, "parameterType": ptype, "feasibleSpace": fs})
        tp = trial_param or name.title().replace("_", "")
        d["spec"]["trialTemplate"]["trialParameters"].append({"name": tp, "reference": name})
        get(d, ARGS).extend([flag or "--seed", f"${{trialParameters.{tp}}}"])

    return mutate


def custom_trial(success: bool):
    spec = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "spec": {
            "x": "${trialParameters.learningRate}",
            "y": "${trialParameters.batchSize} ${trialParameters.numEpochs} ${trialParameters.trialName}",
        },
    }
    mutations = [P("spec.trialTemplate.trialSpec", spec)]
    if success:
        mutations += [
            P("spec.trialTemplate.successCondition", "status.phase == Succeeded"),
            P("spec.trialTemplate.failureCondition", "status.phase == Failed"),
        ]
    return seq(*mutations)


LONG = "a" * 40
CASES: list[tuple[str, str, Any, str | None]] = [
    # rule, case, mutation, expected severity (None: the rule reports nothing)
    ("webhook.decode", "unquoted-float-min", P("spec.parameters[0].feasibleSpace.min", 1e-5), "error"),
    ("webhook.decode", "string-count", P("spec.maxTrialCount", "10"), "error"),
    ("webhook.decode", "number-setting", P("spec.algorithm.algorithmSettings[1].value", 3), "error"),
    ("webhook.decode", "number-in-list", P("spec.parameters[1].feasibleSpace.list", ["16", 32]), "error"),
    ("webhook.decode", "string-goal", P("spec.objective.goal", "0.9"), "error"),
    ("webhook.decode", "string-bool", P("spec.trialTemplate.retain", "yes"), "error"),
    ("webhook.decode", "bool-label", P("spec.trialTemplate.primaryPodLabels", {"a": False}), "error"),
    ("webhook.decode", "list-for-struct", P("spec.objective", ["eval_f1"]), "error"),
    ("webhook.decode", "integral-float-count", P("spec.maxTrialCount", 10.0), None),
    ("webhook.decode", "number-goal", P("spec.objective.goal", 0.9), None),
    ("webhook.decode", "bool-retain", P("spec.trialTemplate.retain", True), None),
    ("webhook.name", "starts-with-digit", P("metadata.name", "1ner"), "error"),
    ("webhook.name", "41-chars", P("metadata.name", LONG + "b"), "error"),
    ("webhook.name", "missing", D("metadata.name"), "error"),
    ("webhook.name", "40-chars", P("metadata.name", LONG), None),
    ("webhook.name", "prefix-only-check", P("metadata.name", "ner_X"), None),
    ("webhook.counts", "negative-max-failed", P("spec.maxFailedTrialCount", -1), "error"),
    ("webhook.counts", "zero-max", P("spec.maxTrialCount", 0), "error"),
    ("webhook.counts", "zero-parallel", P("spec.parallelTrialCount", 0), "error"),
    ("webhook.counts", "zero-max-failed", P("spec.maxFailedTrialCount", 0), None),
    ("webhook.counts-consistent", "failed-over-max", P("spec.maxFailedTrialCount", 11), "error"),
    ("webhook.counts-consistent", "parallel-over-max", P("spec.parallelTrialCount", 11), "error"),
    (
        "webhook.counts-consistent",
        "default-parallel-over-max",
        seq(D("spec.parallelTrialCount"), P("spec.maxTrialCount", 2), P("spec.maxFailedTrialCount", 1)),
        "error",
    ),
    ("webhook.counts-consistent", "parallel-equals-max", P("spec.parallelTrialCount", 10), None),
    ("webhook.parameters-or-nas", "neither", D("spec.parameters"), "error"),
    ("webhook.parameters-or-nas", "both", P("spec.nasConfig", {"graphConfig": {}}), "error"),
    (
        "webhook.parameters-or-nas",
        "nas-only",
        seq(D("spec.parameters"), P("spec.nasConfig", {"graphConfig": {}})),
        None,
    ),
    ("webhook.objective", "missing", D("spec.objective"), "error"),
    ("webhook.objective", "bad-type", P("spec.objective.type", "max"), "error"),
    ("webhook.objective", "no-metric", D("spec.objective.objectiveMetricName"), "error"),
    (
        "webhook.objective",
        "objective-in-additional",
        P("spec.objective.additionalMetricNames", ["eval_f1"]),
        "error",
    ),
    (
        "webhook.objective",
        "minimize-loss",
        seq(
            P("spec.objective.type", "minimize"),
            P("spec.objective.objectiveMetricName", "eval_loss"),
            P("spec.objective.additionalMetricNames", ["eval_f1"]),
        ),
        None,
    ),
    ("webhook.algorithm", "missing", D("spec.algorithm"), "error"),
    ("webhook.algorithm", "empty-name", P("spec.algorithm.algorithmName", ""), "error"),
    ("webhook.algorithm", "unknown-name", P("spec.algorithm.algorithmName", "hyperopt"), "error"),
    ("webhook.algorithm", "builtin", P("spec.algorithm", {"algorithmName": "random"}), None),
    ("webhook.early-stopping", "empty-name", P("spec.earlyStopping", {"algorithmName": ""}), "error"),
    ("webhook.early-stopping", "unknown-name", P("spec.earlyStopping", {"algorithmName": "median"}), "error"),
    ("webhook.early-stopping", "medianstop", P("spec.earlyStopping", {"algorithmName": "medianstop"}), None),
    ("webhook.resume-policy", "unknown", P("spec.resumePolicy", "Always"), "error"),
    ("webhook.resume-policy", "long-running", P("spec.resumePolicy", "LongRunning"), None),
    ("webhook.parameters", "bad-type", P("spec.parameters[0].parameterType", "float"), "error"),
    (
        "webhook.parameters",
        "bad-distribution",
        P("spec.parameters[0].feasibleSpace.distribution", "log"),
        "error",
    ),
    ("webhook.parameters", "no-feasible-space", D("spec.parameters[0].feasibleSpace"), "error"),
    ("webhook.parameters", "list-for-int", P("spec.parameters[2].feasibleSpace.list", ["1"]), "error"),
    ("webhook.parameters", "double-without-max", D("spec.parameters[0].feasibleSpace.max"), "error"),
    ("webhook.parameters", "min-for-discrete", P("spec.parameters[1].feasibleSpace.min", "1"), "error"),
    (
        "webhook.parameters",
        "normal-distribution",
        P("spec.parameters[0].feasibleSpace.distribution", "normal"),
        None,
    ),
    ("webhook.trial-template", "missing", D("spec.trialTemplate"), "error"),
    ("webhook.trial-template", "no-primary-container", D("spec.trialTemplate.primaryContainerName"), "error"),
    ("webhook.trial-template", "custom-kind-no-conditions", custom_trial(success=False), "error"),
    ("webhook.trial-template", "no-trial-parameters", D("spec.trialTemplate.trialParameters"), "error"),
    ("webhook.trial-template", "no-source", D("spec.trialTemplate.trialSpec"), "error"),
    (
        "webhook.trial-template",
        "two-sources",
        P(
            "spec.trialTemplate.configMap",
            {"configMapName": "t", "configMapNamespace": "kftune", "templatePath": "job.yaml"},
        ),
        "error",
    ),
    (
        "webhook.trial-template",
        "configmap-incomplete",
        seq(
            D("spec.trialTemplate.trialSpec"),
            P("spec.trialTemplate.configMap", {"configMapName": "t", "configMapNamespace": "kftune"}),
        ),
        "error",
    ),
    ("webhook.trial-template", "custom-kind-with-conditions", custom_trial(success=True), None),
    (
        "webhook.trial-parameters",
        "brace-in-name",
        P("spec.trialTemplate.trialParameters[0]", {"name": "lr}", "reference": "learning_rate"}),
        "error",
    ),
    (
        "webhook.trial-parameters",
        "no-reference",
        D("spec.trialTemplate.trialParameters[0].reference"),
        "error",
    ),
    (
        "webhook.trial-parameters",
        "duplicate-name",
        P("spec.trialTemplate.trialParameters[1].name", "learningRate"),
        "error",
    ),
    (
        "webhook.trial-parameters",
        "duplicate-reference",
        P("spec.trialTemplate.trialParameters[1].reference", "learning_rate"),
        "error",
    ),
    (
        "webhook.trial-parameters",
        "unknown-reference",
        P("spec.trialTemplate.trialParameters[0].reference", "lr"),
        "error",
    ),
    (
        "webhook.trial-parameters",
        "unknown-meta-key",
        P("spec.trialTemplate.trialParameters[3].reference", "${trialSpec.Uid}"),
        "error",
    ),
    (
        "webhook.trial-parameters",
        "meta-namespace",
        P("spec.trialTemplate.trialParameters[3].reference", "${trialSpec.Namespace}"),
        None,
    ),
    (
        "webhook.placeholders",
        "unused-trial-parameter",
        lambda d: d["spec"]["trialTemplate"]["trialParameters"].append(
            {"name": "unused", "reference": "${trialSpec.Kind}"}
        ),
        "error",
    ),
    (
        "webhook.placeholders",
        "placeholder-without-trial-parameter",
        set_arg("--seed", "${trialParameters.seed}"),
        "error",
    ),
    (
        "webhook.placeholders",
        "placeholder-in-env",
        lambda d: get(d, CONTAINER + ".env").append(
            {"name": "LR", "value": "${trialParameters.learningRate}"}
        ),
        None,
    ),
    (
        "webhook.trial-spec",
        "metadata-name",
        P("spec.trialTemplate.trialSpec.metadata", {"name": "x"}),
        "error",
    ),
    ("webhook.trial-spec", "no-kind", D("spec.trialTemplate.trialSpec.kind"), "error"),
    (
        "webhook.trial-spec",
        "metadata-labels",
        P("spec.trialTemplate.trialSpec.metadata", {"labels": {"a": "b"}}),
        None,
    ),
    ("webhook.job", "unknown-container-field", P(CONTAINER + ".cmd", ["x"]), "error"),
    (
        "webhook.job",
        "placeholder-in-int-field",
        seq(P("spec.trialTemplate.trialSpec.spec.backoffLimit", "${trialParameters.numEpochs}")),
        "error",
    ),
    (
        "webhook.job",
        "gpu-limit-and-volume",
        P(CONTAINER + ".volumeMounts", [{"name": "c", "mountPath": "/c"}]),
        None,
    ),
    (
        "webhook.metrics-collector",
        "unknown-kind",
        P("spec.metricsCollectorSpec.collector.kind", "Stdout"),
        "error",
    ),
    (
        "webhook.metrics-collector",
        "prometheus-not-configured",
        P("spec.metricsCollectorSpec.collector.kind", "PrometheusMetric"),
        "error",
    ),
    (
        "webhook.metrics-collector",
        "file-relative-path",
        P(
            "spec.metricsCollectorSpec",
            {"collector": {"kind": "File"}, "source": {"fileSystemPath": {"path": "metrics.log"}}},
        ),
        "error",
    ),
    (
        "webhook.metrics-collector",
        "file-bad-format",
        P(
            "spec.metricsCollectorSpec",
            {
                "collector": {"kind": "File"},
                "source": {"fileSystemPath": {"path": "/m.log", "format": "CSV"}},
            },
        ),
        "error",
    ),
    (
        "webhook.metrics-collector",
        "json-with-filter",
        P(
            "spec.metricsCollectorSpec",
            {
                "collector": {"kind": "File"},
                "source": {
                    "fileSystemPath": {"path": "/m.log", "format": "JSON"},
                    "filter": {"metricsFormat": ["(a)=(b)"]},
                },
            },
        ),
        "error",
    ),
    (
        "webhook.metrics-collector",
        "tfevent-format",
        P(
            "spec.metricsCollectorSpec",
            {"collector": {"kind": "TensorFlowEvent"}, "source": {"fileSystemPath": {"format": "TEXT"}}},
        ),
        "error",
    ),
    (
        "webhook.metrics-collector",
        "custom-without-container",
        P("spec.metricsCollectorSpec.collector.kind", "Custom"),
        "error",
    ),
    (
        "webhook.metrics-collector",
        "file-defaults",
        P("spec.metricsCollectorSpec.collector.kind", "File"),
        None,
    ),
    (
        "webhook.filter",
        "does-not-compile",
        P("spec.metricsCollectorSpec.source", {"filter": {"metricsFormat": ["(a"]}}),
        "error",
    ),
    (
        "webhook.filter",
        "one-group",
        P("spec.metricsCollectorSpec.source", {"filter": {"metricsFormat": [r"(\w+)=1"]}}),
        "error",
    ),
    (
        "webhook.filter",
        "lookahead-not-re2",
        P("spec.metricsCollectorSpec.source", {"filter": {"metricsFormat": [r"(\w+)(?==)=(\d+)"]}}),
        "error",
    ),
    (
        "webhook.filter",
        "katib-default",
        P(
            "spec.metricsCollectorSpec.source",
            {"filter": {"metricsFormat": [r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"]}},
        ),
        None,
    ),
    ("extra.unknown-field", "typo", P("spec.parallelTrialCounts", 2), "warning"),
    ("extra.unknown-field", "nested-typo", P("spec.parameters[0].feasibleSpace.maximum", "1"), "warning"),
    ("extra.unknown-field", "open-metadata", P("metadata.annotations", {"a": "b"}), None),
    ("extra.non-finite", "nan-goal", P("spec.objective.goal", float("nan")), "error"),
    ("extra.non-finite", "finite-goal", P("spec.objective.goal", 0.95), None),
    ("extra.name-dns", "underscore", P("metadata.name", "ner_x"), "error"),
    ("extra.name-dns", "trailing-dash", P("metadata.name", "ner-"), "error"),
    ("extra.name-dns", "dns-label", P("metadata.name", "ner-2"), None),
    (
        "extra.duplicate-parameter",
        "twice",
        lambda d: d["spec"]["parameters"].append(copy.deepcopy(d["spec"]["parameters"][0])),
        "error",
    ),
    ("extra.duplicate-parameter", "no-name", D("spec.parameters[1].name"), "error"),
    ("extra.duplicate-parameter", "distinct", add_param("seed", "int", {"min": "1", "max": "3"}), None),
    ("extra.range", "min-over-max", P("spec.parameters[0].feasibleSpace.min", "6e-5"), "error"),
    ("extra.range", "double-point", P("spec.parameters[0].feasibleSpace.min", "5e-5"), "error"),
    ("extra.range", "int-constant", add_param("seed", "int", {"min": "3", "max": "3"}), "warning"),
    ("extra.range", "not-a-number", P("spec.parameters[0].feasibleSpace.max", "abc"), "error"),
    ("extra.range", "int-with-fraction", P("spec.parameters[2].feasibleSpace.max", "9.5"), "error"),
    ("extra.range", "zero-step", P("spec.parameters[2].feasibleSpace.step", "0"), "error"),
    ("extra.range", "step-over-range", P("spec.parameters[2].feasibleSpace.step", "10"), "warning"),
    (
        "extra.range",
        "resource-constant-ok",
        seq(hyperband(), P("spec.parameters[2].feasibleSpace.max", "1")),
        None,
    ),
    ("extra.range", "good-step", P("spec.parameters[2].feasibleSpace.step", "2"), None),
    ("extra.distribution", "log-of-zero", P("spec.parameters[0].feasibleSpace.min", "0"), "error"),
    (
        "extra.distribution",
        "optuna-normal",
        seq(
            P("spec.algorithm", {"algorithmName": "multivariate-tpe"}),
            P("spec.parameters[0].feasibleSpace.distribution", "normal"),
        ),
        "error",
    ),
    ("extra.distribution", "sobol-ignores-log", P("spec.algorithm", {"algorithmName": "sobol"}), "warning"),
    ("extra.distribution", "tpe-log", P("spec.algorithm", {"algorithmName": "tpe"}), None),
    ("extra.list", "empty", P("spec.parameters[1].feasibleSpace.list", []), "error"),
    ("extra.list", "repeat", P("spec.parameters[1].feasibleSpace.list", ["16", "16"]), "error"),
    ("extra.list", "discrete-word", P("spec.parameters[1].feasibleSpace.list", ["16", "big"]), "error"),
    (
        "extra.list",
        "quote-in-value",
        seq(
            P("spec.parameters[1].parameterType", "categorical"),
            P("spec.parameters[1].feasibleSpace.list", ['a"b', "c"]),
            set_arg("--per-device-train-batch-size", None),
            set_arg("--model", "${trialParameters.batchSize}"),
        ),
        "warning",
    ),
    (
        "extra.list",
        "categorical-words",
        add_param("sched", "categorical", {"list": ["linear", "cosine"]}, flag="--lr-scheduler"),
        None,
    ),
    (
        "extra.parameter-unreferenced",
        "unreferenced",
        lambda d: d["spec"]["parameters"].append(
            {"name": "seed", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "3"}}
        ),
        "error",
    ),
    ("extra.parameter-unreferenced", "referenced", add_param("seed", "int", {"min": "1", "max": "3"}), None),
    (
        "extra.meta-reference",
        "missing-label",
        P("spec.trialTemplate.trialParameters[3].reference", "${trialSpec.Labels[kftune.io/parent-trial]}"),
        "error",
    ),
    (
        "extra.meta-reference",
        "missing-annotation",
        P("spec.trialTemplate.trialParameters[3].reference", "${trialSpec.Annotations[x]}"),
        "error",
    ),
    (
        "extra.meta-reference",
        "label-present",
        seq(
            P("spec.trialTemplate.trialParameters[3].reference", "${trialSpec.Labels[team]}"),
            P("spec.trialTemplate.trialSpec.metadata", {"labels": {"team": "nlp"}}),
        ),
        None,
    ),
    (
        "extra.primary-container",
        "wrong-name",
        P("spec.trialTemplate.primaryContainerName", "training"),
        "error",
    ),
    ("extra.primary-container", "right-name", P("spec.trialTemplate.primaryContainerName", "trainer"), None),
    ("extra.trial-kind", "unwatched-kind", custom_trial(success=True), "warning"),
    ("extra.trial-kind", "pytorchjob-without-master", pytorchjob(with_master=False), "error"),
    ("extra.trial-kind", "pytorchjob", pytorchjob(), None),
    ("extra.pod-schema", "pytorchjob-unknown-field", pytorchjob(extra_field=True), "error"),
    ("extra.pod-schema", "pytorchjob-valid", pytorchjob(), None),
    # training-operator's PyTorchJob webhook and CRD schema
    ("operator.pytorchjob", "valid", pytorchjob(), None),
    ("operator.pytorchjob", "job-kind-untouched", P("spec.trialTemplate.trialSpec.spec.ttl", 3), None),
    (
        "operator.pytorchjob",
        "elastic-with-worker-and-nprocpernode",
        seq(
            pytorchjob(),
            P(PTJ + ".elasticPolicy", {"minReplicas": 1, "maxReplicas": 2}),
            P(PTJ + ".nprocPerNode", "auto"),
        ),
        None,
    ),
    (
        "operator.pytorchjob",
        "master-replicas-2",
        seq(pytorchjob(), P(PTJ + ".pytorchReplicaSpecs.Master.replicas", 2)),
        "error",
    ),
    (
        "operator.pytorchjob",
        "master-replicas-missing",
        seq(pytorchjob(), D(PTJ + ".pytorchReplicaSpecs.Master.replicas")),
        "error",
    ),
    (
        "operator.pytorchjob",
        "worker-replicas-0",
        seq(pytorchjob(), P(PTJ + ".pytorchReplicaSpecs.Worker.replicas", 0)),
        "error",
    ),
    (
        "operator.pytorchjob",
        "lower-case-type",
        seq(pytorchjob(with_master=False), rename_replica("Worker", "worker")),
        "error",
    ),
    ("operator.pytorchjob", "no-replica-specs", seq(pytorchjob(), D(PTJ + ".pytorchReplicaSpecs")), "error"),
    (
        "operator.pytorchjob",
        "no-pytorch-container",
        seq(pytorchjob(), P(PTJ + ".pytorchReplicaSpecs.Worker.template.spec.containers[0].name", "trainer")),
        "error",
    ),
    (
        "operator.pytorchjob",
        "empty-image",
        seq(pytorchjob(), P(PTJ + ".pytorchReplicaSpecs.Worker.template.spec.containers[0].image", "")),
        "error",
    ),
    (
        "operator.pytorchjob",
        "replica-typo",
        seq(pytorchjob(), P(PTJ + ".pytorchReplicaSpecs.Worker.replica", 2)),
        "error",
    ),
    ("operator.pytorchjob", "spec-typo", seq(pytorchjob(), P(PTJ + ".nProcPerNode", "2")), "error"),
    (
        "operator.pytorchjob",
        "run-policy-typo",
        seq(pytorchjob(), P(PTJ + ".runPolicy", {"backOffLimit": 0})),
        "error",
    ),
    (
        "operator.pytorchjob",
        "placeholder-in-int",
        seq(pytorchjob(), P(PTJ + ".pytorchReplicaSpecs.Worker.replicas", "${trialParameters.batchSize}")),
        "error",
    ),
    ("operator.pytorchjob", "nprocpernode-int", seq(pytorchjob(), P(PTJ + ".nprocPerNode", 2)), "error"),
    (
        "operator.pytorchjob",
        "bad-restart-policy",
        seq(pytorchjob(), P(PTJ + ".pytorchReplicaSpecs.Worker.restartPolicy", "Sometimes")),
        "error",
    ),
    (
        "operator.pytorchjob",
        "bad-managed-by",
        seq(pytorchjob(), P(PTJ + ".runPolicy", {"managedBy": "me"})),
        "error",
    ),
    (
        "operator.pytorchjob",
        "elastic-without-worker",
        seq(
            pytorchjob(),
            D(PTJ + ".pytorchReplicaSpecs.Worker"),
            P(PTJ + ".elasticPolicy", {"maxReplicas": 2}),
        ),
        "error",
    ),
    (
        "operator.pytorchjob",
        "elastic-nproc-deprecated",
        seq(pytorchjob(), P(PTJ + ".elasticPolicy", {"nProcPerNode": 2})),
        "warning",
    ),
    (
        "operator.pytorchjob",
        "elastic-nproc-twice",
        seq(pytorchjob(), P(PTJ + ".elasticPolicy", {"nProcPerNode": 2}), P(PTJ + ".nprocPerNode", "2")),
        "error",
    ),
    ("extra.image-tag", "latest", P(CONTAINER + ".image", "ghcr.io/kftune/trainer:latest"), "error"),
    ("extra.image-tag", "untagged", P(CONTAINER + ".image", "ghcr.io/kftune/trainer"), "error"),
    ("extra.image-tag", "digest", P(CONTAINER + ".image", "ghcr.io/kftune/trainer@sha256:" + "0" * 64), None),
    ("extra.image-tag", "registry-port", P(CONTAINER + ".image", "localhost:5000/trainer:0.1.0"), None),
    ("extra.istio", "missing", D("spec.trialTemplate.trialSpec.spec.template.metadata"), "warning"),
    (
        "extra.istio",
        "not-the-string-false",
        P("spec.trialTemplate.trialSpec.spec.template.metadata.labels", {"sidecar.istio.io/inject": "true"}),
        "warning",
    ),
    (
        "extra.istio",
        "annotation",
        P(
            "spec.trialTemplate.trialSpec.spec.template.metadata",
            {"annotations": {"sidecar.istio.io/inject": "false"}},
        ),
        None,
    ),
    ("extra.env-reference", "undefined", set_arg("--resume-from", "$(PARENT)"), "warning"),
    ("extra.env-reference", "katib-injected", set_arg("--trial", "$(KATIB_TRIAL_NAME)"), None),
    ("extra.env-reference", "escaped", set_arg("--trial", "$$(LITERAL)"), None),
    (
        "extra.trainer-env",
        "stall-not-a-number",
        P(CONTAINER + ".env", [{"name": "KFTUNE_STALL_TIMEOUT_S", "value": "30m"}]),
        "error",
    ),
    (
        "extra.trainer-env",
        "stall-negative",
        P(CONTAINER + ".env", [{"name": "KFTUNE_STALL_TIMEOUT_S", "value": "-1"}]),
        "error",
    ),
    (
        "extra.trainer-env",
        "stall-too-short",
        P(CONTAINER + ".env", [{"name": "KFTUNE_STALL_TIMEOUT_S", "value": "20"}]),
        "warning",
    ),
    (
        "extra.trainer-env",
        "stall-off",
        P(CONTAINER + ".env", [{"name": "KFTUNE_STALL_TIMEOUT_S", "value": "0"}]),
        None,
    ),
    (
        "extra.trainer-env",
        "stall-30min",
        P(CONTAINER + ".env", [{"name": "KFTUNE_STALL_TIMEOUT_S", "value": "1800"}]),
        None,
    ),
    (
        "extra.trainer-env",
        "fraction-above-1",
        P(CONTAINER + ".env", [{"name": "KFTUNE_GPU_MEMORY_FRACTION", "value": "25"}]),
        "error",
    ),
    (
        "extra.trainer-env",
        "fraction-quarter",
        P(CONTAINER + ".env", [{"name": "KFTUNE_GPU_MEMORY_FRACTION", "value": "0.25"}]),
        None,
    ),
    ("extra.trainer-args", "unknown-flag", set_arg("--lr", "0.1"), "error"),
    ("extra.trainer-args", "missing-data", set_arg("--data", None), "error"),
    ("extra.trainer-args", "bad-task", set_arg("--task", "pos"), "error"),
    ("extra.trainer-args", "bad-int", set_arg("--schedule-epochs", "nine"), "error"),
    (
        "extra.trainer-args",
        "double-feeds-int",
        set_arg("--per-device-train-batch-size", "${trialParameters.learningRate}"),
        "error",
    ),
    ("extra.trainer-args", "stray-token", lambda d: get(d, ARGS).insert(2, "ner"), "error"),
    (
        "extra.trainer-args",
        "config-instead-of-data",
        seq(set_arg("--data", None), set_arg("--config", "/c.yaml")),
        None,
    ),
    (
        "extra.trainer-args",
        "equals-form",
        seq(set_arg("--seed", None), lambda d: get(d, ARGS).append("--seed=3")),
        None,
    ),
    (
        "extra.objective-metric",
        "not-printed-for-task",
        P("spec.objective.objectiveMetricName", "eval_macro_f1"),
        "error",
    ),
    (
        "extra.objective-metric",
        "additional-not-printed",
        P("spec.objective.additionalMetricNames", ["eval_perplexity"]),
        "warning",
    ),
    ("extra.objective-metric", "test-split", P("spec.objective.objectiveMetricName", "test_f1"), "warning"),
    (
        "extra.objective-metric",
        "maximize-loss",
        seq(
            P("spec.objective.objectiveMetricName", "eval_loss"),
            P("spec.objective.additionalMetricNames", []),
        ),
        "warning",
    ),
    ("extra.objective-metric", "accuracy", P("spec.objective.objectiveMetricName", "eval_accuracy"), None),
    (
        "extra.metrics-filter",
        "integer-only-value",
        P("spec.metricsCollectorSpec.source", {"filter": {"metricsFormat": [r"(eval_\w+)=(\d+)"]}}),
        "error",
    ),
    (
        "extra.metrics-filter",
        "wrong-names",
        P("spec.metricsCollectorSpec.source", {"filter": {"metricsFormat": [r"(f1)=([\d.]+)"]}}),
        "error",
    ),
    (
        "extra.metrics-filter",
        "file-collector",
        P("spec.metricsCollectorSpec.collector.kind", "File"),
        "warning",
    ),
    (
        "extra.metrics-filter",
        "kftune-filter",
        P(
            "spec.metricsCollectorSpec.source",
            {"filter": {"metricsFormat": [r"(eval_\w+)=([+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"]}},
        ),
        None,
    ),
    ("extra.output-dir", "shared-dir", set_arg("--output-dir", "/cache/trials/ner-test"), "warning"),
    (
        "extra.output-dir",
        "katib-trial-env",
        set_arg("--output-dir", "/cache/trials/$(KATIB_TRIAL_NAME)"),
        None,
    ),
    ("extra.resource-parameter", "no-resource-name", P("spec.algorithm.algorithmSettings", []), "error"),
    (
        "extra.resource-parameter",
        "unknown-resource",
        P("spec.algorithm.algorithmSettings[0].value", "epochs"),
        "error",
    ),
    ("extra.resource-parameter", "double-resource", P("spec.parameters[2].parameterType", "double"), "error"),
    ("extra.resource-parameter", "zero-grace", P("spec.parameters[2].feasibleSpace.min", "0"), "error"),
    ("extra.resource-parameter", "fixed-epochs", set_arg("--num-epochs", "3"), "error"),
    ("extra.resource-parameter", "no-resume", set_arg("--resume-from", None), "warning"),
    ("extra.resource-parameter", "no-schedule", set_arg("--schedule-epochs", None), "warning"),
    ("extra.resource-parameter", "hyperband-first-bracket", hyperband(parallel=4), "error"),
    ("extra.resource-parameter", "hyperband-too-many-trials", hyperband(max_trials=30), "warning"),
    ("extra.resource-parameter", "hyperband-bad-r_l", hyperband(r_l="nine"), "error"),
    ("extra.resource-parameter", "hyperband", hyperband(), None),
    (
        "extra.metric-strategies",
        "bad-value",
        P("spec.objective.metricStrategies", [{"name": "eval_f1", "value": "mean"}]),
        "error",
    ),
    (
        "extra.metric-strategies",
        "unknown-metric",
        P("spec.objective.metricStrategies", [{"name": "eval_recall", "value": "max"}]),
        "warning",
    ),
    (
        "extra.metric-strategies",
        "latest",
        P("spec.objective.metricStrategies", [{"name": "eval_f1", "value": "latest"}]),
        None,
    ),
    (
        "extra.shell-wrap",
        "empty-label-as-own-argument",
        seq(
            set_arg("--resume-from", None),
            lambda d: get(d, ARGS).extend(["--resume-from", "$(KFTUNE_PARENT_TRIAL)"]),
        ),
        "error",
    ),
    ("extra.shell-wrap", "empty-argument", set_arg("--model", ""), "error"),
    ("extra.shell-wrap", "space-in-argument", set_arg("--model", "/models/my model"), "error"),
    ("extra.shell-wrap", "semicolon-in-argument", set_arg("--model", "tiny;ls"), "error"),
    (
        "extra.shell-wrap",
        "categorical-value-with-space",
        add_param("sched", "categorical", {"list": ["linear", "cosine restarts"]}, flag="--lr-scheduler"),
        "error",
    ),
    ("extra.shell-wrap", "flag-equals-env", set_arg("--trial", "$(KATIB_TRIAL_NAME)"), None),
    (
        "extra.shell-wrap",
        "user-shell",
        seq(P(CONTAINER + ".command", ["sh", "-c"]), P(ARGS, ["kftune train --task ner --model 'my model'"])),
        None,
    ),
    (
        "extra.shell-wrap",
        "push-collector-no-wrap",
        seq(P("spec.metricsCollectorSpec.collector.kind", "Push"), set_arg("--model", "/models/my model")),
        None,
    ),
    (
        "extra.pbt",
        "no-step",
        seq(
            P(
                "spec.algorithm",
                {
                    "algorithmName": "pbt",
                    "algorithmSettings": [{"name": "suggestion_trial_dir", "value": "/ckpt"}],
                },
            ),
            P("spec.resumePolicy", "FromVolume"),
        ),
        "error",
    ),
    (
        "extra.pbt",
        "volume-without-from-volume",
        P(
            "spec.algorithm.algorithmSettings",
            [
                {"name": "resource_name", "value": "num_epochs"},
                {"name": "suggestion_trial_dir", "value": "/ckpt"},
            ],
        ),
        "error",
    ),
    (
        "extra.pbt",
        "relative-dir",
        seq(
            P("spec.resumePolicy", "FromVolume"),
            P(
                "spec.algorithm.algorithmSettings",
                [
                    {"name": "resource_name", "value": "num_epochs"},
                    {"name": "suggestion_trial_dir", "value": "ckpt"},
                ],
            ),
        ),
        "error",
    ),
    (
        "extra.pbt",
        "pbt-with-steps",
        seq(
            P(
                "spec.algorithm",
                {
                    "algorithmName": "pbt",
                    "algorithmSettings": [{"name": "suggestion_trial_dir", "value": "/ckpt"}],
                },
            ),
            P("spec.resumePolicy", "FromVolume"),
            P("spec.parameters[0].feasibleSpace.step", "1e-6"),
            P("spec.parameters[2].feasibleSpace.step", "1"),
        ),
        None,
    ),
]


def test_good_experiment_has_no_findings():
    assert [f.format() for f in findings(copy.deepcopy(GOOD))] == []


@pytest.mark.parametrize(
    ("rule_id", "case", "mutate", "expected"), CASES, ids=[f"{r}:{c}" for r, c, _, _ in CASES]
)
def test_rule(rule_id, case, mutate, expected):
    if rule_id in ("webhook.job", "extra.pod-schema"):
        pytest.importorskip(
            "kubernetes_validate", reason="the Job/pod schema checks need kubernetes-validate"
        )
    data = copy.deepcopy(GOOD)
    mutate(data)
    got = [f for f in findings(data) if f.rule == rule_id]
    if expected is None:
        assert got == [], [f.format() for f in got]
    else:
        assert got, f"{rule_id} reported nothing for {case}"
        assert {f.severity for f in got} == {expected}, [f.format() for f in got]
        for f in got:  # every finding says where, what and how to fix it
            assert f.path and f.message and f.fix, f.format()
    assert not [f for f in findings(data) if f.rule == "internal"], "a rule crashed"


def test_every_rule_has_valid_and_invalid_cases():
    delegated = {"suggestion.settings", "earlystopping.settings"}  # tests/katib/test_katib_algorithm_rules.py
    for rule_id in validator.RULES:
        if rule_id in delegated:
            continue
        expectations = {e for r, _, _, e in CASES if r == rule_id}
        assert None in expectations, f"{rule_id} has no valid case"
        assert expectations - {None}, f"{rule_id} has no invalid case"


def test_every_rule_is_a_row_of_the_docstring_table():
    rows = [
        line.split()[0] for line in (validator.__doc__ or "").splitlines() if line and not line[0].isspace()
    ]
    for rule_id in validator.RULES:
        assert rule_id in rows, f"{rule_id} is missing from kftune.katib.validator's rule table"
    assert "yaml" in rows and "document" in rows


def test_no_rule_crashes_on_garbage():
    for data in (
        {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment"},
        {"kind": "Experiment", "spec": []},
        {
            "kind": "Experiment",
            "spec": {
                "parameters": "x",
                "trialTemplate": [],
                "objective": 3,
                "algorithm": "tpe",
                "metricsCollectorSpec": {"collector": 1},
            },
        },
        {"kind": "Experiment", "metadata": [], "spec": {"trialTemplate": {"trialSpec": {"spec": 1}}}},
    ):
        got = findings(data)
        assert not [f for f in got if "internal error" in f.message], [f.format() for f in got]
        assert any(f.severity == "error" for f in got)


def test_all_problems_reported_in_one_run():
    data = copy.deepcopy(GOOD)
    for _, _, mutate in [
        ("a", 0, P("spec.objective.type", "max")),  # Katib stops after objective errors
        ("b", 0, P("spec.parameters[0].feasibleSpace.min", 1e-5)),
        ("c", 0, P(CONTAINER + ".image", "x:latest")),
        ("d", 0, set_arg("--lr", "1")),
    ]:
        mutate(data)
    rules = {f.rule for f in findings(data) if f.severity == "error"}
    assert {"webhook.objective", "webhook.decode", "extra.image-tag", "extra.trainer-args"} <= rules
