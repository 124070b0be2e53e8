"""Reading a run directory (docs/contracts.md, "Run directories"): what reports and the registry use.

``load_run_dir(path)`` reads everything a pipeline run left (``run.json``, ``tune/``,
``retrain/seed-<S>/``, ``eval/seed-<S>.json``, ``comparison.json``, ``registry.json``) into a
:class:`RunDir` without importing torch or MLflow, and never writes. Missing or unreadable pieces
do not raise: they are left empty and described in ``RunDir.notes`` (the report shows them). Only a
path that is not a run directory at all raises :class:`~kftune.errors.UserError`.

A plain ``kftune train`` output directory (``metrics.json`` + ``best/``) is read as a run of one
seed, so ``kftune report TRIAL_DIR`` and ``kftune registry register TRIAL_DIR`` work on it too.

Scores. Each retrained seed has flat scores taken from its ``metrics.json``: ``dev_<m>`` from the
best epoch's ``eval_<m>`` (the epoch whose ``best/`` is the model) and ``test_<m>`` from the final
test evaluation of that ``best/``. The *objective* ``<m>`` is the trainer's ``--metric-for-best``
without ``eval_`` (ner ``f1``, seqcls ``macro_f1``, mlm ``loss``). Models are compared on
``test_<m>`` when every seed has it, else on ``dev_<m>`` (:attr:`RunDir.compare_metric`): the
hyperparameters were chosen on dev, so dev scores flatter every tuned model alike.

``comparison.json`` holds comparisons of this run's per-seed scores with other models, as written
by :func:`write_comparisons`::

    {"comparisons": [{"against": "baseline tfidf-lr", "metric": "test_f1",
                      "comparison": <kftune.evaluate.stats.Comparison.to_dict()>}, ...]}

(a bare list of such entries, or ``{against: Comparison.to_dict()}``, is read too).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kftune.errors import UserError

MAIN_METRIC = {"ner": "f1", "seqcls": "macro_f1", "mlm": "loss"}
# the per-seed columns shown after the objective (test split), per task
SECONDARY_METRICS = {"ner": ("precision", "recall"), "seqcls": ("accuracy",), "mlm": ("perplexity",)}
LOWER_IS_BETTER = ("loss", "perplexity")
SEED_DIR = re.compile(r"^seed-(-?\d+)$")
CONTRACT_HINT = "see docs/contracts.md, 'Run directories'"


def metric_base(name: str) -> str:
    """``test_f1`` / ``eval_f1`` / ``dev_f1`` -> ``f1``."""
    for prefix in ("eval_", "dev_", "test_"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


METRIC_LABELS = {"f1": "F1", "macro_f1": "macro-F1", "accuracy": "accuracy", "precision": "precision",
                 "recall": "recall", "loss": "loss", "perplexity": "perplexity"}  # fmt: skip


def metric_label(metric: str) -> str:
    """``test_f1`` -> ``test F1``; ``dev_macro_f1`` -> ``dev macro-F1``; ``f1`` -> ``F1``."""
    base = metric_base(metric)
    split = metric[: len(metric) - len(base)].rstrip("_")
    label = METRIC_LABELS.get(base, base)
    return f"{split} {label}" if split else label


def higher_is_better(metric: str) -> bool:
    base = metric_base(metric)
    return not any(base == m or base.endswith("_" + m) for m in LOWER_IS_BETTER)


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# ----------------------------------------------------------------------------------------------
# One retrained seed


@dataclass
class Retrain:
    """``retrain/seed-<S>/``: one `kftune train` output dir and its `kftune evaluate` matrix."""

    seed: int
    path: Path
    metrics: dict = field(default_factory=dict)  # metrics.json ({} when missing)
    evaluation: dict | None = None  # eval/seed-<S>.json: {split: {variant: {metric: value}}}

    @property
    def status(self) -> str:
        return str(self.metrics.get("status") or "missing") if self.metrics else "missing"

    @property
    def model_dir(self) -> Path | None:
        best = self.path / "best"
        return best if (best / "config.json").is_file() else None

    @property
    def completed(self) -> bool:
        return self.status == "completed" and self.model_dir is not None

    @property
    def args(self) -> dict:
        return dict(self.metrics.get("args") or {})

    def scores(self) -> dict[str, float]:
        """``dev_<m>`` (best epoch) and ``test_<m>`` (final test of best/) for every metric."""
        out: dict[str, float] = {}
        best = (self.metrics.get("best") or {}).get("metrics") or {}
        for key, value in best.items():
            v = _finite(value)
            if v is not None and key.startswith("eval_"):
                out["dev_" + key[len("eval_") :]] = v
        for key, value in (self.metrics.get("test") or {}).items():
            v = _finite(value)
            if v is not None and key.startswith("test_"):
                out[key] = v
        return out


# ----------------------------------------------------------------------------------------------
# The run directory


@dataclass
class RunDir:
    path: Path
    info: dict = field(default_factory=dict)  # run.json
    retrains: list[Retrain] = field(default_factory=list)  # sorted by seed
    trials: list[dict] | None = None  # tune/trials.json
    best: dict | None = None  # tune/best.json
    experiment: dict | None = None  # tune/experiment.yaml (optional: the Katib Experiment used)
    comparisons_raw: Any = None  # comparison.json
    registry: dict | None = None  # registry.json
    notes: list[str] = field(default_factory=list)  # what was missing or unreadable
    is_trial_dir: bool = False  # a bare `kftune train` output dir read as one seed

    # -- identity ---------------------------------------------------------------------------

    def _first_args(self) -> dict:
        for r in self.retrains:
            if r.args:
                return r.args
        return {}

    def _model_meta(self) -> dict:
        for r in self.retrains:
            if r.model_dir is not None:
                try:
                    cfg = json.loads((r.model_dir / "config.json").read_text(encoding="utf-8"))
                    return dict(cfg.get("kftune") or {})
                except (OSError, json.JSONDecodeError):
                    continue
        return {}

    @property
    def task(self) -> str:
        for r in self.retrains:
            if r.metrics.get("task"):
                return str(r.metrics["task"])
        return str(
            self.info.get("task") or self._first_args().get("task") or self._model_meta().get("task") or ""
        )

    @property
    def tag_family(self) -> str:
        return str(self.info.get("tag_family") or self._first_args().get("tag_family") or "original")

    @property
    def train_variant(self) -> str:
        return str(self.info.get("train_variant") or self._first_args().get("train_variant") or "cased")

    @property
    def eval_variant(self) -> str:
        return str(self._first_args().get("eval_variant") or self.train_variant)

    @property
    def hpo_algorithm(self) -> str:
        alg = self.info.get("hpo_algorithm")
        if not alg and self.experiment:
            alg = ((self.experiment.get("spec") or {}).get("algorithm") or {}).get("algorithmName")
        return str(alg) if alg else "-"

    @property
    def base_model(self) -> str:
        return str(self.info.get("model") or self._first_args().get("model") or "")

    @property
    def data(self) -> str:
        return str(self.info.get("data") or self._first_args().get("data") or "")

    @property
    def pipeline(self) -> str:
        return str(self.info.get("pipeline") or ("train" if self.is_trial_dir else ""))

    @property
    def git_sha(self) -> str:
        return str(self.info.get("git_sha") or "")

    @property
    def label(self) -> str:
        """``original/uncased`` (NER) or the run dir's name (other tasks)."""
        if self.task == "ner":
            return f"{self.tag_family}/{self.train_variant}"
        return self.path.name

    # -- scores -----------------------------------------------------------------------------

    @property
    def completed(self) -> list[Retrain]:
        return [r for r in self.retrains if r.completed]

    @property
    def objective(self) -> str:
        """The objective metric without prefix (``f1``): the trainer's --metric-for-best."""
        chosen = self._first_args().get("metric_for_best")
        if chosen:
            return metric_base(str(chosen))
        return MAIN_METRIC.get(self.task, "f1")

    @property
    def compare_metric(self) -> str:
        """``test_<objective>`` when every completed seed has it, else ``dev_<objective>``."""
        runs = self.completed
        test = f"test_{self.objective}"
        if runs and all(test in r.scores() for r in runs):
            return test
        return f"dev_{self.objective}"

    def seed_scores(self, metric: str | None = None) -> dict[int, float]:
        """{seed: score} over the completed seeds that have ``metric`` (default compare_metric)."""
        metric = metric or self.compare_metric
        out = {}
        for r in self.completed:
            v = r.scores().get(metric)
            if v is not None:
                out[r.seed] = v
        return out

    def score_columns(self) -> list[str]:
        """The per-seed table's columns: dev and test objective, then the task's other test metrics
        (dev ones when there is no test split)."""
        obj = self.objective
        present = set().union(*(r.scores() for r in self.completed)) if self.completed else set()
        split = "test" if f"test_{obj}" in present else "dev"  # no test split: the dev secondaries
        wanted = [f"dev_{obj}", f"test_{obj}"]
        wanted += [f"{split}_{m}" for m in SECONDARY_METRICS.get(self.task, ()) if m != obj]
        return [c for c in wanted if c in present]

    def select_seed(self) -> Retrain:
        """The seed to publish: best dev objective (ties: the lowest seed). Raises if none completed."""
        runs = self.completed
        if not runs:
            states = ", ".join(f"seed {r.seed}: {r.status}" for r in self.retrains) or "no retrain/seed-*/"
            raise UserError(
                f"{self.path}: no completed retrained model (a retrain/seed-<S>/ with status 'completed' "
                f"and a best/ model) to publish ({states}); rerun the retrain step ({CONTRACT_HINT})"
            )
        key = f"dev_{self.objective}"
        sign = 1.0 if higher_is_better(key) else -1.0
        scored = [(r.scores().get(key), r) for r in runs]
        if all(v is None for v, _ in scored):
            return runs[0]
        return max((t for t in scored if t[0] is not None), key=lambda t: (sign * t[0], -t[1].seed))[1]

    def matrix(self, split: str, *, seeds: Sequence[int] | None = None) -> dict[str, float]:
        """{variant: mean over seeds of the objective} for ``split`` ("dev"/"test") from eval/.

        Without eval/ files, the one cell the trainer measured itself (its eval variant) is filled
        from metrics.json. ``seeds``: only these seeds (e.g. the published one).
        """
        runs = [r for r in self.completed if seeds is None or r.seed in seeds]
        metric = self.objective
        per_variant: dict[str, list[float]] = {}
        for r in runs:
            for variant, values in ((r.evaluation or {}).get(split) or {}).items():
                v = _finite((values or {}).get(metric))
                if v is not None:
                    per_variant.setdefault(variant, []).append(v)
        if not per_variant:
            key = f"{'dev' if split == 'dev' else 'test'}_{metric}"
            values = [r.scores()[key] for r in runs if key in r.scores()]
            if values:
                per_variant[self.eval_variant] = values
        return {v: sum(x) / len(x) for v, x in per_variant.items()}

    # -- tune/ ------------------------------------------------------------------------------

    def best_hyperparameters(self) -> dict[str, str]:
        """{name: value} from tune/best.json's parameterAssignments ({} without one)."""
        out = {}
        for item in (self.best or {}).get("parameterAssignments") or ():
            if isinstance(item, Mapping) and "name" in item:
                out[str(item["name"])] = str(item.get("value"))
        return out

    def objective_spec(self) -> tuple[str, str]:
        """(metric name, "maximize"/"minimize") of the search (tune/best.json), else of the trainer."""
        spec = (self.best or {}).get("objective") or {}
        if not spec and self.experiment:
            o = (self.experiment.get("spec") or {}).get("objective") or {}
            spec = {"metric": o.get("objectiveMetricName"), "type": o.get("type")}
        metric = str(spec.get("metric") or f"eval_{self.objective}")
        direction = str(spec.get("type") or ("maximize" if higher_is_better(metric) else "minimize"))
        return metric, direction if direction in ("maximize", "minimize") else "maximize"

    def search_space(self) -> list[dict]:
        """The Katib ``spec.parameters`` of tune/experiment.yaml ([] when not recorded)."""
        params = ((self.experiment or {}).get("spec") or {}).get("parameters") or []
        return [p for p in params if isinstance(p, Mapping) and p.get("name")]


