"""Steps around the run: ``start`` (run.json), ``prepare`` (data + model caches), ``register``
(the registry's :func:`register`) and ``report`` (the report's :func:`build_report`)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from kftune.steps.retrain import StepFailed
from kftune.steps.rundir import (
    MATRIX_JSON,
    PARENT_PIPELINES,
    RUN_JSON,
    RunDir,
    now_iso,
    read_json,
    resolve_run_dir,
    write_json,
)


def start(
    run_dir: str,
    job_id: str,
    *,
    pipeline: str,
    task: str,
    model: str,
    data: str,
    tag_family: str = "",
    train_variant: str = "",
    experiment: str = "",
    runs_root: str = "/cache/runs",
) -> str:
    """Create the run directory and its run.json (status running); returns its path."""
    import yaml

    from kftune.registry.tracking import git_sha
    from kftune.steps.tune import experiment_text

    raw = (yaml.safe_load(experiment_text(experiment)) or {}) if experiment else {}
    spec = raw.get("spec") or {}
    hpo_algorithm = str((spec.get("algorithm") or {}).get("algorithmName") or "")
    if (spec.get("earlyStopping") or {}).get("algorithmName"):
        hpo_algorithm += "+" + str(spec["earlyStopping"]["algorithmName"])

    path = resolve_run_dir(run_dir, job_id, runs_root)
    rd = RunDir(Path(path), MATRIX_JSON if pipeline in PARENT_PIPELINES else RUN_JSON)
    rd.path.mkdir(parents=True, exist_ok=True)
    info = rd.info()
    info.update(
        pipeline=pipeline,
        tag_family=tag_family,
        train_variant=train_variant,
        task=task,
        model=model,
        data=data,
        hpo_algorithm=hpo_algorithm,
        experiment=str((raw.get("metadata") or {}).get("name") or ""),
        git_sha=git_sha(),
        job_id=job_id,
        status="running",
    )
    info.setdefault("started", now_iso())
    write_json(rd.run_json, info)
    return str(rd.path)


def prepare(task: str, data: str, model: str, tag_family: str = "original", mapping: str = "") -> dict:
    """Build what every trial would otherwise race to build: the corpus (demo corpora are
    generated once into KFTUNE_HOME), each casing variant of it (checked to apply), and the
    model (the tiny model's vocabulary and weights are cached)."""
    if not data or not model:  # "as in the Experiment file": the trials resolve them (cluster paths)
        print("prepare: data/model as in the Experiment file: nothing to build here")
        return {"task": task, "data": data, "model": model, "skipped": True}
    from kftune.data import apply_variant, load_corpus
    from kftune.evaluate.crossvariant import variants_for
    from kftune.train.models import resolve_model

    if task == "mlm":
        corpus = load_corpus(data, task)
    else:
        corpus = load_corpus(data, task, family=tag_family or "original", mapping=mapping or None)
    sizes = {k: len(v) for k, v in corpus.splits.items()}
    variants = {}
    for variant in variants_for(task) if task != "mlm" else ():
        variants[variant] = len(apply_variant(corpus.splits.get("dev") or [], variant, 0))
    model_dir = str(resolve_model(model))
    summary = {"task": task, "data": data, "model": model_dir, "sizes": sizes, "variants": sorted(variants)}
    print(f"prepare: {summary}")
    return summary


def register(run_dir: str, name: str) -> dict[str, Any]:
    """Push the run's best seed to the MLflow Model Registry (``kftune.registry.register``: it
    decides the alias, writes the model card and ``registry.json``). A server that is down fails
    the step with the registry's message, which names the command that registers the same run
    directory later; the retrained models stay in the run directory."""
    import kftune.registry as registry

    if "register" not in getattr(registry, "__all__", ()) and not hasattr(registry, "register"):
        raise StepFailed("register: this kftune has no model registry (kftune.registry.register)")
    rd = RunDir.at(run_dir)
    result = registry.register(rd.path, name=name)
    data = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    if not rd.registry_json.is_file():
        write_json(rd.registry_json, data)
    print(
        f"register: {data.get('name')} version {data.get('version')} -> {data.get('alias')} ({data.get('reason')})"
    )
    return data


def _copy_artifacts(md: Path, html: Path, markdown_path: str, html_path: str) -> None:
    for src, dst in ((md, markdown_path), (html, html_path)):
        if dst and Path(src).is_file():
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)


