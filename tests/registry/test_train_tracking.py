"""`kftune train` itself tracking into a real MLflow server, and surviving a dead one.

Uses the session ``mlflow_server`` fixture of ``test_tracking.py`` (one server for the session).
"""

from __future__ import annotations

import json

import pytest
from registry_server import _free_port

pytestmark = pytest.mark.server

TRIAL = [
    "--task",
    "ner",
    "--data",
    "demo:ner",
    "--model",
    "tiny",
    "--num-epochs",
    "2",
    "--max-train-samples",
    "300",
    "--max-eval-samples",
    "100",
    "--learning-rate",
    "1e-3",
    "--max-length",
    "48",
    "--train-variant",
    "uncased",
    "--eval-variant",
    "uncased",
    "--seed",
    "3",
    "--experiment",
    "ner-asha",
    "--num-threads",
    "1",
]


def test_train_run_is_one_mlflow_run_with_epochs_params_tags_and_metrics_json(
    mlflow_server, kftune_cli, kftune_home, tmp_path
):
    from mlflow import MlflowClient

    out = tmp_path / "trial-3"
    proc = kftune_cli(
        "train",
        *TRIAL,
        "--output-dir",
        str(out),
        "--trial",
        "trial-3",
        env={"MLFLOW_TRACKING_URI": mlflow_server, "KFTUNE_TRACKING": "on"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warning" not in proc.stderr.lower() or "tracking" not in proc.stderr.lower(), proc.stderr[-2000:]
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("ner-asha")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`kftune.trial` = 'trial-3'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert (tags["kftune.experiment"], tags["kftune.trial"], tags["kftune.variant"], tags["kftune.seed"]) == (
        "ner-asha",
        "trial-3",
        "uncased",
        "3",
    )
    assert "kftune.git_sha" in tags and "kftune.image" in tags
    assert float(run.data.params["learning_rate"]) == pytest.approx(1e-3)
    history = client.get_metric_history(run.info.run_id, "eval_f1")
    assert [m.step for m in history] == [1, 2]
    local = json.loads((out / "metrics.json").read_text())
    assert [round(m.value, 6) for m in history] == [round(h["eval_f1"], 6) for h in local["history"]]
    assert "metrics.json" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_dead_server_never_kills_training_and_sync_uploads_it_later(
    mlflow_server, kftune_cli, kftune_home, tmp_path
):
    from mlflow import MlflowClient

    out = tmp_path / "trial-dead"
    dead = f"http://127.0.0.1:{_free_port()}"
    proc = kftune_cli(
        "train",
        *TRIAL,
        "--output-dir",
        str(out),
        "--trial",
        "trial-dead",
        env={"MLFLOW_TRACKING_URI": dead, "KFTUNE_TRACKING": "on"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [ln.split()[0] for ln in proc.stdout.splitlines()] == ["epoch=1", "epoch=2", "final"]
    warnings = [ln for ln in proc.stderr.splitlines() if "MLflow tracking at" in ln]
    assert len(warnings) == 1 and "kftune track sync" in warnings[0]

    sync = kftune_cli("track", "sync", str(out), env={"MLFLOW_TRACKING_URI": mlflow_server})
    assert sync.returncode == 0, sync.stderr
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("ner-asha")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`kftune.trial` = 'trial-dead'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "eval_f1")] == [1, 2]
