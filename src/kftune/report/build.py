"""A :class:`~kftune.report.render.Report` from a run directory (or a directory of them).

    from kftune.report.build import build_report
    report = build_report("runs/ner-hpo-1")          # one configuration
    report = build_report("runs/ner-matrix-1")       # a directory of run directories

One run directory (docs/contracts.md, "Run directories") gives:

- development and test matrices: one row (tag family, trained on, HPO algorithm) with the objective
  on each casing variant, the mean over the completed seeds of ``eval/seed-<S>.json``;
- the successful-hyperparameters row from ``tune/best.json`` (without a search: the values the seeds
  were trained with, HPO algorithm ``-``);
- a batch-size table when the search varied ``batch_size`` only (columns BS=..., rows dev and
  test objective, the mean over the trials with that batch size);
- the seeds table: dev and test objective and the task's other test metrics per seed, mean ± std,
  and p-values from ``comparison.json``;
- the search's trials for the plots (optimisation history, importance, parallel coordinates,
  learning curves by ASHA rung from ``curve`` and the ``kftune.io/rung`` / ``kftune.io/parent-trial``
  labels);
- notes: what was missing (no tune/, one seed, failed seeds, unreadable files) and the caveats.

A directory of run directories (``ner-matrix``) gives one matrix row, one hyperparameter row and
one seeds table per configuration; its search plots are in each configuration's own report.
Nothing here raises for missing pieces: only a path that is not a run directory at all does
(``UserError``).
"""

from __future__ import annotations

from pathlib import Path

from kftune.registry.rundir import (
    RunDir,
    find_run_dirs,
    higher_is_better,
    load_run_dir,
    metric_base,
    read_comparisons,
)
from kftune.registry.rundir import metric_label as column_label
from kftune.report.plots import TrialRecord
from kftune.report.render import Report
from kftune.report.tables import (
    VARIANTS,
    BatchSizeRow,
    BatchSizeTable,
    HyperparamRow,
    MatrixRow,
    NamedComparison,
    SeedRun,
    SeedsTable,
)

METRIC_LABELS = {
    "f1": "F1",
    "macro_f1": "macro-F1",
    "accuracy": "Accuracy",
    "loss": "Loss",
    "perplexity": "Perplexity",
}
HPO_LABELS = {"asha": "ASHA", "bohb": "BOHB", "pbt": "PBT", "tpe": "TPE", "hyperband": "Hyperband",
              "random": "Random", "grid": "Grid", "sobol": "Sobol", "cmaes": "CMA-ES", "bayesianoptimization": "BO",
              "gp": "GP"}  # fmt: skip
TRIAL_STATES = {"succeeded": "COMPLETE", "earlystopped": "EARLY_STOPPED", "failed": "FAIL", "killed": "KILLED",
                "metricsunavailable": "FAIL", "running": "RUNNING", "created": "RUNNING"}  # fmt: skip
# Katib parameter names (katib/*.yaml) and their trainer spellings -> HyperparamRow fields
HYPERPARAM_ALIASES = {
    "learning_rate": ("learning_rate",),
    "weight_decay": ("weight_decay",),
    "warmup_ratio": ("warmup_ratio",),
    "attention_dropout": ("attention_dropout", "attention_probs_dropout_prob"),
    "hidden_dropout": ("hidden_dropout", "hidden_dropout_prob"),
    "batch_size": ("batch_size", "per_device_train_batch_size"),
}
BATCH_KEYS = ("batch_size", "per_device_train_batch_size")
RESOURCE_KEYS = ("num_epochs",)  # the ASHA/Hyperband budget: shown as the rung, not as a hyperparameter
FAMILY_ORDER = ("original", "simple")


def metric_label(metric: str) -> str:
    base = metric_base(metric)
    return METRIC_LABELS.get(base, base)


def hpo_label(algorithm: str) -> str:
    if not algorithm or algorithm == "-":
        return "-"
    return HPO_LABELS.get(algorithm.lower().replace("-", "").replace("_", ""), algorithm)


def _number(text: object) -> float | int | str:
    s = str(text).strip()
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


def _float(x: object) -> float | None:
    v = _number(x) if x is not None else None
    return float(v) if isinstance(v, (int, float)) else None


# ----------------------------------------------------------------------------------------------
# Pieces of one run directory


def matrix_row(rd: RunDir, split: str) -> MatrixRow | None:
    scores = {v: s for v, s in rd.matrix(split).items() if v in VARIANTS}
    return MatrixRow(rd.tag_family, rd.train_variant, hpo_label(rd.hpo_algorithm), scores) if scores else None


