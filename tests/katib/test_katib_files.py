"""The Experiments in katib/: valid, rendered into trainer argv that follows docs/contracts.md."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kftune.hpo import Problem
from kftune.katib.experiment import Experiment, load_documents, pod_templates
from kftune.katib.katib_config import DEFAULT_SUGGESTIONS
from kftune.katib.rules_extra import extract_metrics, hyperband_first_bracket, hyperband_total_trials
from kftune.katib.service_rules import always_fillable, katib_errors
from kftune.katib.trainer_contract import FLAGS, REQUIRED, SWITCHES, parse_trainer_args, trainer_start
from kftune.katib.validator import validate_paths
from kftune.train.metric_lines import METRICS_BY_TASK, format_epoch_line

KATIB = Path(__file__).resolve().parents[2] / "katib"
FILES = sorted(KATIB.glob("*.yaml"))
EXPECTED = {
    "ner-asha.yaml",
    "ner-asha-shared-gpu.yaml",
    "ner-bohb.yaml",
    "ner-hyperband.yaml",
    "ner-pbt.yaml",
    "ner-tpe-medianstop.yaml",
    "ner-sobol-explore.yaml",
    "ner-batch-size.yaml",
    "textcls-bayes.yaml",
    "mlm-perplexity.yaml",
}


def experiment(name: str) -> Experiment:
    (doc,) = [d for d in load_documents(KATIB / name) if d.data.get("kind") == "Experiment"]
    return Experiment(doc.data, doc)


def sample(exp: Experiment, pick: int = 0) -> dict[str, str]:
    """One assignment per parameter, as Katib passes them (strings)."""
    out = {}
    for p in exp.parameters:
        fs = p["feasibleSpace"]
        out[p["name"]] = fs["list"][pick] if "list" in fs else (fs["min"] if pick == 0 else fs["max"])
    return out


def trainer_args(
    exp: Experiment, labels: dict[str, str] | None = None, pick: int = 0
) -> tuple[list[str], dict]:
    job = exp.render_trial(sample(exp, pick), f"{exp.name}-t1")
    cmd = exp.trial_command(job, labels=labels)
    start = trainer_start(cmd.argv)
    assert start is not None, cmd.argv
    args, stray = parse_trainer_args(cmd.argv, start)
    assert stray == []
    return cmd.argv, {a.flag: a.value for a in args}


def test_the_files_are_the_expected_ones():
    assert {f.name for f in FILES} == EXPECTED


def test_all_files_pass_with_no_errors_and_no_warnings():
    report = validate_paths([KATIB])
    assert [f.format() for f in report.findings if f.severity != "note"] == []
    assert report.summary()["experiments"] == len(EXPECTED)


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_each_file_follows_the_conventions(path):
    assert path.read_text().startswith("# "), "a header comment says what the file is for"
    exp = experiment(path.name)
    assert exp.name == path.stem and exp.namespace == "kftune"
    assert exp.metrics_collector.kind == "StdOut"
    pods = pod_templates(exp.trial_template.trial_spec)
    assert pods
    for _, pod in pods:
        assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
        (container,) = pod["spec"]["containers"]
        assert container["image"] == "ghcr.io/kftune/trainer:0.1.0"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert {"name": "cache", "mountPath": "/cache"} in container["volumeMounts"]
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in pod["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        ]
        assert claims == ["kftune-cache"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["KFTUNE_HOME"] == "/cache" and env["HF_HOME"].startswith("/cache/")
    for pick in (0, -1):
        _, args = trainer_args(exp, pick=pick)
        assert set(args) <= set(FLAGS) | set(SWITCHES) and set(REQUIRED) <= set(args)
        assert args["--output-dir"] == f"/cache/trials/{exp.name}/{exp.name}-t1"
        assert args["--data"].startswith("/cache/data/") and args["--model"].startswith("/cache/models/")
        task = args["--task"]
        assert exp.objective.objective_metric_name in METRICS_BY_TASK[task]
        assert set(exp.objective.additional_metric_names) <= set(METRICS_BY_TASK[task])
        for flag, kind in FLAGS.items():
            if flag in args and args[flag] and kind in ("int", "float") and "$(" not in args[flag]:
                (int if kind == "int" else float)(args[flag])
    line = format_epoch_line(3, {m: 0.5 + i / 10 for i, m in enumerate(METRICS_BY_TASK[task])})
    found = dict(extract_metrics(line, list(exp.metrics_collector.metrics_format)))
    for name in exp.objective.metric_names:
        assert name in found and math.isfinite(float(found[name]))


def _asha_max_trials(configs: int, eta: int, r_min: int, r_max: int) -> int:
    total, rung = 0, configs
    r = r_min
    while r <= r_max:
        total += rung
        rung //= eta
        r *= eta
    return total


def test_ner_asha():
    exp = experiment("ner-asha.yaml")
    assert exp.algorithm.name == "asha"
    assert exp.algorithm.settings == {
        "sampler": "tpe",
        "resource_name": "num_epochs",
        "reduction_factor": "3",
        "random_state": "42",
    }  # no num_configurations: maxTrialCount is the budget (kftune.katib.service_rules)
    space = {p["name"]: p for p in exp.parameters}
    assert space["learning_rate"]["feasibleSpace"] == {
        "min": "6e-6",
        "max": "5e-5",
        "distribution": "logUniform",
    }
    assert (
        float(space["learning_rate"]["feasibleSpace"]["min"])
        < 2.326071e-05
        < float(space["learning_rate"]["feasibleSpace"]["max"])
    )  # the seed's best lies inside
    assert space["weight_decay"]["feasibleSpace"]["max"] == "0.2"
    assert space["warmup_ratio"]["feasibleSpace"]["max"] == "0.12"
    assert (
        space["attention_dropout"]["feasibleSpace"]["max"]
        == space["hidden_dropout"]["feasibleSpace"]["max"]
        == "0.2"
    )
    assert space["batch_size"]["feasibleSpace"]["list"] == ["16", "32", "64"]
    assert space["num_epochs"] == {
        "name": "num_epochs",
        "parameterType": "int",
        "feasibleSpace": {"min": "1", "max": "9"},
    }
    # ~50 configurations (tests/katib/test_service_katib_loop.py); Katib's service accepts it
    assert exp.max_trial_count == 110 > _asha_max_trials(50, 3, 1, 9)
    assert katib_errors(Problem.from_katib(exp.spec)) == []
    # a new configuration starts fresh; a promotion resumes its parent's checkpoint
    argv, args = trainer_args(exp)
    assert args["--resume-from"] == "" and args["--schedule-epochs"] == "9"
    argv, args = trainer_args(exp, labels={"kftune.io/parent-trial": "ner-asha-parent"}, pick=-1)
    assert args["--resume-from"] == "ner-asha-parent" and args["--num-epochs"] == "9"
    job = exp.render_trial(sample(exp), "ner-asha-t1")
    assert exp.trial_command(job).working_dir == "/cache/trials/ner-asha"  # --resume-from is relative to it


def test_ner_bohb():
    exp = experiment("ner-bohb.yaml")
    assert exp.algorithm.name == "bohb" and exp.algorithm.settings["resource_name"] == "num_epochs"
    # hpbandster's brackets for s_max = 2: n0 = floor(3 / (s+1)) * 3^s, stages max(floor(n0 / 3^j), 1):
    # 9-3-1, 3-1, 3 -> 20 trials per round, 15 in first stages; 12 iterations = 4 rounds
    first_stages, per_round = 0, 0
    for s in (2, 1, 0):
        n0 = (3 // (s + 1)) * 3**s
        first_stages += n0
        per_round += sum(max(n0 // 3**j, 1) for j in range(s + 1))
    assert (first_stages, per_round) == (15, 20)
    assert exp.algorithm.settings["num_iterations"] == "12"
    problem = Problem.from_katib(exp.spec)
    assert exp.max_trial_count == 4 * first_stages == always_fillable(problem) == 60 == 3 * per_round
    assert katib_errors(problem) == []
    _, args = trainer_args(exp, labels={"kftune.io/parent-trial": "p"})
    assert args["--resume-from"] == "p"


def test_ner_hyperband():
    exp = experiment("ner-hyperband.yaml")
    s = exp.algorithm.settings
    assert exp.algorithm.name == "hyperband" and s["resource_name"] == "num_epochs"
    assert exp.parallel_trial_count == hyperband_first_bracket(float(s["r_l"]), int(s["eta"])) == 9
    assert exp.max_trial_count == hyperband_total_trials(float(s["r_l"]), int(s["eta"])) == 23


def test_ner_pbt():
    docs = load_documents(KATIB / "ner-pbt.yaml")
    configmap = next(d.data for d in docs if d.data["kind"] == "ConfigMap")
    exp = experiment("ner-pbt.yaml")
    assert exp.algorithm.name == "pbt" and exp.resume_policy == "FromVolume"
    population = int(exp.algorithm.settings["n_population"])
    generations = math.ceil(exp.max_trial_count / population)
    files = configmap["data"]
    assert len(files) > generations  # room for re-queued failures
    for g in range(len(files)):
        assert files[f"gen-{g}.yaml"] == f"num_epochs: {g + 1}"  # one more epoch per generation
    labels = {
        "pbt.suggestion.katib.kubeflow.org/generation": "2",
        "pbt.suggestion.katib.kubeflow.org/parent": "p1",
    }
    _, args = trainer_args(exp, labels=labels)
    assert args["--config"] == "/etc/kftune/pbt/gen-2.yaml" and args["--resume-from"] == "p1"
    _, args = trainer_args(exp, labels={"pbt.suggestion.katib.kubeflow.org/generation": "0"})
    assert args["--config"] == "/etc/kftune/pbt/gen-0.yaml" and args["--resume-from"] == ""


def test_stock_katib_files_need_no_kftune_service():
    for name in (
        "ner-hyperband.yaml",
        "ner-pbt.yaml",
        "ner-tpe-medianstop.yaml",
        "ner-sobol-explore.yaml",
        "ner-batch-size.yaml",
        "textcls-bayes.yaml",
        "mlm-perplexity.yaml",
    ):
        assert experiment(name).algorithm.name in DEFAULT_SUGGESTIONS, name
    exp = experiment("ner-tpe-medianstop.yaml")
    assert exp.algorithm.name == "tpe" and exp.early_stopping.name == "medianstop"


def test_exploration_and_batch_size_files():
    sobol = experiment("ner-sobol-explore.yaml")
    assert sobol.algorithm.name == "sobol"
    assert (
        trainer_args(sobol)[1]["--per-device-train-batch-size"] == "64"
    )  # fixed: the batch-size table's best
    grid = experiment("ner-batch-size.yaml")
    (param,) = grid.parameters
    assert grid.algorithm.name == "grid" and param["feasibleSpace"]["list"] == [
        "16",
        "32",
        "64",
        "128",
        "256",
    ]
    assert grid.max_trial_count == 5


def test_textcls_and_mlm_files():
    textcls = experiment("textcls-bayes.yaml")
    assert textcls.algorithm.name == "bayesianoptimization"
    assert (
        textcls.objective.objective_metric_name == "eval_macro_f1"
        and trainer_args(textcls)[1]["--task"] == "seqcls"
    )
    mlm = experiment("mlm-perplexity.yaml")
    assert (mlm.objective.type, mlm.objective.objective_metric_name) == ("minimize", "eval_perplexity")
    spec = mlm.trial_template.trial_spec
    assert (spec["apiVersion"], spec["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert set(spec["spec"]["pytorchReplicaSpecs"]) == {"Master", "Worker"}
    assert mlm.trial_template.primary_pod_labels == {"training.kubeflow.org/job-role": "master"}
    argv, args = trainer_args(mlm)
    assert argv[0] == "torchrun" and args["--task"] == "mlm"
