"""The users' result tables (seeds 000, 002, 003) as data, rendered to markdown and HTML.

Each ``*_table`` function turns plain dataclasses into a :class:`Table` (header, optional second
header line, rows of :class:`Cell`); :func:`to_markdown` and :func:`to_html` render any ``Table``,
so both formats always show the same numbers. Missing values render as ``-``.

Formats follow the seeds: evaluation matrices with 5 decimals, learning rates as ``2.326071e-05``,
other hyperparameters with 9 decimals, batch-size and per-seed scores with 4 decimals, GLUE-style
scores x100 with 2 decimals.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kftune.data.casing import VARIANTS  # the order of the seed-000 table columns
from kftune.evaluate.stats import TEST_LABELS, Comparison, format_p, summarize

MISSING = "-"


# ----------------------------------------------------------------------------------------------
# Generic table


@dataclass(frozen=True)
class Cell:
    text: str
    bold: bool = False
    numeric: bool = False


@dataclass
class Table:
    header: list[str]
    rows: list[list[Cell]]
    subheader: list[str] | None = None  # a second header line (GLUE: the metric of each task)
    title: str = ""

    def column(self, name: str) -> list[Cell]:
        j = self.header.index(name)
        return [row[j] for row in self.rows]


def _md_cell(c: Cell) -> str:
    text = c.text.replace("|", "\\|")
    return f"**{text}**" if c.bold and text != MISSING else text


def to_markdown(table: Table) -> str:
    """A GitHub-flavoured markdown table, columns padded to equal width; no trailing newline."""
    lines = [list(table.header)]
    if table.subheader is not None:
        lines.append(list(table.subheader))
    lines += [[_md_cell(c) for c in row] for row in table.rows]
    widths = [max(3, *(len(line[j]) for line in lines)) for j in range(len(table.header))]

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [fmt(lines[0]), "| " + " | ".join("-" * w for w in widths) + " |"]
    out += [fmt(line) for line in lines[1:]]
    return "\n".join(out)


def to_html(table: Table) -> str:
    """The same table as an HTML ``<table>`` (escaped text; ``<strong>`` for bold cells)."""
    esc = html.escape
    parts = ['<table class="kft">', "<thead>"]
    parts.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in table.header) + "</tr>")
    if table.subheader is not None:
        parts.append('<tr class="sub">' + "".join(f"<th>{esc(h)}</th>" for h in table.subheader) + "</tr>")
    parts.append("</thead>")
    parts.append("<tbody>")
    for row in table.rows:
        cells = []
        for c in row:
            text = esc(c.text)
            if c.bold and c.text != MISSING:
                text = f"<strong>{text}</strong>"
            cls = ' class="num"' if c.numeric else ""
            cells.append(f"<td{cls}>{text}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------
# Number formats


def _num(x: float | None, fmt: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING
    return format(x, fmt)


def fmt_lr(x: float | None) -> str:
    """Learning rates as in seed 000: ``2.326071e-05``."""
    return _num(x, ".6e")


def _bold_best(values: Sequence[float | None], higher_is_better: bool = True) -> list[bool]:
    present = [v for v in values if v is not None]
    if not present:
        return [False] * len(values)
    best = max(present) if higher_is_better else min(present)
    return [v is not None and v == best for v in values]


def family_label(tag_family: str) -> str:
    """``original`` -> ``Original`` (the seed tables' spelling); other labels are kept as given."""
    return tag_family.capitalize() if tag_family.islower() else tag_family


# ----------------------------------------------------------------------------------------------
# Seed 000: train-on-X / evaluate-on-Y matrices and the successful hyperparameters


@dataclass(frozen=True)
class MatrixRow:
    """One model (tag family, training variant, HPO algorithm) scored on each casing variant."""

    tag_family: str
    trained_on: str
    hpo_alg: str
    scores: Mapping[str, float | None] = field(default_factory=dict)


MATRIX_KEYS = ("Tag Family", "Trained on", "HPO Alg")


def _check_variants(names, where: str) -> None:
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise ValueError(f"{where}: unknown casing variant(s) {unknown}; known: {', '.join(VARIANTS)}")


def matrix_table(
    rows: Sequence[MatrixRow], *, digits: int = 5, bold_best: bool = False, title: str = ""
) -> Table:
    """The seed-000 development/test table: one row per model, one column per evaluation variant."""
    for r in rows:
        _check_variants(r.scores, f"matrix row {r.tag_family}/{r.trained_on}/{r.hpo_alg}")
    bold = {
        v: _bold_best([r.scores.get(v) for r in rows]) if bold_best else [False] * len(rows) for v in VARIANTS
    }
    out = []
    for i, r in enumerate(rows):
        cells = [Cell(family_label(r.tag_family)), Cell(r.trained_on), Cell(r.hpo_alg)]
        cells += [Cell(_num(r.scores.get(v), f".{digits}f"), bold[v][i], True) for v in VARIANTS]
        out.append(cells)
    return Table([*MATRIX_KEYS, *VARIANTS], out, title=title)


@dataclass(frozen=True)
class HyperparamRow:
    """The best configuration found for one (tag family, training variant, HPO algorithm)."""

    tag_family: str
    trained_on: str
    hpo_alg: str
    learning_rate: float | None = None
    weight_decay: float | None = None
    warmup_ratio: float | None = None
    attention_dropout: float | None = None
    hidden_dropout: float | None = None
    batch_size: int | None = None


HYPERPARAM_COLUMNS = (
    "learning rate",
    "weight decay",
    "warmup ratio",
    "attention dropout",
    "hidden dropout",
    "batch size",
)


def hyperparams_table(rows: Sequence[HyperparamRow], *, title: str = "") -> Table:
    """The seed-000 "Successful Hyperparameters" table."""
    out = []
    for r in rows:
        out.append(
            [
                Cell(family_label(r.tag_family)),
                Cell(r.trained_on),
                Cell(r.hpo_alg),
                Cell(fmt_lr(r.learning_rate), numeric=True),
                Cell(_num(r.weight_decay, ".9f"), numeric=True),
                Cell(_num(r.warmup_ratio, ".9f"), numeric=True),
                Cell(_num(r.attention_dropout, ".9f"), numeric=True),
                Cell(_num(r.hidden_dropout, ".9f"), numeric=True),
                Cell(MISSING if r.batch_size is None else str(int(r.batch_size)), numeric=True),
            ]
        )
    return Table([*MATRIX_KEYS, *HYPERPARAM_COLUMNS], out, title=title)


# ----------------------------------------------------------------------------------------------
# Seed 000: batch-size table


@dataclass(frozen=True)
class BatchSizeRow:
    label: str  # "F1-Dev", "F1-Test"
    scores: Mapping[int, float | None]


@dataclass(frozen=True)
class BatchSizeTable:
    batch_sizes: Sequence[int]
    rows: Sequence[BatchSizeRow]
    digits: int = 4
    higher_is_better: bool = True


def batch_size_table(data: BatchSizeTable, *, title: str = "") -> Table:
    """Rows F1-Dev/F1-Test, columns BS=16, BS=32, ...; the best of each row in bold."""
    out = []
    for r in data.rows:
        values = [r.scores.get(bs) for bs in data.batch_sizes]
        bold = _bold_best(values, data.higher_is_better)
        out.append(
            [Cell(r.label)]
            + [Cell(_num(v, f".{data.digits}f"), b, True) for v, b in zip(values, bold, strict=True)]
        )
    return Table(["", *(f"BS={bs}" for bs in data.batch_sizes)], out, title=title)


# ----------------------------------------------------------------------------------------------
# Seed 002: one row per seed, mean ± std, comparisons


@dataclass(frozen=True)
class SeedRun:
    seed: int
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class NamedComparison:
    """``model`` (the seeds table's model) vs ``against`` on ``metric``."""

    metric: str
    against: str
    comparison: Comparison


@dataclass(frozen=True)
class SeedsTable:
    model: str
    runs: Sequence[SeedRun]
    metrics: Sequence[str] = ()  # column order; default: the first run's metrics
    comparisons: Sequence[NamedComparison] = ()
    digits: int = 4

    @property
    def metric_names(self) -> list[str]:
        if self.metrics:
            return list(self.metrics)
        return list(self.runs[0].metrics) if self.runs else []


def _side(c: Comparison) -> str:
    return "" if c.alternative == "two-sided" else ", one-sided"


def seeds_table(data: SeedsTable, *, title: str = "") -> Table:
    """One row per seed, then ``mean ± std``, then one row per compared model with p and test."""
    metrics = data.metric_names
    rows = [
        [Cell(str(r.seed))]
        + [Cell(_num(r.metrics.get(m), f".{data.digits}f"), numeric=True) for m in metrics]
        for r in data.runs
    ]
    mean_row = [Cell("mean ± std")]
    for m in metrics:
        values = [r.metrics[m] for r in data.runs if r.metrics.get(m) is not None]
        mean_row.append(Cell(summarize(values).format(data.digits) if values else MISSING, numeric=True))
    rows.append(mean_row)
    for against in dict.fromkeys(nc.against for nc in data.comparisons):
        row = [Cell(f"p vs {against}")]
        for m in metrics:
            nc = next((x for x in data.comparisons if x.against == against and x.metric == m), None)
            if nc is None:
                row.append(Cell(MISSING))
                continue
            c = nc.comparison
            label = TEST_LABELS.get(c.chosen, c.chosen)
            if c.p_value is None:
                text = f"not testable ({label}{_side(c)}, n={c.n} < {c.chosen_test.min_n})"
            else:
                text = f"{format_p(c.p_value)} ({label}{_side(c)})"
            row.append(Cell(text, bold=c.significant is True))
        rows.append(row)
    return Table(["seed", *metrics], rows, title=title)


COMPARISON_COLUMNS = (
    "metric",
    "vs",
    "n",
    "mean",
    "mean (vs)",
    "difference [CI]",
    "test",
    "p",
    "effect size",
    "result",
)


def _verdict(c: Comparison) -> str:
    if c.significant is True:
        return "significant"
    if c.significant is False:
        return "not significant"
    return f"undecided: n too small (needs n >= {c.chosen_test.min_n})"


def comparisons_table(comparisons: Sequence[NamedComparison], *, digits: int = 4) -> Table:
    """Details of every comparison of one model (its seeds table's) with others: difference with
    its bootstrap CI, test, p, effect size, result."""
    rows = []
    for nc in comparisons:
        c = nc.comparison
        diff = f"{c.diff:+.{digits}f}"
        if c.ci is not None:
            diff += f" [{c.ci[0]:+.{digits}f}, {c.ci[1]:+.{digits}f}]"
        effect = MISSING if c.effect_size is None else f"{c.effect_name} = {c.effect_size:+.2f}"
        rows.append(
            [
                Cell(nc.metric),
                Cell(nc.against),
                Cell(str(c.n) if c.paired else f"{c.n_a}/{c.n_b}", numeric=True),
                Cell(f"{c.mean_a:.{digits}f}", numeric=True),
                Cell(f"{c.mean_b:.{digits}f}", numeric=True),
                Cell(diff, numeric=True),
                Cell(
                    f"{TEST_LABELS.get(c.chosen, c.chosen)} ({'paired' if c.paired else 'unpaired'}{_side(c)})"
                ),
                Cell(format_p(c.p_value), c.significant is True, True),
                Cell(effect),
                Cell(_verdict(c), c.significant is True),
            ]
        )
    return Table(list(COMPARISON_COLUMNS), rows)


# ----------------------------------------------------------------------------------------------
# Seed 003: GLUE-style table, mean and max over N fine-tuning runs per task


@dataclass(frozen=True)
class GlueTask:
    name: str  # "mrpc"
    metrics: Sequence[str]  # ("F1", "Accuracy")


@dataclass(frozen=True)
class GlueRow:
    """One model: for each task, the runs, each a sequence of metric values in the task's order."""

    model: str
    runs: Mapping[str, Sequence[Sequence[float]]]
    extras: Mapping[str, float] = field(default_factory=dict)  # e.g. perplexity, eval loss


@dataclass(frozen=True)
class GlueTable:
    tasks: Sequence[GlueTask]
    rows: Sequence[GlueRow]
    average_excluding: Sequence[str] = ()  # a second average without these tasks ("wnli")
    extras: Sequence[str] = ()
    scale: float = 100.0
    digits: int = 2
    extras_digits: int = 3


def _glue_stat(runs: Sequence[Sequence[float]], stat: str) -> list[float]:
    """Per-metric mean over runs, or the metrics of the best run (highest mean of its metrics)."""
    if stat == "mean":
        return [sum(r[j] for r in runs) / len(runs) for j in range(len(runs[0]))]
    return list(max(runs, key=lambda r: sum(r) / len(r)))


def glue_table(data: GlueTable, *, title: str = "") -> Table:
    """Seed-003 style: per model a ``mean`` row and a ``max`` row over its N runs per task.

    Task scores are x``scale`` with ``digits`` decimals; multi-metric tasks read ``88.85/84.07``.
    ``Average`` is the mean over tasks of each task's mean metric (GLUE's convention); it is ``-``
    when a task is missing. The ``max`` row takes, per task, the run with the best mean metric.
    """
    names = [t.name for t in data.tasks]
    for r in data.rows:
        unknown = set(r.runs) - set(names)
        if unknown:
            raise ValueError(f"GLUE row {r.model}: unknown task(s) {sorted(unknown)}; known: {names}")
        for t in data.tasks:
            for run in r.runs.get(t.name, ()):
                if len(run) != len(t.metrics):
                    raise ValueError(
                        f"GLUE row {r.model}, task {t.name}: a run has {len(run)} values, expected {len(t.metrics)}"
                    )
    avg_cols = ["Average"]
    avg_sub = ["all tasks"]
    if data.average_excluding:
        avg_cols.append("Average w/o " + ", ".join(data.average_excluding))
        avg_sub.append("w/o " + ", ".join(data.average_excluding))
    header = ["Model", "Stat", "Runs", *avg_cols, *names, *data.extras]
    sub = ["", "", "", *avg_sub, *("/".join(t.metrics) for t in data.tasks), *("" for _ in data.extras)]
    rows = []
    f = f".{data.digits}f"
    for r in data.rows:
        counts = sorted({len(r.runs[t]) for t in names if r.runs.get(t)})
        n_text = (
            MISSING if not counts else str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        )
        for stat in ("mean", "max"):
            per_task: dict[str, list[float]] = {
                t.name: [v * data.scale for v in _glue_stat(r.runs[t.name], stat)]
                for t in data.tasks
                if r.runs.get(t.name)
            }
            averages = []
            for excluded in ((), tuple(data.average_excluding))[: len(avg_cols)]:
                included = [t for t in names if t not in excluded]
                if all(t in per_task for t in included) and included:
                    avg = sum(sum(per_task[t]) / len(per_task[t]) for t in included) / len(included)
                    averages.append(Cell(format(avg, f), numeric=True))
                else:
                    averages.append(Cell(MISSING))
            cells = [Cell(r.model), Cell(stat), Cell(n_text, numeric=True), *averages]
            for t in names:
                vals = per_task.get(t)
                cells.append(Cell("/".join(format(v, f) for v in vals) if vals else MISSING, numeric=True))
            for e in data.extras:
                cells.append(Cell(_num(r.extras.get(e), f".{data.extras_digits}f"), numeric=True))
            rows.append(cells)
    return Table(header, rows, subheader=sub, title=title)
