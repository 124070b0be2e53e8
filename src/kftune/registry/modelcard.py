"""Model cards: the README.md published with a registered model, in the style of Hugging Face cards.

:func:`model_card` writes the full card: YAML front matter (``library_name``, ``pipeline_tag``,
``tags``, ``base_model``, ``datasets``, a ``model-index`` with the test results of the published
model on every casing variant and the mean over seeds, and a ``kftune`` block with the registry
facts), then the sections *Model details*, *Training procedure* (search algorithm, objective,
search space, best hyperparameters, retraining settings), *Evaluation* (per-seed table with
mean ± std, evaluation matrix of the published seed and the mean over seeds, comparisons with
p-values and the decision), *Statistical policy*, *Limitations*, *How to use* and *Provenance*.
Tables are rendered by ``kftune.report.tables``, so card and report show the same numbers.

:func:`card_description` is the short form for MLflow descriptions, whose database column holds at
most 5000 characters (``String(5000)`` in MLflow's SQL schema; PostgreSQL enforces it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

from kftune.evaluate.stats import POLICY, format_p
from kftune.registry.decision import CHAMPION, Decision
from kftune.registry.rundir import METRIC_LABELS, RunDir, higher_is_better, metric_base, metric_label
from kftune.report.tables import (
    VARIANTS,
    Cell,
    MatrixRow,
    NamedComparison,
    SeedRun,
    SeedsTable,
    Table,
    comparisons_table,
    fmt_lr,
    matrix_table,
    seeds_table,
    to_markdown,
)

DESCRIPTION_LIMIT = 5000
PIPELINE_TAGS = {"ner": "token-classification", "seqcls": "text-classification", "mlm": "fill-mask"}
TASK_NAMES = {
    "ner": "named-entity recognition",
    "seqcls": "text classification",
    "mlm": "masked language modelling",
}
RETRAIN_SETTINGS = (
    "learning_rate", "weight_decay", "warmup_ratio", "attention_dropout", "hidden_dropout",
    "per_device_train_batch_size", "gradient_accumulation_steps", "num_epochs", "schedule_epochs",
    "lr_scheduler", "optimizer", "max_grad_norm", "label_smoothing", "max_length", "precision",
    "max_train_samples", "max_eval_samples",
)  # fmt: skip


def _fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, var**0.5


def mean_std_text(values: Sequence[float], digits: int = 4) -> str:
    mean, std = _mean_std(values)
    return f"{mean:.{digits}f} (n=1)" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


class CardFacts:
    """The numbers a card shows, computed once from the run directory."""

    def __init__(self, rd: RunDir, published_seed: int):
        self.rd = rd
        self.published = next(r for r in rd.completed if r.seed == published_seed)
        self.seeds = [r.seed for r in rd.completed]
        self.metric = rd.compare_metric
        self.scores = rd.seed_scores(self.metric)
        self.columns = rd.score_columns()
        self.per_seed = {r.seed: r.scores() for r in rd.completed}
        self.matrix_pub = {s: rd.matrix(s, seeds=[published_seed]) for s in ("dev", "test")}
        self.matrix_mean = {s: rd.matrix(s) for s in ("dev", "test")}

    def column_values(self, column: str) -> list[float]:
        return [self.per_seed[s][column] for s in self.seeds if column in self.per_seed[s]]

    @property
    def mean_std(self) -> tuple[float, float | None]:
        return _mean_std(list(self.scores.values()))


# ----------------------------------------------------------------------------------------------
# Front matter


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # repeated blocks written out, as HF cards do
        return True


def dump_yaml(data: dict) -> str:
    return yaml.dump(data, Dumper=_NoAliases, sort_keys=False, allow_unicode=True, width=1000).rstrip()


def parse_front_matter(card: str) -> dict:
    """The YAML between the card's leading ``---`` lines."""
    if not card.startswith("---\n"):
        raise ValueError("the card has no YAML front matter")
    end = card.index("\n---\n", 4)
    return yaml.safe_load(card[4:end]) or {}


