"""`kftune demo`'s pipeline stage, shrunk by flags: ner-hpo through kfp.local, the registry in
DIR/mlflow.db with the champion alias, the report, and the closing lines."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from kftune.demo import main as demo_main

pytestmark = pytest.mark.e2e


def test_demo_pipeline_stage_registers_a_champion_and_ends_with_report_and_mlflow_ui(
    kftune_home, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "demo-out"
    argv = ["--out", str(out), "--stages", "prepare,pipeline", "--seeds", "2", "--trials", "2",
            "--max-train-samples", "300", "--max-eval-samples", "100"]  # fmt: skip
    cwd = os.getcwd()
    assert demo_main(argv) == 0
    assert os.getcwd() == cwd
    lines = capsys.readouterr().out.strip().splitlines()
    (run_dir,) = (out / "runs").glob("ner-hpo-*/")
    registry = json.loads((run_dir / "registry.json").read_text())
    assert registry["alias"] == "champion" and registry["name"] == "kftune-demo-ner-original-uncased"
    assert lines[-2] == f"report: {run_dir / 'report' / 'report.html'}"
    assert lines[-1].endswith(f"mlflow ui --backend-store-uri sqlite:///{out.resolve() / 'mlflow.db'}")
    assert (run_dir / "report" / "report.html").is_file()
    # the registered model's artifacts live beside the database, not in the working directory
    with sqlite3.connect(out / "mlflow.db") as db:
        locations = [row[0] for row in db.execute("select artifact_location from experiments")]
    assert locations and all(str(out.resolve()) in loc for loc in locations)