def hyperparam_row(rd: RunDir) -> HyperparamRow | None:
    """The best configuration of the search, else the values the seeds were trained with."""
    best = rd.best_hyperparameters()
    source = best
    alg = hpo_label(rd.hpo_algorithm)
    if not best:
        args = rd.completed[0].args if rd.completed else {}
        source = {k: v for k, v in args.items() if v is not None}
        source.setdefault("batch_size", args.get("per_device_train_batch_size"))
        alg = "-"
    values = {}
    for field_name, names in HYPERPARAM_ALIASES.items():
        for n in names:
            if source.get(n) is not None:
                values[field_name] = _float(source[n])
                break
    if not any(v is not None for v in values.values()):
        return None
    bs = values.pop("batch_size", None)
    return HyperparamRow(
        rd.tag_family, rd.train_variant, alg, **values, batch_size=None if bs is None else int(bs)
    )


def seeds_table(rd: RunDir, *, model: str | None = None) -> SeedsTable | None:
    """Columns ``dev F1``, ``test F1``, ... (labels of RunDir.score_columns); comparison.json's p-values."""
    columns = rd.score_columns()
    if not rd.completed or not columns:
        return None
    labels = {c: column_label(c) for c in columns}
    runs = [SeedRun(r.seed, {labels[c]: r.scores().get(c) for c in columns}) for r in rd.completed]
    comparisons = [
        NamedComparison(labels[c.metric], c.against, c.comparison)
        for c in read_comparisons(rd)
        if c.metric in labels
    ]
    return SeedsTable(model or rd.label, runs, metrics=list(labels.values()), comparisons=comparisons)


def _varying(trials: list[dict]) -> set[str]:
    seen: dict[str, set[str]] = {}
    for t in trials:
        for k, v in (t.get("assignments") or {}).items():
            seen.setdefault(str(k), set()).add(str(v))
    return {k for k, vals in seen.items() if len(vals) > 1 and k not in RESOURCE_KEYS}


def batch_size_table(rd: RunDir) -> BatchSizeTable | None:
    """Only when the search varied the batch size and nothing else (seed 000's BS table)."""
    trials = rd.trials or []
    varying = _varying(trials)
    if len(varying) != 1 or next(iter(varying)) not in BATCH_KEYS:
        return None
    key = next(iter(varying))
    metric, direction = rd.objective_spec()
    obj = metric_base(metric)
    dev: dict[int, list[float]] = {}
    test: dict[int, list[float]] = {}
    for t in trials:
        bs = _number((t.get("assignments") or {}).get(key))
        if not isinstance(bs, int):
            continue
        metrics = t.get("metrics") or {}
        for target, name in ((dev, metric), (test, f"test_{obj}")):
            v = _float(metrics.get(name))
            if v is not None:
                target.setdefault(bs, []).append(v)
    if not dev:
        return None
    sizes = sorted(set(dev) | set(test))
    label = metric_label(obj)
    rows = [BatchSizeRow(f"{label}-Dev", {b: sum(v) / len(v) for b, v in dev.items()})]
    if test:
        rows.append(BatchSizeRow(f"{label}-Test", {b: sum(v) / len(v) for b, v in test.items()}))
    return BatchSizeTable(sizes, rows, higher_is_better=direction == "maximize")


def trial_records(rd: RunDir) -> list[TrialRecord]:
    """tune/trials.json as plot input, in creation order."""
    trials = rd.trials or []
    metric, _ = rd.objective_spec()
    has_rungs = any("kftune.io/rung" in (t.get("labels") or {}) for t in trials)
    out = []
    for i, t in enumerate(trials):
        labels = t.get("labels") or {}
        params = {
            str(k): _number(v)
            for k, v in (t.get("assignments") or {}).items()
            if not (has_rungs and k in RESOURCE_KEYS)
        }
        rung = _number(labels.get("kftune.io/rung", ""))
        curve = []
        for point in t.get("curve") or ():
            try:
                curve.append((float(point[0]), float(point[1])))
            except (TypeError, ValueError, IndexError):
                continue
        status = str(t.get("status") or "")
        out.append(
            TrialRecord(
                name=str(t.get("name") or f"trial-{i}"),
                value=_float((t.get("metrics") or {}).get(metric)),
                params=params,
                state=TRIAL_STATES.get(status.lower(), status.upper() or "COMPLETE"),
                rung=rung if isinstance(rung, int) else None,
                curve=curve,
                parent=str(labels.get("kftune.io/parent-trial") or "") or None,
            )
        )
    return out


def _caveats(runs: list[RunDir]) -> list[str]:
    out = []
    if any(rd.best or rd.trials for rd in runs):
        out.append(
            "Hyperparameters were chosen on the development set: development scores are optimistic "
            "(a long search overfits the dev set), so compare configurations on test."
        )
    if any(len(rd.completed) > 1 for rd in runs):
        out.append(
            "Matrix cells are the mean over a configuration's completed seeds; the seeds tables show each seed."
        )
    return out


def _registry_line(rd: RunDir) -> str | None:
    reg = rd.registry
    if not reg:
        return None
    return (
        f"Registered as {reg.get('name')} version {reg.get('version')} ({reg.get('model_uri')}); alias at "
        f"registration: {reg.get('alias')} - {reg.get('reason')}."
    )