def front_matter(
    rd: RunDir, facts: CardFacts, *, name: str, version: str | None, decision: Decision | None
) -> dict[str, Any]:
    task = rd.task
    obj = rd.objective
    results = []
    dataset = {"name": rd.data or "unknown", "type": rd.data or "unknown"}
    pub_test = facts.published.scores()
    task_block = {"type": PIPELINE_TAGS.get(task, task), "name": TASK_NAMES.get(task, task)}
    metrics = []
    for column in facts.columns:
        if column.startswith("test_") and column in pub_test:
            metrics.append({"type": metric_base(column), "value": round(pub_test[column], 6),
                            "name": f"{metric_label(column)} (published seed {facts.published.seed})"})  # fmt: skip
    values = facts.column_values(f"test_{obj}")
    if values:
        mean, std = _mean_std(values)
        entry = {"type": obj, "value": round(mean, 6), "name": f"test {METRIC_LABELS.get(obj, obj)} "
                 f"(mean of {len(values)} seeds)"}  # fmt: skip
        metrics.append(entry)
    if metrics:
        results.append({"task": task_block, "dataset": {**dataset, "split": "test"}, "metrics": metrics})
    for variant, value in facts.matrix_pub["test"].items():
        results.append({
            "task": task_block,
            "dataset": {**dataset, "config": variant, "split": "test"},
            "metrics": [{"type": obj, "value": round(value, 6),
                         "name": f"test {METRIC_LABELS.get(obj, obj)} on {variant} text"}],
        })  # fmt: skip
    mean, std = facts.mean_std
    fm: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": PIPELINE_TAGS.get(task, task),
        "tags": [
            t
            for t in (
                "kftune",
                task,
                f"tag-family-{rd.tag_family}" if task == "ner" else None,
                f"trained-on-{rd.train_variant}",
                rd.hpo_algorithm if rd.hpo_algorithm != "-" else None,
            )
            if t
        ],  # fmt: skip
        "base_model": rd.base_model or None,
        "datasets": [rd.data] if rd.data else [],
        "metrics": sorted({metric_base(c) for c in facts.columns}),
        "model-index": [{"name": name, "results": results}],
        "kftune": {
            "registered_model": name,
            "version": version,
            "alias": decision.alias if decision else None,
            "published_seed": facts.published.seed,
            "seeds": facts.seeds,
            "metric": facts.metric,
            "mean": round(mean, 6),
            "std": None if std is None else round(std, 6),
            "git_sha": rd.git_sha or None,
            "pipeline": rd.pipeline or None,
        },
    }
    return {k: v for k, v in fm.items() if v not in (None, [])}


# ----------------------------------------------------------------------------------------------
# The card


def _kv_table(pairs: Sequence[tuple[str, str]], header: tuple[str, str] = ("", "")) -> str:
    return to_markdown(Table(list(header), [[Cell(k), Cell(v)] for k, v in pairs]))


def _search_space_table(rd: RunDir) -> str | None:
    space = rd.search_space()
    if not space:
        return None
    rows = []
    for p in space:
        fs = p.get("feasibleSpace") or {}
        if fs.get("list"):
            values = ", ".join(str(v) for v in fs["list"])
        else:
            values = f"{fs.get('min', '?')} ... {fs.get('max', '?')}" + (
                f" step {fs['step']}" if fs.get("step") else ""
            )
        rows.append([Cell(str(p["name"])), Cell(str(p.get("parameterType", ""))), Cell(values),
                     Cell(str(fs.get("distribution") or ("uniform" if not fs.get("list") else "choice")))])  # fmt: skip
    return to_markdown(Table(["parameter", "type", "values", "distribution"], rows))


def _observed_ranges(rd: RunDir) -> str | None:
    seen: dict[str, list[str]] = {}
    for t in rd.trials or ():
        for k, v in (t.get("assignments") or {}).items():
            seen.setdefault(str(k), []).append(str(v))
    if not seen:
        return None
    rows = []
    for k, vals in seen.items():
        try:
            nums = sorted(float(v) for v in vals)
            text = f"{nums[0]:.6g} ... {nums[-1]:.6g}" if len(set(nums)) > 1 else f"{nums[0]:.6g}"
        except ValueError:
            text = ", ".join(sorted(set(vals)))
        rows.append([Cell(k), Cell(text), Cell(str(len(set(vals))), numeric=True)])
    return to_markdown(Table(["parameter", "values tried", "distinct"], rows))


def _trial_counts(rd: RunDir) -> str:
    trials = rd.trials or []
    counts: dict[str, int] = {}
    for t in trials:
        counts[str(t.get("status", "?"))] = counts.get(str(t.get("status", "?")), 0) + 1
    parts = ", ".join(f"{n} {_status_words(s)}" for s, n in sorted(counts.items()))
    return f"{len(trials)} trials" + (f" ({parts})" if parts else "")