def report(run_dir: str, markdown_path: str = "", html_path: str = "", status: str = "succeeded") -> str:
    """Mark the run finished, write ``report/`` (the report module's ``build_report`` when this
    kftune has it, else :func:`run_report`), copy report.md/report.html to the KFP artifact paths.
    Returns the report directory."""
    rd = RunDir.at(run_dir)
    if status:
        rd.update_info(status=status, finished=now_iso())
    build_report = _build_report()
    if build_report is not None:
        from kftune.report import write_report

        paths = write_report(build_report(rd.path), rd.report)
    else:
        paths = run_report(rd.path)
    _copy_artifacts(paths.markdown, paths.html, markdown_path, html_path)
    print(f"report: {paths.html}", file=sys.stderr)
    return str(paths.html.parent)


def _build_report():
    """The report module's ``build_report(run_dir) -> Report`` (reads any run directory, or a
    directory of them), or None in a kftune without it."""
    try:
        from kftune.report.build import build_report
    except ImportError:
        return None
    return build_report


def run_report(run_dir: str | Path):
    """A one-configuration report from the run directory alone: evaluation matrices (mean over
    seeds), the best hyperparameters, the per-seed table with comparison.json's tests, the
    search's trials. Returns ``ReportPaths``."""
    from kftune.evaluate.stats import Comparison
    from kftune.report import NamedComparison, Report, SeedRun, SeedsTable, TrialRecord, write_report
    from kftune.steps.retrain import seed_scores

    rd = RunDir.at(run_dir)
    info = rd.info()
    dev, test, hp = matrix_rows(rd.path)
    runs = [SeedRun(s, seed_scores(rd.retrain(s))) for s in rd.seeds()]
    comp = read_json(rd.comparison_json, {}) or {}
    metric = comp.get("metric") or ""
    named = [
        NamedComparison(c["metric"], c["against"], Comparison.from_dict(c["comparison"]))
        for c in comp.get("comparisons") or []
        if c.get("comparison")
    ]
    shown = [m for m in (metric, metric.replace("test_", "dev_")) if m] or None
    extra = [k for k in (runs[0].metrics if runs else {}) if k.startswith("test_") and k not in (shown or [])]
    seeds = [SeedsTable(str(info.get("model") or "model"), runs, metrics=(shown or []) + extra[:3],
                        comparisons=named)] if runs else []  # fmt: skip
    best = read_json(rd.best_json, {}) or {}
    objective = (best.get("objective") or {}).get("metric") or "objective"
    direction = (best.get("objective") or {}).get("type") or "maximize"
    trials = []
    for t in read_json(rd.trials_json, []) or []:
        labels = t.get("labels") or {}
        rung = labels.get("kftune.io/rung")
        trials.append(
            TrialRecord(
                t.get("name", "?"),
                (t.get("metrics") or {}).get(objective),
                {k: _num_or_str(v) for k, v in (t.get("assignments") or {}).items()},
                state="COMPLETE" if t.get("status") == "Succeeded" else "FAIL",
                rung=int(rung) if str(rung or "").isdigit() else None,
                curve=[tuple(p) for p in t.get("curve") or []],
                parent=labels.get("kftune.io/parent-trial") or None,
            )
        )
    has_matrix = any(r.scores for r in dev + test)
    report = Report(
        title=f"{info.get('pipeline', 'run')}: {info.get('task', '')} {info.get('tag_family') or ''} "
        f"{info.get('train_variant') or ''}".strip(),
        description=f"Model {info.get('model') or '-'} on {info.get('data') or '-'}; search "
        f"{info.get('experiment') or '-'} ({info.get('hpo_algorithm') or '-'}), best trial "
        f"{best.get('bestTrialName') or '-'}; git {str(info.get('git_sha') or '-')[:12]}.",
        dev_matrix=dev if has_matrix else (),
        test_matrix=test if has_matrix else (),
        hyperparameters=hp if info.get("task") == "ner" else (),
        seeds=seeds,
        trials=trials,
        objective=objective,
        direction=direction,
    )
    return write_report(report, rd.report)


