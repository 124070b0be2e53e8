"""A run's report as one data object, rendered to markdown (+ PNG files) and self-contained HTML.

:class:`Report` holds plain data (tables' rows, seed runs with comparisons, trials); sections
without data are left out. :func:`render_html` returns one page with inline CSS and the plots as
base64 PNGs (no external resources: it can be opened offline, attached to a KFP run or an MLflow
run as an artifact). :func:`write_report` writes ``report.md`` with the PNGs next to it, the same
page as ``report.html``, and the input as ``report.json`` (:func:`report_from_dict` reads it back).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kftune.evaluate.stats import POLICY, Comparison
from kftune.report import plots
from kftune.report.plots import TrialRecord
from kftune.report.tables import (
    BatchSizeRow,
    BatchSizeTable,
    GlueRow,
    GlueTable,
    GlueTask,
    HyperparamRow,
    MatrixRow,
    NamedComparison,
    SeedRun,
    SeedsTable,
    Table,
    batch_size_table,
    comparisons_table,
    glue_table,
    hyperparams_table,
    matrix_table,
    seeds_table,
    to_html,
    to_markdown,
)
from kftune.report.tables import Cell as _Cell


@dataclass
class Report:
    title: str
    description: str = ""  # paragraphs separated by blank lines; plain text
    metric: str = "F1"  # what the evaluation matrices hold
    dev_matrix: Sequence[MatrixRow] = ()
    test_matrix: Sequence[MatrixRow] = ()
    hyperparameters: Sequence[HyperparamRow] = ()
    batch_sizes: BatchSizeTable | None = None
    seeds: Sequence[SeedsTable] = ()
    glue: GlueTable | None = None
    trials: Sequence[TrialRecord] = ()
    objective: str = "objective"
    direction: str = "maximize"
    bold_best: bool = True
    notes: Sequence[str] = ()  # limitations, caveats: a bullet list at the end
    seed: int = 0  # parameter-importance forest


@dataclass(frozen=True)
class Plot:
    name: str  # file stem: matrix_dev, optimization_history, ...
    caption: str
    png: bytes
    table: Table | None = None  # the numbers behind the plot, shown under it (importance)


@dataclass(frozen=True)
class ReportPaths:
    markdown: Path
    html: Path
    json: Path
    images: dict[str, Path] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Content


def make_plots(report: Report) -> list[Plot]:
    """The report's PNGs, in page order; a plot is left out when its data is absent."""
    out = []
    for name, rows, title in (
        ("matrix_dev", report.dev_matrix, "Development"),
        ("matrix_test", report.test_matrix, "Test"),
    ):
        if any(r.scores for r in rows):
            fig = plots.matrix_heatmap_figure(rows, title=f"{title}: {report.metric}", metric=report.metric)
            out.append(
                Plot(
                    name,
                    f"{title} evaluation matrix (rows: trained on; columns: evaluated on)",
                    plots.png_bytes(fig),
                )
            )
    trials = list(report.trials)
    if any(t.value is not None for t in trials):
        kw = {"objective": report.objective}
        out.append(
            Plot(
                "optimization_history",
                "Objective of each trial and the best so far",
                plots.png_bytes(plots.optimization_history_figure(trials, direction=report.direction, **kw)),
            )
        )
        imps = plots.param_importance(trials, seed=report.seed)
        if imps:
            out.append(
                Plot(
                    "param_importance",
                    "Hyperparameter importance (random-forest permutation importance over the trials)",
                    plots.png_bytes(plots.param_importance_figure(trials, importances=imps, **kw)),
                    _importance_table(imps),
                )
            )
        if any(t.params for t in trials):
            out.append(
                Plot(
                    "parallel_coordinates",
                    "Hyperparameters of every trial, coloured by the objective",
                    plots.png_bytes(
                        plots.parallel_coordinates_figure(trials, direction=report.direction, **kw)
                    ),
                )
            )
    if any(t.curve for t in trials):
        out.append(
            Plot(
                "learning_curves",
                "Learning curves, coloured by the ASHA rung each trial reached",
                plots.png_bytes(plots.learning_curves_figure(trials, metric=report.objective)),
            )
        )
    return out


def _importance_table(imps: Sequence[plots.ParamImportance]) -> Table:
    rows = [
        [_Cell(p.name), _Cell(f"{p.importance:.3f}", numeric=True), _Cell(f"{p.spearman:+.2f}", numeric=True)]
        for p in imps
    ]
    return Table(["hyperparameter", "importance", "Spearman rho"], rows)


