"""A local run's results in the shapes other parts read (docs/contracts.md, "Run directories").

- :func:`tune_trials`: ``tune/trials.json`` rows: ``{name, status, assignments, labels, metrics,
  curve: [[epoch, objective], ...], epochs}`` (``epochs``: epochs this trial trained itself; a
  promotion resumed from its parent counts only its own).
- :func:`tune_best`: ``tune/best.json``: Katib's ``currentOptimalTrial`` plus the objective.
- :func:`experiment_yaml`: ``tune/experiment.yaml``: the Experiment as run (after the overrides).
- :func:`hyperparam_row`: the best trial as a row of seed 000's "Successful Hyperparameters" table
  (``kftune.report.tables.HyperparamRow``), with the tag family and training variant read from the
  trial's ``kftune train`` arguments.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from kftune.katib.experiment import Experiment
from kftune.katib.runner_status import objective_text
from kftune.katib.store import Store, TrialRow, db_path

_EPOCH = re.compile(r"^epoch=(\d+)\s")


def _open(work_dir: str | Path) -> Store:
    path = db_path(work_dir)
    if not path.is_file():
        from kftune.errors import UserError

        raise UserError(f"{work_dir}: no local run here ({path.name} not found)")
    return Store.open(path)


def _objective(store: Store) -> tuple[str, str, str]:
    obj = ((store.get_meta("spec") or {}).get("spec") or {}).get("objective") or {}
    metric = str(obj.get("objectiveMetricName") or "")
    otype = str(obj.get("type") or "maximize")
    strategies = {
        s.get("name"): s.get("value") for s in obj.get("metricStrategies") or [] if isinstance(s, dict)
    }
    strategy = strategies.get(metric) or {"minimize": "min", "maximize": "max"}.get(otype, "latest")
    return metric, otype, strategy


def _curve(row: TrialRow, store: Store, metric: str) -> list[list[float]]:
    """(epoch, objective) per report: epochs from the trainer's ``epoch=N`` lines when present."""
    values = [
        float(m.value) for m in store.metric_logs(row.name, row.metrics_from_attempt) if m.name == metric
    ]
    epochs: list[int] = []
    if row.log_out and Path(row.log_out).is_file():
        for line in Path(row.log_out).read_text(encoding="utf-8", errors="replace").splitlines():
            m = _EPOCH.match(line)
            if m and f"{metric}=" in line:
                epochs.append(int(m.group(1)))
    if len(epochs) < len(values):  # not the trainer's lines (or a restart): number the reports
        epochs = list(range(1, len(values) + 1))
    return [[e, v] for e, v in zip(epochs[-len(values) :] if values else [], values, strict=True)]


def tune_trials(work_dir: str | Path) -> list[dict[str, Any]]:
    store = _open(work_dir)
    try:
        metric, _, _ = _objective(store)
        strategies = Experiment(store.get_meta("spec") or {}).objective.metric_strategies
        out = []
        for row in store.trials():
            metrics: dict[str, float] = {}
            for m in row.metrics if row.observation is not None else []:
                strategy = strategies.get(m.name, "latest")
                try:
                    metrics[m.name] = float(m.value(strategy))
                except ValueError:
                    continue
            curve = _curve(row, store, metric)
            out.append(
                {
                    "name": row.name,
                    "status": row.status,
                    "assignments": row.assignments,
                    "labels": row.labels,
                    "metrics": metrics,
                    "curve": curve,
                    "epochs": len(curve),
                }
            )
        return out
    finally:
        store.close()


def tune_best(work_dir: str | Path) -> dict[str, Any] | None:
    result = Path(work_dir) / "result.json"
    store = _open(work_dir)
    try:
        metric, otype, _ = _objective(store)
    finally:
        store.close()
    if not result.is_file():
        return None
    best = json.loads(result.read_text(encoding="utf-8")).get("currentOptimalTrial")
    if not best:
        return None
    return {**best, "objective": {"type": otype, "metric": metric}}


# scalars a YAML 1.2 reader (kubectl) would not read as strings: quote them when they are strings
_NOT_A_STRING = re.compile(
    r"[-+]?(\d[\d_]*)?\.?\d*([eE][-+]?\d+)?|0x[0-9a-fA-F]+|0o[0-7]+|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"
    r"|true|True|TRUE|false|False|FALSE|null|Null|NULL|~|yes|no|on|off|y|n|Yes|No|On|Off|Y|N"
)


class _KubeDumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if value == "" or _NOT_A_STRING.fullmatch(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_KubeDumper.add_representer(str, _str_representer)


def experiment_yaml(work_dir: str | Path) -> str:
    """The Experiment the local run ran (after its overrides), as YAML that kubectl reads back alike."""
    store = _open(work_dir)
    try:
        spec = store.get_meta("spec") or {}
    finally:
        store.close()
    return yaml.dump(spec, Dumper=_KubeDumper, sort_keys=False, default_flow_style=False)


def write_tune_dir(work_dir: str | Path, tune_dir: str | Path) -> None:
    """Write ``tune/trials.json``, ``tune/best.json`` and ``tune/experiment.yaml`` for a run directory."""
    tune_dir = Path(tune_dir)
    tune_dir.mkdir(parents=True, exist_ok=True)
    (tune_dir / "trials.json").write_text(
        json.dumps(tune_trials(work_dir), indent=2) + "\n", encoding="utf-8"
    )
    best = tune_best(work_dir)
    if best is not None:
        (tune_dir / "best.json").write_text(json.dumps(best, indent=2) + "\n", encoding="utf-8")
    (tune_dir / "experiment.yaml").write_text(experiment_yaml(work_dir), encoding="utf-8")


def _arg(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.partition("=")[2]
    return None


# parameter names the seed-000 table reads (ner-asha.yaml's), and the trainer flags behind them
_COLUMNS = {
    "learning_rate": "--learning-rate",
    "weight_decay": "--weight-decay",
    "warmup_ratio": "--warmup-ratio",
    "attention_dropout": "--attention-dropout",
    "hidden_dropout": "--hidden-dropout",
    "batch_size": "--per-device-train-batch-size",
}


def hyperparam_row(work_dir: str | Path, hpo_alg: str) -> Any:
    """The best trial as a :class:`kftune.report.tables.HyperparamRow` (None if no best trial)."""
    from kftune.report.tables import HyperparamRow

    best = tune_best(work_dir)
    if best is None:
        return None
    store = _open(work_dir)
    try:
        row = store.trial(best["bestTrialName"])
    finally:
        store.close()
    assert row is not None
    values: dict[str, Any] = {}
    for field, flag in _COLUMNS.items():
        text = row.assignments.get(field) or _arg(row.argv, flag)
        if text is None:
            continue
        values[field] = int(float(text)) if field == "batch_size" else float(text)
    return HyperparamRow(
        tag_family=_arg(row.argv, "--tag-family") or "original",
        trained_on=_arg(row.argv, "--train-variant") or "cased",
        hpo_alg=hpo_alg,
        **values,
    )


def best_objective(work_dir: str | Path) -> tuple[str, float] | None:
    """(metric, value) of the best trial under its strategy."""
    best = tune_best(work_dir)
    if best is None:
        return None
    store = _open(work_dir)
    try:
        metric, _, strategy = _objective(store)
        row = store.trial(best["bestTrialName"])
    finally:
        store.close()
    assert row is not None
    return metric, float(objective_text(row, metric, strategy))
