"""Experiment files for the local runner's tests: trials are ``fake_trial.py`` (fast, scripted)."""

from __future__ import annotations

import json
from pathlib import Path

FAKE_TRIAL = Path(__file__).with_name("fake_trial.py").resolve()


def experiment_yaml(
    name: str = "fake",
    *,
    algorithm: str = "random",
    settings: dict[str, str] | None = None,
    parameters: str | None = None,
    trial_parameters: str | None = None,
    args: list[str] | None = None,
    extra_args: list[str] | None = None,
    env: str = "",
    objective: str = "maximize",
    goal: float | None = None,
    max_trials: int | None = 4,
    parallel: int = 2,
    max_failed: int | None = None,
    collector: str = "",
    early_stopping: str = "",
    working_dir: str = "/cache/trials/{name}",
    extra_spec: str = "",
) -> str:
    settings = {"random_state": "7", **(settings or {})}
    settings_yaml = "\n".join(f"      - {{name: {k}, value: {json.dumps(v)}}}" for k, v in settings.items())
    parameters = (
        parameters
        or """
    - name: lr
      parameterType: double
      feasibleSpace: {min: "0.00001", max: "0.1", distribution: logUniform}"""
    )
    trial_parameters = (
        trial_parameters
        or """
      - {name: lr, reference: lr}"""
    )
    if args is None:
        args = ["--lr", "${trialParameters.lr}", "--epochs", "2"]
    args = [
        *args,
        *(extra_args or []),
        "--output-dir",
        "/cache/trials/" + name + "/${trialParameters.trialName}",
    ]
    args_yaml = "\n".join(f"                  - {json.dumps(a)}" for a in args)
    lines = [
        "apiVersion: kubeflow.org/v1beta1",
        "kind: Experiment",
        f"metadata: {{name: {name}, namespace: test}}",
        "spec:",
        "  objective:",
        f"    type: {objective}",
        "    objectiveMetricName: eval_f1",
        "    additionalMetricNames: [eval_loss]",
    ]
    if goal is not None:
        lines.append(f"    goal: {goal}")
    lines += ["  algorithm:", f"    algorithmName: {algorithm}", "    algorithmSettings:", settings_yaml]
    if early_stopping:
        lines.append(early_stopping.rstrip())
    if max_trials is not None:
        lines.append(f"  maxTrialCount: {max_trials}")
    lines.append(f"  parallelTrialCount: {parallel}")
    if max_failed is not None:
        lines.append(f"  maxFailedTrialCount: {max_failed}")
    lines.append("  parameters:" + parameters)
    if collector:
        lines.append(collector.rstrip())
    if extra_spec:
        lines.append(extra_spec.rstrip())
    wd = f"                workingDir: {working_dir.format(name=name)}\n" if working_dir else ""
    lines.append(
        f"""  trialTemplate:
    primaryContainerName: main
    trialParameters:{trial_parameters}
      - {{name: trialName, reference: "${{trialSpec.Name}}"}}
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          metadata:
            labels:
              sidecar.istio.io/inject: "false"
          spec:
            restartPolicy: Never
            containers:
              - name: main
                image: ghcr.io/kftune/trainer:0.1.0
{wd}                command: [python, {json.dumps(str(FAKE_TRIAL))}]
                args:
{args_yaml}
                env:
                  - {{name: KFTUNE_HOME, value: /cache}}{env}
                volumeMounts:
                  - {{name: cache, mountPath: /cache}}
            volumes:
              - name: cache
                persistentVolumeClaim:
                  claimName: kftune-cache"""
    )
    return "\n".join(lines) + "\n"


def write_experiment(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path