def _blocks(report: Report, plot_list: Sequence[Plot]) -> list[tuple[str, Any]]:
    """The page as (kind, payload) blocks: h2, p, table, plot, ul; both renderers walk this list."""
    by_name = {p.name: p for p in plot_list}
    b: list[tuple[str, Any]] = []
    for para in [p.strip() for p in report.description.split("\n\n") if p.strip()]:
        b.append(("p", para))
    if report.dev_matrix or report.test_matrix:
        b.append(("h2", "Evaluation matrix"))
        b.append(
            ("p", f"{report.metric} of each model (row) on each casing variant (column); '-' = not run.")
        )
        for label, rows, name in (
            ("Development", report.dev_matrix, "matrix_dev"),
            ("Test", report.test_matrix, "matrix_test"),
        ):
            if rows:
                b.append(("h3", label))
                b.append(("table", matrix_table(rows, bold_best=report.bold_best)))
                if name in by_name:
                    b.append(("plot", by_name[name]))
    if report.hyperparameters:
        b.append(("h2", "Successful hyperparameters"))
        b.append(("table", hyperparams_table(report.hyperparameters)))
    if report.batch_sizes is not None:
        b.append(("h2", "Batch size"))
        b.append(("table", batch_size_table(report.batch_sizes)))
    if report.seeds:
        b.append(("h2", "Runs by seed"))
        for s in report.seeds:
            b.append(("h3", s.model))
            b.append(("table", seeds_table(s)))
            if s.comparisons:
                b.append(("table", comparisons_table(s.comparisons)))
        if any(s.comparisons for s in report.seeds):
            b.append(("p", "Statistical policy: " + POLICY))
    if report.glue is not None:
        b.append(("h2", "Fine-tuning results (mean and max over runs)"))
        b.append(("table", glue_table(report.glue)))
    hpo = [
        by_name[n]
        for n in ("optimization_history", "param_importance", "parallel_coordinates", "learning_curves")
        if n in by_name
    ]
    if hpo:
        b.append(("h2", "Hyperparameter search"))
        n_done = sum(t.value is not None for t in report.trials)
        b.append(
            (
                "p",
                f"{len(report.trials)} trials, {n_done} with an objective value ({report.objective}, {report.direction}).",
            )
        )
        for p in hpo:
            b.append(("plot", p))
            if p.table is not None:
                b.append(("table", p.table))
    if report.notes:
        b.append(("h2", "Notes and limitations"))
        b.append(("ul", list(report.notes)))
    return b


# ----------------------------------------------------------------------------------------------
# Renderers


def render_markdown(
    report: Report,
    plot_list: Sequence[Plot] | None = None,
    *,
    image_dir: str = "",
    embed_images: bool = False,
) -> str:
    """Markdown; plots are ``![caption](image_dir/NAME.png)`` links to files written beside it, or
    with ``embed_images`` ``data:`` URIs (one file, e.g. a KFP Markdown artifact)."""
    plot_list = make_plots(report) if plot_list is None else plot_list
    out = [f"# {report.title}", ""]
    for kind, payload in _blocks(report, plot_list):
        if kind == "h2":
            out += [f"## {payload}", ""]
        elif kind == "h3":
            out += [f"### {payload}", ""]
        elif kind == "p":
            out += [payload, ""]
        elif kind == "table":
            out += [to_markdown(payload), ""]
        elif kind == "plot":
            if embed_images:
                src = "data:image/png;base64," + base64.b64encode(payload.png).decode("ascii")
            else:
                src = f"{image_dir}{payload.name}.png"
            out += [f"![{payload.caption}]({src})", ""]
        elif kind == "ul":
            out += [f"- {item}" for item in payload] + [""]
    return "\n".join(out).rstrip() + "\n"


CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; color: #1d232b;
       margin: 0 auto; padding: 24px 32px 48px; max-width: 1280px; line-height: 1.45; background: #fff; }