# ----------------------------------------------------------------------------------------------
# Loading


def _read_json(path: Path, notes: list[str], what: str) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        notes.append(f"{what} ({path}) could not be read ({type(exc).__name__}: {exc}); left out")
        return None


def is_run_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / "run.json").is_file() or (p / "retrain").is_dir() or _is_trial_dir(p))


def _is_trial_dir(p: Path) -> bool:
    return (p / "metrics.json").is_file() and ((p / "best").is_dir() or (p / "last").is_dir())


def find_run_dirs(path: str | Path) -> list[Path]:
    """``[path]`` for a run directory, its run-directory children for a directory of runs
    (``ner-matrix``); otherwise a UserError naming what was expected."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p} does not exist: pass a run directory ({CONTRACT_HINT})")
    if not p.is_dir():
        raise UserError(f"{p} is not a directory: pass a run directory ({CONTRACT_HINT})")
    if is_run_dir(p):
        return [p]
    children = sorted(c for c in p.iterdir() if c.is_dir() and is_run_dir(c))
    if children:
        return children
    raise UserError(
        f"{p} is not a run directory (no run.json, retrain/ or metrics.json + best/) nor a directory of "
        f"run directories: pass the directory a pipeline run or `kftune train` wrote ({CONTRACT_HINT})"
    )


def load_run_dir(path: str | Path) -> RunDir:
    """Read one run directory; see the module docstring. UserError if ``path`` is not one."""
    p = Path(path)
    if not is_run_dir(p):
        find_run_dirs(p)  # raises the right message for missing paths and plain files
        raise UserError(
            f"{p} is a directory of run directories, not a run directory: pass one of "
            f"{', '.join(c.name for c in find_run_dirs(p)[:5])} ({CONTRACT_HINT})"
        )
    notes: list[str] = []
    rd = RunDir(path=p, notes=notes)
    info = _read_json(p / "run.json", notes, "run.json")
    rd.info = info if isinstance(info, dict) else {}
    if _is_trial_dir(p) and not (p / "retrain").is_dir():
        rd.is_trial_dir = True
        metrics = _read_json(p / "metrics.json", notes, "metrics.json") or {}
        seed = int((metrics.get("args") or {}).get("seed", 0) or 0)
        rd.retrains = [Retrain(seed, p, metrics if isinstance(metrics, dict) else {})]
    else:
        rd.retrains = _read_retrains(p, notes)
    for r in rd.retrains:
        ev = _read_json(p / "eval" / f"seed-{r.seed}.json", notes, f"evaluation of seed {r.seed}")
        r.evaluation = ev if isinstance(ev, dict) else None
    trials = _read_json(p / "tune" / "trials.json", notes, "tune/trials.json")
    if trials is not None and not isinstance(trials, list):
        notes.append(f"tune/trials.json is not a list of trials ({CONTRACT_HINT}); left out")
        trials = None
    rd.trials = [t for t in trials if isinstance(t, dict)] if trials is not None else None
    best = _read_json(p / "tune" / "best.json", notes, "tune/best.json")
    rd.best = best if isinstance(best, dict) else None
    rd.experiment = _read_experiment(p / "tune" / "experiment.yaml", notes)
    rd.comparisons_raw = _read_json(p / "comparison.json", notes, "comparison.json")
    reg = _read_json(p / "registry.json", notes, "registry.json")
    rd.registry = reg if isinstance(reg, dict) else None
    _describe_gaps(rd)
    return rd


def _read_retrains(p: Path, notes: list[str]) -> list[Retrain]:
    out = []
    base = p / "retrain"
    if not base.is_dir():
        return out
    for child in sorted(base.iterdir()):
        m = SEED_DIR.match(child.name)
        if not (m and child.is_dir()):
            continue
        metrics = _read_json(child / "metrics.json", notes, f"retrain/{child.name}/metrics.json")
        out.append(Retrain(int(m.group(1)), child, metrics if isinstance(metrics, dict) else {}))
    return sorted(out, key=lambda r: r.seed)


def _read_experiment(path: Path, notes: list[str]) -> dict | None:
    if not path.is_file():
        return None
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        notes.append(f"tune/experiment.yaml could not be read ({type(exc).__name__}); search space left out")
        return None
    return doc if isinstance(doc, dict) else None


def _describe_gaps(rd: RunDir) -> None:
    notes = rd.notes
    if not rd.retrains:
        notes.append("no retrain/seed-<S>/ directories: no per-seed results")
    failed = [r for r in rd.retrains if not r.completed]
    for r in failed:
        why = r.metrics.get("reason") if r.metrics else None
        what = "no best/ model" if r.status == "completed" else f"status {r.status}"
        notes.append(f"seed {r.seed} is left out ({what}{': ' + str(why) if why else ''})")
    done = rd.completed
    if len(done) == 1 and not rd.is_trial_dir:
        notes.append("only one completed seed: no standard deviation and no significance test")
    if done and not any(r.evaluation for r in done):
        notes.append(
            "no eval/seed-<S>.json (kftune evaluate): the evaluation matrix holds only the variant "
            "the trainer evaluated on"
        )
    if rd.trials is None and not rd.is_trial_dir:
        notes.append("no tune/trials.json: no hyperparameter-search plots")


# ----------------------------------------------------------------------------------------------
# comparison.json


def read_comparisons(rd: RunDir) -> list:
    """comparison.json as ``NamedComparison`` objects (see the module docstring for the format)."""
    from kftune.evaluate.stats import Comparison
    from kftune.report.tables import NamedComparison

    raw = rd.comparisons_raw
    if raw is None:
        return []
    entries: list[tuple[str, str, Any]] = []
    if isinstance(raw, Mapping) and "comparisons" in raw:
        raw = raw["comparisons"]
    if isinstance(raw, list):
        for e in raw:
            if isinstance(e, Mapping) and "comparison" in e:
                entries.append(
                    (str(e.get("against", "?")), str(e.get("metric") or rd.compare_metric), e["comparison"])
                )
    elif isinstance(raw, Mapping) and "chosen" in raw:  # one bare Comparison
        entries.append(("other model", rd.compare_metric, raw))
    elif isinstance(raw, Mapping):
        entries += [(str(k), rd.compare_metric, v) for k, v in raw.items() if isinstance(v, Mapping)]
    out = []
    for against, metric, d in entries:
        try:
            out.append(NamedComparison(metric, against, Comparison.from_dict(d)))
        except (TypeError, KeyError, ValueError) as exc:
            rd.notes.append(f"comparison.json: entry against {against!r} unreadable ({exc}); left out")
    return out


def comparisons_to_json(comparisons: Sequence) -> dict:
    """``NamedComparison`` objects as comparison.json's content."""
    return {
        "comparisons": [
            {"against": c.against, "metric": c.metric, "comparison": c.comparison.to_dict()}
            for c in comparisons
        ]
    }