def _num_or_str(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


METRIC_LABELS = {"macro_f1": "macro-F1", "accuracy": "Accuracy", "f1": "F1", "precision": "P", "recall": "R",
                 "loss": "loss"}  # fmt: skip
_LEGACY_KEYS = ("macro_f1", "accuracy", "f1")


def _finetune_runs(task_dir: Path) -> list[dict[str, float]]:
    from kftune.steps.retrain import seed_scores

    return [
        seed_scores(d)
        for d in sorted(task_dir.glob("seed-*"))
        if d.is_dir() and (d / "metrics.json").is_file()
    ]


def _glue_tasks(rd: RunDir, plan: dict | None) -> list[tuple[str, tuple[str, ...]]]:
    """(task name, metrics) in the plan's order; a run without a plan (before multi-task
    fine-tuning) has one directory per task and the metrics its runs report."""
    if plan:
        return [(t["name"], tuple(t["metrics"])) for t in plan["tasks"]]
    out = []
    for task_dir in sorted(p for p in (rd.path / "finetune").glob("*") if p.is_dir()):
        per_seed = _finetune_runs(task_dir)
        keys = tuple(
            k for k in _LEGACY_KEYS if per_seed and all(f"test_{k}" in s or f"dev_{k}" in s for s in per_seed)
        )
        if keys:
            out.append((task_dir.name, keys))
    return out


def glue_report(run_dir: str, markdown_path: str = "", html_path: str = "") -> str:
    """``mlm``'s report: the GLUE-style table (per model, the mean and the max over the fine-tuning
    runs of each task; the continued-pretraining model and the original one) with both models'
    perplexity (``perplexity.json``), plus the search's trials."""
    from kftune.report import GlueRow, GlueTable, GlueTask, Report, TrialRecord, write_report
    from kftune.steps.finetune import ORIGINAL, read_plan

    rd = RunDir.at(run_dir)
    rd.update_info(status="succeeded", finished=now_iso())
    info = rd.info()
    plan = read_plan(rd)
    model = str(info.get("model") or "model")
    label = Path(model).name
    roots = {f"{label} + continued pretraining": rd.path}
    if plan and plan.get("compare_original"):
        roots[f"{label} original"] = rd.path / ORIGINAL
    notes: list[str] = []
    tasks: list[GlueTask] = []
    runs: dict[str, dict[str, list[list[float]]]] = {row: {} for row in roots}
    for name, metrics in _glue_tasks(rd, plan):
        per_row = {row: _finetune_runs(root / "finetune" / name) for row, root in roots.items()}
        every = [s for scores in per_row.values() for s in scores]
        if not every:
            notes.append(f"{name}: no completed fine-tuning run")
            continue
        split = "test" if all(f"test_{m}" in s for s in every for m in metrics) else "dev"
        if split == "dev":
            notes.append(f"{name}: no test split in every run: the column holds dev scores (best epoch)")
        keys = [f"{split}_{m}" for m in metrics]
        tasks.append(
            GlueTask(
                name, tuple(("dev " if split == "dev" else "") + METRIC_LABELS.get(m, m) for m in metrics)
            )
        )
        for row, scores in per_row.items():
            usable = [[s[k] for k in keys] for s in scores if all(k in s for k in keys)]
            if usable:
                runs[row][name] = usable
    extras_names = ["dev perplexity", "test perplexity"]
    extras: dict[str, dict[str, float]] = {row: {} for row in roots}
    measured = read_json(rd.path / "perplexity.json") or {}
    for row, key in zip(roots, ("pretrained", ORIGINAL), strict=False):
        entry = (measured.get("models") or {}).get(key) or {}
        if entry.get("unavailable"):
            notes.append(f"{row}: {entry['unavailable']}")
        for split in ("dev", "test"):
            if isinstance(entry.get(split), dict) and "perplexity" in entry[split]:
                extras[row][f"{split} perplexity"] = entry[split]["perplexity"]
    if not measured:  # a run from before perplexity.json: the retrain's own evaluation
        from kftune.steps.retrain import seed_scores

        for seed in rd.seeds()[:1]:
            sc = seed_scores(rd.retrain(seed))
            for split in ("dev", "test"):
                if f"{split}_perplexity" in sc:
                    extras[next(iter(roots))][f"{split} perplexity"] = sc[f"{split}_perplexity"]
    extras_names = [e for e in extras_names if any(e in x for x in extras.values())]
    trials = [
        TrialRecord(t["name"], (t.get("metrics") or {}).get("eval_perplexity"), t.get("assignments") or {},
                    curve=[tuple(p) for p in t.get("curve") or []])
        for t in read_json(rd.trials_json, []) or []
    ]  # fmt: skip
    counts = sorted({len(v) for r in runs.values() for v in r.values()})
    n_text = "-" if not counts else str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    compared = " and the original model" if len(roots) > 1 else ""
    report = Report(
        title=f"{info.get('pipeline', 'mlm')}: continued pretraining, then fine-tuning",
        description=f"Model {model} pretrained further on {info.get('data') or '-'} (objective: dev perplexity), "
        f"then it{compared} fine-tuned {n_text} times per task with the same arguments and seeds. "
        "Each task's column is x100; Mean is over the runs, max is the run with the best mean of the "
        "task's metrics (seed 003: fine-tuning varies a lot between runs). Perplexity: the masked-LM "
        "perplexity on the pretraining corpus's dev and test split, both models measured on the same "
        "examples and masks.",
        glue=GlueTable(
            tasks,
            [GlueRow(row, runs[row], extras[row]) for row in roots],
            average_excluding=tuple((plan or {}).get("average_excluding") or ()),
            extras=extras_names,
        ),
        trials=trials,
        objective="eval_perplexity",
        direction="minimize",
        notes=notes,
    )
    paths = write_report(report, rd.report)
    _copy_artifacts(paths.markdown, paths.html, markdown_path, html_path)
    return str(rd.report)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def matrix_rows(run_dir: Path) -> tuple[list, list, list]:
    """(dev rows, test rows, hyperparameter rows) of one configuration's run directory: F1 on
    each casing variant averaged over the retrained seeds, and the best trial's parameters."""
    from kftune.report import HyperparamRow, MatrixRow

    rd = RunDir.at(run_dir)
    info = rd.info()
    family, variant = str(info.get("tag_family") or "-"), str(info.get("train_variant") or "-")
    alg = str(info.get("hpo_algorithm") or "-")
    per_split: dict[str, dict[str, list[float]]] = {"dev": {}, "test": {}}
    for path in sorted((rd.path / "eval").glob("seed-*.json")):
        data = read_json(path, {}) or {}
        for split in per_split:
            for v, metrics in (data.get(split) or {}).items():
                if isinstance(metrics, dict) and isinstance(metrics.get("f1"), int | float):
                    per_split[split].setdefault(v, []).append(float(metrics["f1"]))
    dev = [MatrixRow(family, variant, alg, {v: _mean(x) for v, x in per_split["dev"].items()})]
    test = [MatrixRow(family, variant, alg, {v: _mean(x) for v, x in per_split["test"].items()})]
    best = read_json(rd.best_json, {}) or {}
    params = {p.get("name"): p.get("value") for p in best.get("parameterAssignments") or []}

    def num(key: str, cast=float):
        try:
            return cast(float(params[key])) if key in params else None
        except (TypeError, ValueError):
            return None

    hp = [
        HyperparamRow(family, variant, alg, num("learning_rate"), num("weight_decay"), num("warmup_ratio"),
                      num("attention_dropout"), num("hidden_dropout"), num("batch_size", int))
    ]  # fmt: skip
    return dev, test, hp


def matrix_report(run_dir: str, markdown_path: str = "", html_path: str = "") -> str:
    """``ner-matrix``'s report: the seed-000 development and test tables (F1 of each
    configuration's models, mean over seeds, on the seven casing variants) and the successful
    hyperparameters, one row per configuration found under ``run_dir``."""
    from kftune.report import Report, write_report

    rd = RunDir.at(run_dir)
    rd.update_info(status="succeeded", finished=now_iso())
    build_report = _build_report()
    if build_report is not None:
        from kftune.report import write_report

        paths = write_report(build_report(rd.path), rd.report)
        _copy_artifacts(paths.markdown, paths.html, markdown_path, html_path)
        return str(rd.report)
    configs = sorted(p.parent for p in rd.path.glob("*/run.json"))
    dev, test, hp = [], [], []
    notes = []
    for cfg in configs:
        status = (read_json(cfg / "run.json", {}) or {}).get("status")
        if status != "succeeded":
            notes.append(f"{cfg.name}: {status or 'missing'}")
        d, t, h = matrix_rows(cfg)
        dev += d
        test += t
        hp += h
    report = Report(
        title="NER casing matrix: {original, simple} x {cased, uncased, uncased-cased-mix}",
        description="Each row: a model tuned and retrained on one tag family and training variant; "
        "each column: the casing variant it is evaluated on. F1, mean over the retrained seeds.",
        dev_matrix=dev,
        test_matrix=test,
        hyperparameters=hp,
        notes=notes,
    )
    paths = write_report(report, rd.report)
    _copy_artifacts(paths.markdown, paths.html, markdown_path, html_path)
    return str(rd.report)