h1 { font-size: 1.7em; border-bottom: 3px solid #2f6fb0; padding-bottom: 6px; }
h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #d5dbe3; padding-bottom: 4px; }
h3 { font-size: 1.05em; margin-top: 1.3em; color: #2f4d6b; }
.scroll { overflow-x: auto; margin: 0.6em 0 1em; }
table.kft { border-collapse: collapse; font-size: 0.86em; }
table.kft th, table.kft td { border: 1px solid #c9d1db; padding: 4px 8px; text-align: left; vertical-align: top; }
table.kft thead th { background: #e9eff6; }
table.kft thead tr.sub th { background: #f4f7fa; font-weight: normal; font-style: italic; }
table.kft tbody tr:nth-child(even) { background: #f7f9fb; }
table.kft td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kft strong { color: #0b4f8a; }
figure { margin: 1em 0 1.6em; }
figure img { max-width: 100%; height: auto; border: 1px solid #e1e6ec; }
figcaption { font-size: 0.85em; color: #555; margin-top: 4px; }
p.meta { color: #666; font-size: 0.85em; }
"""


def render_html(report: Report, plot_list: Sequence[Plot] | None = None) -> str:
    """One self-contained page: inline CSS, plots as ``data:image/png;base64`` images, no scripts."""
    plot_list = make_plots(report) if plot_list is None else plot_list
    esc = html.escape
    body = [f"<h1>{esc(report.title)}</h1>"]
    for kind, payload in _blocks(report, plot_list):
        if kind in ("h2", "h3"):
            body.append(f"<{kind}>{esc(payload)}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{esc(payload)}</p>")
        elif kind == "table":
            body.append(f'<div class="scroll">\n{to_html(payload)}\n</div>')
        elif kind == "plot":
            data = base64.b64encode(payload.png).decode("ascii")
            body.append(
                f'<figure id="{esc(payload.name)}"><img alt="{esc(payload.caption)}" '
                f'src="data:image/png;base64,{data}">'
                f"<figcaption>{esc(payload.caption)}</figcaption></figure>"
            )
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in payload) + "</ul>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(report.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_report(report: Report, out_dir: str | Path) -> ReportPaths:
    """Write report.md (+ one PNG per plot beside it), report.html (self-contained), report.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_list = make_plots(report)
    images = {}
    for p in plot_list:
        path = out / f"{p.name}.png"
        path.write_bytes(p.png)
        images[p.name] = path
    md = out / "report.md"
    md.write_text(render_markdown(report, plot_list), encoding="utf-8")
    page = out / "report.html"
    page.write_text(render_html(report, plot_list), encoding="utf-8")
    js = out / "report.json"
    js.write_text(json.dumps(report_to_dict(report), indent=1) + "\n", encoding="utf-8")
    return ReportPaths(md, page, js, images)


# ----------------------------------------------------------------------------------------------
# JSON form (for passing a report between pipeline steps, and for `kftune report DIR`)


def report_to_dict(report: Report) -> dict[str, Any]:
    d = asdict(report)
    for s, sd in zip(report.seeds, d["seeds"], strict=True):
        sd["comparisons"] = [
            {"metric": c.metric, "against": c.against, "comparison": c.comparison.to_dict()}
            for c in s.comparisons
        ]
    return json.loads(json.dumps(d))  # plain JSON types (tuples -> lists, int keys -> str)


def _matrix_row(d: Mapping[str, Any]) -> MatrixRow:
    return MatrixRow(d["tag_family"], d["trained_on"], d["hpo_alg"], dict(d.get("scores") or {}))


def report_from_dict(d: Mapping[str, Any]) -> Report:
    """Inverse of :func:`report_to_dict` (what ``report.json`` holds)."""
    bs = d.get("batch_sizes")
    glue = d.get("glue")
    return Report(
        title=d["title"],
        description=d.get("description", ""),
        metric=d.get("metric", "F1"),
        dev_matrix=[_matrix_row(r) for r in d.get("dev_matrix") or ()],
        test_matrix=[_matrix_row(r) for r in d.get("test_matrix") or ()],
        hyperparameters=[HyperparamRow(**r) for r in d.get("hyperparameters") or ()],
        batch_sizes=None
        if bs is None
        else BatchSizeTable(
            batch_sizes=[int(x) for x in bs["batch_sizes"]],
            rows=[BatchSizeRow(r["label"], {int(k): v for k, v in r["scores"].items()}) for r in bs["rows"]],
            digits=bs.get("digits", 4),
            higher_is_better=bs.get("higher_is_better", True),
        ),
        seeds=[
            SeedsTable(
                model=s["model"],
                runs=[SeedRun(int(r["seed"]), dict(r["metrics"])) for r in s["runs"]],
                metrics=list(s.get("metrics") or ()),
                comparisons=[
                    NamedComparison(c["metric"], c["against"], Comparison.from_dict(c["comparison"]))
                    for c in s.get("comparisons") or ()
                ],
                digits=s.get("digits", 4),
            )
            for s in d.get("seeds") or ()
        ],
        glue=None
        if glue is None
        else GlueTable(
            tasks=[GlueTask(t["name"], list(t["metrics"])) for t in glue["tasks"]],
            rows=[
                GlueRow(
                    r["model"],
                    {k: [list(run) for run in v] for k, v in r["runs"].items()},
                    dict(r.get("extras") or {}),
                )
                for r in glue["rows"]
            ],
            average_excluding=list(glue.get("average_excluding") or ()),
            extras=list(glue.get("extras") or ()),
            scale=glue.get("scale", 100.0),
            digits=glue.get("digits", 2),
            extras_digits=glue.get("extras_digits", 3),
        ),
        trials=[
            TrialRecord(
                name=t["name"],
                value=t.get("value"),
                params=dict(t.get("params") or {}),
                state=t.get("state", "COMPLETE"),
                rung=t.get("rung"),
                curve=[tuple(p) for p in t.get("curve") or ()],
                parent=t.get("parent"),
            )
            for t in d.get("trials") or ()
        ],
        objective=d.get("objective", "objective"),
        direction=d.get("direction", "maximize"),
        bold_best=d.get("bold_best", True),
        notes=list(d.get("notes") or ()),
        seed=d.get("seed", 0),
    )


def load_report(path: str | Path) -> Report:
    return report_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