def write_comparisons(path: str | Path, comparisons: Sequence) -> Path:
    """Write comparison.json (for the pipeline's compare step; the registry never writes it)."""
    path = Path(path)
    path.write_text(
        json.dumps(comparisons_to_json(comparisons), indent=1, allow_nan=False) + "\n", encoding="utf-8"
    )
    return path


def compare_scores(
    scores: Mapping[int, float],
    other: Mapping[int, float],
    *,
    metric: str,
    against: str,
    alpha: float = 0.05,
):
    """This run's per-seed scores vs another model's, as a ``NamedComparison``.

    Paired by seed when both have the same seeds (two or more), unpaired otherwise; one-sided in
    the metric's better direction ("greater", or "less" for loss/perplexity).
    """
    from kftune.evaluate.stats import compare
    from kftune.report.tables import NamedComparison

    paired = set(scores) == set(other) and len(scores) >= 2
    alternative = "greater" if higher_is_better(metric) else "less"
    a = {k: scores[k] for k in sorted(scores)}
    b = {k: other[k] for k in sorted(other)}
    c = (
        compare(a, b, paired=paired, alternative=alternative, alpha=alpha)
        if paired
        else compare(list(a.values()), list(b.values()), paired=False, alternative=alternative, alpha=alpha)
    )
    return NamedComparison(metric, against, c)