def _status_words(status: str) -> str:
    """Katib's ``EarlyStopped`` -> ``early stopped``."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", status).lower()


def _best_trial_line(rd: RunDir) -> str | None:
    best = rd.best or {}
    if not best:
        return None
    metric, _ = rd.objective_spec()
    value = None
    for m in (best.get("observation") or {}).get("metrics") or ():
        if isinstance(m, dict) and m.get("name") == metric:
            for key in ("latest", "max", "min", "value"):
                try:
                    value = float(m[key])
                    break
                except (KeyError, TypeError, ValueError):
                    continue
            break
    line = f"best trial `{best.get('bestTrialName', '?')}`"
    if value is not None:
        line += f" with {metric} = {value:.5f}"
    return line


def _hyperparameter_rows(rd: RunDir) -> list[tuple[str, str]]:
    rows = []
    for k, v in rd.best_hyperparameters().items():
        try:
            x = float(v)
            text = (
                fmt_lr(x)
                if "learning_rate" in k
                else (str(int(x)) if x.is_integer() and "." not in v else f"{x:.9g}")
            )
        except ValueError:
            text = v
        rows.append((k, text))
    return rows


def _seeds_table(rd: RunDir, facts: CardFacts, comparisons: Sequence[NamedComparison]) -> str:
    runs = [SeedRun(s, {c: facts.per_seed[s].get(c) for c in facts.columns}) for s in facts.seeds]
    table = seeds_table(SeedsTable(rd.label, runs, metrics=facts.columns, comparisons=list(comparisons)))
    table.header = ["seed"] + [metric_label(c) for c in facts.columns]
    for row in table.rows:
        if row[0].text == str(facts.published.seed):
            row[0] = Cell(f"{facts.published.seed} (published)", bold=True)
    return to_markdown(table)


def _matrix_rows(rd: RunDir, facts: CardFacts, split: str) -> list[MatrixRow]:
    rows = []
    if facts.matrix_pub[split]:
        rows.append(MatrixRow(rd.tag_family, rd.train_variant, f"seed {facts.published.seed} (published)",
                              facts.matrix_pub[split]))  # fmt: skip
    if len(facts.seeds) > 1 and facts.matrix_mean[split]:
        rows.append(MatrixRow(rd.tag_family, rd.train_variant, f"mean of {len(facts.seeds)} seeds",
                              facts.matrix_mean[split]))  # fmt: skip
    return rows


def limitations(rd: RunDir, facts: CardFacts) -> list[str]:
    obj = rd.objective
    label = METRIC_LABELS.get(obj, obj)
    out = []
    if rd.best or rd.trials:
        out.append(
            "The hyperparameters were chosen on the development set, so development scores are optimistic "
            "(a long search overfits the dev set): compare models on test scores."
        )
    n = len(facts.seeds)
    test_vals = facts.column_values(f"test_{obj}")
    if n > 1 and test_vals:
        out.append(
            f"The published model is the best of {n} seeds on development {label}; its own test score is one "
            f"draw. The mean ± std over seeds ({mean_std_text(test_vals)}) is what retraining this "
            "configuration gives."
        )
    if n < 5:
        out.append(
            f"Only {n} seed{'s' if n != 1 else ''}: significance tests have little power; a rank test that "
            "cannot reach p < alpha is reported as 'not testable' instead of a p-value."
        )
    test = facts.matrix_pub["test"]
    if rd.task in ("ner", "seqcls") and len(test) > 1:
        trained = rd.train_variant
        own = test.get(trained)
        worst_variant = min(test, key=test.get) if higher_is_better(obj) else max(test, key=test.get)
        if own is not None and worst_variant != trained:
            out.append(
                f"Casing: trained on `{trained}` text. On test, {label} is {own:.4f} on `{trained}` but "
                f"{test[worst_variant]:.4f} on `{worst_variant}`: check the evaluation matrix for the casing "
                "your inputs have."
            )
    elif rd.task in ("ner", "seqcls"):
        out.append(
            f"Casing: trained and evaluated on `{rd.train_variant}` text only; other casings were not measured."
        )
    out.append(
        "Each retrain initialises the task head at random, so models from different seeds differ; this "
        "version's weights are fixed and its predictions are deterministic."
    )
    if rd.data.startswith("demo:"):
        out.append(
            f"Trained on kftune's generated demo corpus (`{rd.data}`): a demonstration, not a usable model."
        )
    return out


def model_card(
    rd: RunDir,
    *,
    name: str,
    published_seed: int,
    decision: Decision | None = None,
    comparisons: Sequence[NamedComparison] = (),
    version: str | None = None,
    run_id: str | None = None,
) -> str:
    """The full README.md (front matter + markdown). ``comparisons``: every comparison to show
    (the champion's and the baselines'); ``decision``: where this version went and why."""
    facts = CardFacts(rd, published_seed)
    obj = rd.objective
    label = METRIC_LABELS.get(obj, obj)
    fm = front_matter(rd, facts, name=name, version=version, decision=decision)
    out = ["---", dump_yaml(fm), "---", "", f"# {name}", ""]
    family = f" with the `{rd.tag_family}` tag family" if rd.task == "ner" else ""
    intro = (
        f"A {TASK_NAMES.get(rd.task, rd.task)} model fine-tuned from `{rd.base_model or '?'}` on `{rd.data or '?'}`"
        f"{family}, trained on `{rd.train_variant}` text by kftune"
        + (f"'s `{rd.pipeline}` pipeline" if rd.pipeline else "")
        + f". The published weights are seed {facts.published.seed} of {len(facts.seeds)} retrains"
        + (f", the one with the best development {label}." if len(facts.seeds) > 1 else ".")
    )
    out += [intro, ""]
    if facts.scores:
        mean, std = facts.mean_std
        out += [f"**{metric_label(facts.metric)}: {mean_std_text(list(facts.scores.values()))}** over "
                f"{len(facts.scores)} seed{'s' if len(facts.scores) != 1 else ''} "
                f"(published seed: {facts.scores.get(facts.published.seed, float('nan')):.4f}).", ""]  # fmt: skip
    if decision is not None:
        where = f"version {version}" if version else "this version"
        out += [f"**Registry:** {where} is the `{decision.alias}`: {decision.reason}.", ""]

    out += ["## Model details", ""]
    labels = facts.published.metrics.get("labels") or []
    details = [
        ("task", f"{rd.task} ({PIPELINE_TAGS.get(rd.task, rd.task)})"),
        ("base model", f"`{rd.base_model}`" if rd.base_model else "-"),
        ("data", f"`{rd.data}`" if rd.data else "-"),
    ]
    if rd.task == "ner":
        details.append(("tag family", rd.tag_family))
    details += [
        ("trained on (casing variant)", rd.train_variant),
        ("evaluated during training on", rd.eval_variant),
    ]
    if labels:
        shown = ", ".join(str(x) for x in labels[:24]) + (", ..." if len(labels) > 24 else "")
        details.append(("labels", f"{len(labels)}: {shown}"))
    out += [_kv_table(details, ("", "")), ""]

    out += ["## Training procedure", "", "### Hyperparameter search", ""]
    if rd.best or rd.trials is not None:
        metric, direction = rd.objective_spec()
        lines = [
            f"- algorithm: `{rd.hpo_algorithm}`",
            f"- objective: {direction} `{metric}` on the development set",
        ]
        if rd.trials is not None:
            lines.append(f"- {_trial_counts(rd)}")
        best_line = _best_trial_line(rd)
        if best_line:
            lines.append(f"- {best_line}")
        out += [*lines, ""]
        space = _search_space_table(rd)
        if space:
            out += ["Search space:", "", space, ""]
        else:
            observed = _observed_ranges(rd)
            if observed:
                out += ["Search space: not recorded in the run (tune/experiment.yaml); the values the trials tried:",
                        "", observed, ""]  # fmt: skip
        hp = _hyperparameter_rows(rd)
        if hp:
            out += ["### Best hyperparameters", "", _kv_table(hp, ("hyperparameter", "value")), ""]
    else:
        out += ["No hyperparameter search is recorded for this model (no tune/ in the run directory).", ""]
    args = facts.published.args
    settings = [(k, str(args[k])) for k in RETRAIN_SETTINGS if args.get(k) is not None]
    if settings:
        out += ["### Retraining", "",
                f"Each seed was trained with these settings (seeds {', '.join(map(str, facts.seeds))}):", "",
                _kv_table(settings, ("setting", "value")), ""]  # fmt: skip

    out += ["## Evaluation", "", "### Results by seed", ""]
    if facts.columns:
        out += [
            f"Development scores are from the best epoch (the saved model), test scores from that model; "
            f"models are compared on {metric_label(facts.metric)}.",
            "",
            _seeds_table(rd, facts, [c for c in comparisons if c.metric in facts.columns]),
            "",
        ]
    for split, title in (("dev", "Development"), ("test", "Test")):
        rows = _matrix_rows(rd, facts, split)
        if rows:
            if split == "dev":
                out += ["### Evaluation matrix", "",
                        f"{label} on each casing variant of the data (columns); the model was trained on "
                        f"`{rd.train_variant}`.", ""]  # fmt: skip
            out += [f"{title}:", "", to_markdown(matrix_table(rows)), ""]
    out += ["### Comparison with other models", ""]
    if comparisons:
        out += [to_markdown(comparisons_table(comparisons)), ""]
        for c in comparisons:
            out.append(f"- vs {c.against} ({metric_label(c.metric)}): {c.comparison.summary()}")
        out.append("")
    else:
        out += ["No other model was compared (no champion yet and no baselines in comparison.json).", ""]
    if decision is not None:
        out += [f"Decision: **{decision.alias}** - {decision.reason}.", ""]
    out += ["### Statistical policy", "", POLICY, "",
            "The `champion` alias moves to a new version only when that version is significantly better than "
            "the current champion under this policy (one-sided, alpha "
            f"{decision.comparison.alpha if decision and decision.comparison else 0.05:g}); otherwise the new "
            "version is the `challenger`.", ""]  # fmt: skip

    out += ["## Limitations", ""] + [f"- {x}" for x in limitations(rd, facts)] + [""]

    alias_uri = f"models:/{name}@{decision.alias if decision else CHAMPION}"
    out += ["## How to use", "", "```python", "import mlflow", "",
            f'components = mlflow.transformers.load_model("{alias_uri}", return_type="components")',
            'model, tokenizer = components["model"], components["tokenizer"]',
            f'pipe = mlflow.transformers.load_model("{alias_uri}")  # a transformers pipeline',
            "```", ""]  # fmt: skip

    prov = [("registered model", f"{name}" + (f" version {version}" if version else ""))]
    if run_id:
        prov.append(("MLflow run", f"`{run_id}` (this card: artifact README.md)"))
    for key in ("pipeline", "git_sha", "started", "finished", "status"):
        if rd.info.get(key):
            prov.append(
                (key.replace("_", " "), f"`{rd.info[key]}`" if key == "git_sha" else str(rd.info[key]))
            )
    prov.append(("run directory", f"`{rd.path.resolve()}`"))
    out += ["## Provenance", "", _kv_table(prov, ("", "")), ""]
    return "\n".join(out).rstrip() + "\n"


def card_description(
    rd: RunDir,
    *,
    name: str,
    published_seed: int,
    decision: Decision | None = None,
    comparisons: Sequence[NamedComparison] = (),
    version: str | None = None,
    run_id: str | None = None,
    limit: int = DESCRIPTION_LIMIT,
) -> str:
    """A short markdown card for MLflow descriptions: at most ``limit`` characters."""
    facts = CardFacts(rd, published_seed)
    obj = rd.objective
    label = METRIC_LABELS.get(obj, obj)
    parts = [
        f"**{name}**: {TASK_NAMES.get(rd.task, rd.task)} fine-tuned from `{rd.base_model or '?'}` on "
        f"`{rd.data or '?'}`"
        + (f" ({rd.tag_family} tags" if rd.task == "ner" else " (")
        + f"{', ' if rd.task == 'ner' else ''}trained on `{rd.train_variant}` text); search `{rd.hpo_algorithm}`."
    ]
    if decision is not None:
        parts.append(f"**Alias `{decision.alias}`**: {_clip(decision.reason, 900)}.")
    if facts.scores:
        parts.append(
            f"**{metric_label(facts.metric)}**: {mean_std_text(list(facts.scores.values()))} over seeds "
            f"{', '.join(map(str, facts.scores))}; published seed {facts.published.seed} "
            f"({facts.scores.get(facts.published.seed, float('nan')):.4f}, best development {label})."
        )
    for c in comparisons:
        cmp = c.comparison
        parts.append(f"vs {c.against}: diff {cmp.diff:+.4f}, {cmp.chosen_label} p = {format_p(cmp.p_value)}, "
                     f"{'significant' if cmp.significant else 'not significant' if cmp.significant is False else 'undecided'}.")  # fmt: skip
    for split in ("test", "dev"):
        m = facts.matrix_pub[split]
        if m:
            cells = " · ".join(f"{v} {m[v]:.4f}" for v in VARIANTS if v in m)
            parts.append(f"{split.capitalize()} {label} by casing (published seed): {cells}.")
    hp = _hyperparameter_rows(rd)
    if hp:
        parts.append("Best hyperparameters: " + ", ".join(f"{k}={v}" for k, v in hp) + ".")
    parts.append("Hyperparameters were tuned on dev: compare models on test scores.")
    where = f" of MLflow run `{run_id}`" if run_id else ""
    tail = f"Full model card: artifact `README.md`{where}."
    text = "\n\n".join(parts)
    room = limit - len(tail) - 2
    if len(text) > room:
        text = text[: room - 3].rstrip() + "..."
    return text + "\n\n" + tail


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split()).rstrip(".")
    return text if len(text) <= n else text[: n - 3] + "..."
