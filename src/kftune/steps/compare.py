"""The ``compare`` step: this run's per-seed scores against baselines and other models.

Scores per seed come from each ``metrics.json`` (``test_<m>`` of the best checkpoint when every
seed has it, else ``dev_<m>``; ``<m>`` is the search objective without ``eval_``). Each baseline
(``kftune baseline --model NAME``) is fitted with the same seeds, data, tag family and variants;
each other model was retrained by the ``retrain`` step into ``others/<name>/seed-<S>/``. Runs are
paired by seed (:func:`kftune.evaluate.stats.compare`, one-sided: is this run better?).
Comparison with the registry's current champion happens at registration (the registry decides
the alias). Writes ``comparison.json``::

    {"metric": "test_f1", "scores": {"this run": {seed: v}, "baseline token-lr": {...}},
     "comparisons": [{"against": "baseline token-lr", "metric": "test_f1",
                      "comparison": Comparison.to_dict()}]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kftune.steps.argv import flag_value
from kftune.steps.retrain import StepFailed, best_train_args, seed_scores
from kftune.steps.rundir import RunDir, read_json, slug, write_json

LOWER_IS_BETTER = ("loss", "perplexity")
DEFAULT_BASELINE = {"ner": "token-lr", "seqcls": "tfidf-lr"}


def objective_base(rd: RunDir) -> tuple[str, bool]:
    """(metric without ``eval_``, higher is better) of the search."""
    obj = (read_json(rd.best_json) or {}).get("objective") or {}
    metric = str(obj.get("metric") or "eval_f1")
    base = metric[5:] if metric.startswith("eval_") else metric
    higher = str(obj.get("type") or "maximize") == "maximize"
    if not obj.get("type"):
        higher = not any(base.endswith(m) for m in LOWER_IS_BETTER)
    return base, higher


def _scores(dirs: dict[int, Path]) -> dict[int, dict[str, float]]:
    return {s: seed_scores(d) for s, d in dirs.items()}


def pick_metric(scores: dict[int, dict[str, float]], base: str) -> str:
    if scores and all(f"test_{base}" in v for v in scores.values()):
        return f"test_{base}"
    return f"dev_{base}"


def _baseline(rd: RunDir, name: str, seed: int, args: list[str]) -> Path:
    from kftune.train.baseline import build_parser, run

    out = rd.path / "baselines" / slug(name) / f"seed-{int(seed)}"
    if (read_json(out / "metrics.json") or {}).get("status") == "completed":
        return out
    argv = ["--task", flag_value(args, "--task") or "ner", "--data", flag_value(args, "--data") or ""]
    argv += ["--model", name, "--seed", str(int(seed)), "--output-dir", str(out)]
    argv += ["--experiment", "kftune-baselines", "--trial", f"{slug(name)}-seed-{int(seed)}"]
    for flag in ("--tag-family", "--mapping", "--train-variant", "--eval-variant"):
        if value := flag_value(args, flag):
            argv += [flag, value]
    run(build_parser().parse_args(argv))
    return out


def compare(
    run_dir: str | Path,
    *,
    baselines: list[str] | None = None,
    others: list[str] | None = None,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Write ``comparison.json``; ``baselines=None`` means the task's default baseline."""
    from kftune.evaluate.stats import compare as stats_compare

    rd = RunDir.at(run_dir)
    seeds = rd.seeds()
    if not seeds:
        raise StepFailed(f"compare: no retrain/seed-*/ in {rd.path}: nothing to compare")
    args = best_train_args(rd)
    task = flag_value(args, "--task") or "ner"
    base, higher = objective_base(rd)
    main = _scores({s: rd.retrain(s) for s in seeds})
    metric = pick_metric(main, base)
    ours = {s: v[metric] for s, v in main.items() if metric in v}
    if baselines is None:
        baselines = [DEFAULT_BASELINE[task]] if task in DEFAULT_BASELINE else []
    table: dict[str, dict[int, float]] = {"this run": ours}
    for name in baselines:
        dirs = {s: _baseline(rd, name, s, args) for s in seeds}
        table[f"baseline {name}"] = {s: v[metric] for s, v in _scores(dirs).items() if metric in v}
    for name in others or []:
        dirs = {s: rd.retrain(s, name) for s in seeds}
        table[f"model {name}"] = {s: v[metric] for s, v in _scores(dirs).items() if metric in v}
    comparisons = []
    for against, theirs in table.items():
        if against == "this run":
            continue
        common = sorted(set(ours) & set(theirs))
        if len(common) < 2:
            comparisons.append({"against": against, "metric": metric, "comparison": None,
                                "note": f"{len(common)} common seed(s): nothing to test"})  # fmt: skip
            continue
        c = stats_compare(
            {s: ours[s] for s in common},
            {s: theirs[s] for s in common},
            paired=True,
            alternative="greater" if higher else "less",
            alpha=alpha,
        )
        comparisons.append({"against": against, "metric": metric, "comparison": c.to_dict()})
        print(f"compare: this run vs {against} on {metric}: {c.summary()}")
    data = {
        "metric": metric,
        "higher_is_better": higher,
        "scores": {k: {str(s): v for s, v in d.items()} for k, d in table.items()},
        "comparisons": [c for c in comparisons if c["comparison"] is not None],
        "skipped": [c for c in comparisons if c["comparison"] is None],
    }
    write_json(rd.comparison_json, data)
    return data