def _describe(rd: RunDir) -> str:
    info = rd.info
    facts = [f"Run directory {rd.path.resolve()}"]
    if rd.task:
        facts.append(f"task {rd.task}")
    if rd.base_model:
        facts.append(f"model {rd.base_model}")
    if rd.data:
        facts.append(f"data {rd.data}")
    if rd.task == "ner":
        facts.append(f"{rd.tag_family} tags")
    facts.append(f"trained on {rd.train_variant}")
    if rd.hpo_algorithm != "-":
        facts.append(f"search {rd.hpo_algorithm}")
    if rd.git_sha:
        facts.append(f"git {rd.git_sha[:12]}")
    for key in ("status", "started", "finished"):
        if info.get(key):
            facts.append(f"{key} {info[key]}")
    text = ", ".join(facts) + "."
    seeds = [r.seed for r in rd.completed]
    if seeds:
        text += (
            f" {len(seeds)} completed seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))}); models "
            f"are compared on {rd.compare_metric}."
        )
    return text


# ----------------------------------------------------------------------------------------------
# Reports


def _single(rd: RunDir, title: str | None) -> Report:
    metric, direction = rd.objective_spec()
    dev, test = matrix_row(rd, "dev"), matrix_row(rd, "test")
    hp = hyperparam_row(rd)
    seeds = seeds_table(rd)
    paragraphs = [_describe(rd)]
    reg = _registry_line(rd)
    if reg:
        paragraphs.append(reg)
    default_title = f"{rd.pipeline or 'run'} {rd.path.resolve().name}: {rd.task}"
    if rd.task == "ner":
        default_title += f", {rd.tag_family} tags"
    default_title += f", trained on {rd.train_variant}"
    return Report(
        title=title or default_title,
        description="\n\n".join(paragraphs),
        metric=metric_label(rd.objective),
        dev_matrix=[dev] if dev else [],
        test_matrix=[test] if test else [],
        hyperparameters=[hp] if hp else [],
        batch_sizes=batch_size_table(rd),
        seeds=[seeds] if seeds else [],
        trials=trial_records(rd),
        objective=metric,
        direction=direction,
        bold_best=False,
        notes=[*rd.notes, *_caveats([rd])],
    )


def _sort_key(rd: RunDir) -> tuple:
    family = FAMILY_ORDER.index(rd.tag_family) if rd.tag_family in FAMILY_ORDER else len(FAMILY_ORDER)
    variant = VARIANTS.index(rd.train_variant) if rd.train_variant in VARIANTS else len(VARIANTS)
    return (family, rd.tag_family, variant, rd.train_variant, rd.path.name)


def _matrix(parent: Path, runs: list[RunDir], title: str | None) -> Report:
    runs = sorted(runs, key=_sort_key)
    objectives = {rd.objective for rd in runs}
    metric = metric_label(runs[0].objective) if len(objectives) == 1 else "objective"
    dev = [r for r in (matrix_row(rd, "dev") for rd in runs) if r]
    test = [r for r in (matrix_row(rd, "test") for rd in runs) if r]
    hps = [h for h in (hyperparam_row(rd) for rd in runs) if h]
    seeds = [s for s in (seeds_table(rd, model=f"{rd.label} ({rd.path.name})") for rd in runs) if s]
    notes = [f"{rd.path.name}: {n}" for rd in runs for n in rd.notes]
    missing = [rd.path.name for rd in runs if not rd.completed]
    if missing:
        notes.append(f"no completed seed in {', '.join(missing)}: their matrix rows are empty")
    if any(rd.trials for rd in runs):
        notes.append(
            "Search plots (optimisation history, importance, learning curves) are in each configuration's own "
            "report: `kftune report " + str(parent / runs[0].path.name) + "`."
        )
    direction = "maximize" if higher_is_better(runs[0].objective) else "minimize"
    desc = [
        f"{len(runs)} configurations in {parent.resolve()}: "
        + ", ".join(f"{rd.path.name} ({rd.label}, {len(rd.completed)} seeds)" for rd in runs)
        + "."
    ]
    desc += [line for line in (_registry_line(rd) for rd in runs) if line]
    return Report(
        title=title or f"{parent.resolve().name}: {len(runs)} configurations",
        description="\n\n".join(desc),
        metric=metric,
        dev_matrix=dev,
        test_matrix=test,
        hyperparameters=hps,
        seeds=seeds,
        direction=direction,
        bold_best=True,
        notes=[*notes, *_caveats(runs)],
    )


def build_report(path: str | Path, *, title: str | None = None) -> Report:
    """The report of one run directory, or of a directory of run directories; UserError otherwise."""
    path = Path(path)
    dirs = find_run_dirs(path)
    if dirs == [path]:
        return _single(load_run_dir(path), title)
    return _matrix(path, [load_run_dir(d) for d in dirs], title)
