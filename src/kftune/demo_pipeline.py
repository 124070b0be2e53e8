"""The demo's ``pipeline`` stage: the whole local story through the ``ner-hpo`` pipeline itself.

``kftune pipeline run ner-hpo --local`` with demo settings: a small TPE + ASHA search on the tiny
model and the demo NER corpus -> the best configuration retrained with 3 seeds -> every model
evaluated on the seven casing variants of dev and test -> paired comparison with the token-level
baseline -> the MLflow Model Registry in ``DIR/mlflow.db`` (SQLite; the first version becomes
``champion``, later demo runs only take the alias if significantly better) -> the report. Each
demo run is a new run directory ``DIR/runs/ner-hpo-<time>``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class PipelineDemo:
    seeds: int = 3
    trials: int = 6
    parallel: int = 2
    max_epochs: int = 3  # ASHA rungs of 1 and 3 epochs (reduction factor 3)
    learning_rate: str = "1e-3:4e-3"  # a random-init model needs far more than the seed's 6e-6..5e-5
    max_train_samples: int | None = 1500
    max_eval_samples: int | None = 200
    eval_max_samples: int = 200
    model_name: str = "kftune-demo-ner"


def pipeline_params(demo: PipelineDemo, tracking_uri: str, config_file: Path) -> dict[str, Any]:
    return {
        "model": "tiny",
        "data": "demo:ner",
        "train_variant": "uncased",
        "max_trial_count": demo.trials,
        "parallel_trial_count": demo.parallel,
        "num_seeds": demo.seeds,
        "eval_max_samples": demo.eval_max_samples,
        "register": True,
        "model_name": demo.model_name,
        "tracking_uri": tracking_uri,
        "tune_overrides": [
            "--algorithm-setting", f"num_configurations={demo.trials}",
            "--param", f"num_epochs=1:{demo.max_epochs}",
            "--param", f"learning_rate={demo.learning_rate}",
            "--param", "batch_size=16,32",
            "--set-arg", f"--schedule-epochs={demo.max_epochs}",
            "--set-arg", "--max-length=64",
            "--set-arg", f"--config={config_file}",
            "--set-env", "KFTUNE_TRACKING=off",
            "--threads-per-trial", "1",
        ],
    }  # fmt: skip


def run_pipeline_demo(out: Path, demo: PipelineDemo | None = None, say=print) -> dict[str, Any]:
    """Run ner-hpo locally into ``out``; returns {run_dir, report, registry, tracking_uri, seconds}."""
    from kftune.pipelines_cli import run_local

    demo = demo or PipelineDemo()
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    db = out / "mlflow.db"
    tracking_uri = f"sqlite:///{db}"
    config = out / "runs" / "demo-train-config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    train_config = {k: v for k, v in (("max_train_samples", demo.max_train_samples),
                                      ("max_eval_samples", demo.max_eval_samples)) if v}  # fmt: skip
    config.write_text(json.dumps(train_config) + "\n", encoding="utf-8")
    name = f"ner-hpo-{time.strftime('%Y%m%d-%H%M%S')}"
    say(f"kftune pipeline run ner-hpo --local  (run directory {out / 'runs' / name})")
    # The steps run in DIR: MLflow puts a SQLite store's artifacts (the registered model, its card)
    # under ./mlruns of the process that creates the experiment. Caches stay where they were.
    os.environ.setdefault("KFTUNE_HOME", str(Path.cwd().resolve() / ".kftune"))
    os.environ.setdefault("KFTUNE_TRACKING", "off")  # trials and retrains: no MLflow runs of their own
    cwd = Path.cwd()
    t0 = time.perf_counter()
    os.chdir(out)
    try:
        params = pipeline_params(demo, tracking_uri, config)
        run_dir = run_local("ner-hpo", out / "runs", params, full=True, run_name=name, quiet=True)
    finally:
        os.chdir(cwd)
    seconds = time.perf_counter() - t0
    registry = (
        json.loads((run_dir / "registry.json").read_text()) if (run_dir / "registry.json").is_file() else {}
    )
    report = run_dir / "report" / "report.html"
    return {"run_dir": run_dir, "report": report, "registry": registry, "tracking_uri": tracking_uri,
            "db": db, "seconds": seconds}  # fmt: skip


def stage_pipeline(cfg: Any, ctx: Any, say=print) -> dict[str, Any]:
    """The demo stage: run ner-hpo, then say where the report is and how to open the registry."""
    demo = PipelineDemo(
        seeds=cfg.pipeline_seeds,
        trials=cfg.pipeline_trials,
        max_epochs=cfg.pipeline_max_epochs,
        max_train_samples=cfg.pipeline_max_train_samples,
        max_eval_samples=cfg.pipeline_max_eval_samples,
        eval_max_samples=cfg.pipeline_max_eval_samples or 0,
    )
    result = run_pipeline_demo(cfg.out, demo, say=say)
    reg = result["registry"]
    # run_local has said how long the pipeline took and where its run directory is
    if reg:
        say(f"registered {reg.get('model_uri')} -> alias {reg.get('alias')} ({reg.get('reason')})")
    return result


def closing_lines(result: dict[str, Any]) -> list[str]:
    """The demo's last words: the report, and the command that opens the MLflow UI on the registry."""
    db = Path(result["db"])
    return [
        f"report: {result['report']}",
        f"MLflow UI (registry, model card, champion alias): mlflow ui --backend-store-uri sqlite:///{db}",
    ]
