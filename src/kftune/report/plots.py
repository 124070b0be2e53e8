"""PNG plots of a tuning run and of the evaluation matrix (matplotlib, no pyplot state).

Every ``*_figure`` function returns a ``matplotlib.figure.Figure`` built without pyplot (so no
global backend switch, no GUI, nothing left open); :func:`png_bytes` renders one to PNG with
matplotlib's Agg renderer. Inputs are plain
:class:`TrialRecord` objects, whatever tuner produced them (Katib, the local runner, optuna).

Parameter importance (:func:`param_importance`) is the permutation importance of a random forest
fitted to the trials: ``RandomForestRegressor(n_estimators=100, random_state=seed)`` maps the
hyperparameters (categorical ones as ordinal codes) to the objective, then
``sklearn.inspection.permutation_importance(n_repeats=10, random_state=seed)`` measures how much
the forest's R^2 on those trials drops when one parameter's values are shuffled. Negative values
are clipped to 0 and the importances normalised to sum to 1. When trials stopped at different
ASHA/Hyperband rungs, their objectives were measured after different budgets: the rung is then
added as an extra input (reported as ``rung (budget)``) so that the budget's effect is not
credited to the hyperparameters that happened to be promoted. It is computed in-sample on few
trials: a rough guide to what mattered in this search, not a causal claim. The Spearman
correlation between each parameter and the objective gives the direction.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from kftune.report.tables import VARIANTS, MatrixRow, family_label

DPI = 100
RUNG_FEATURE = "rung (budget)"


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a search, in creation order.

    ``value``: the objective the tuner saw (None for failed trials). ``rung``: the ASHA/Hyperband
    rung (0, 1, ...) or None. ``curve``: (epoch, metric) points reported by this trial.
    ``parent``: the trial a promotion resumed from (its curve continues the parent's).
    """

    name: str
    value: float | None
    params: Mapping[str, float | int | str | bool] = field(default_factory=dict)
    state: str = "COMPLETE"
    rung: int | None = None
    curve: Sequence[tuple[float, float]] = ()
    parent: str | None = None


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _sign(direction: str) -> float:
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    return 1.0 if direction == "maximize" else -1.0


def _message(fig: Figure, ax, text: str) -> Figure:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=12, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


# ----------------------------------------------------------------------------------------------
# Optimisation history


def best_so_far(values: Sequence[float], direction: str = "maximize") -> list[float]:
    s = _sign(direction)
    out, best = [], -math.inf
    for v in values:
        best = max(best, s * v)
        out.append(s * best)
    return out


def optimization_history_figure(
    trials: Sequence[TrialRecord], *, direction: str = "maximize", objective: str = "objective"
) -> Figure:
    """Objective of each trial in creation order (dots) and the best so far (step line)."""
    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    pts = [(i, t) for i, t in enumerate(trials) if t.value is not None]
    ax.set_title("Optimisation history")
    if not pts:
        return _message(fig, ax, "no trial reported an objective value")
    xs = [i for i, _ in pts]
    ys = [float(t.value) for _, t in pts]
    complete = [t.state.upper() == "COMPLETE" for _, t in pts]
    ax.scatter(
        [x for x, c in zip(xs, complete, strict=True) if c],
        [y for y, c in zip(ys, complete, strict=True) if c],
        color="tab:blue",
        label="completed trial",
        zorder=3,
    )
    if not all(complete):
        ax.scatter(
            [x for x, c in zip(xs, complete, strict=True) if not c],
            [y for y, c in zip(ys, complete, strict=True) if not c],
            facecolors="none",
            edgecolors="tab:gray",
            label="stopped early",
            zorder=3,
        )
    ax.step(xs, best_so_far(ys, direction), where="post", color="tab:red", label="best so far", zorder=2)
    ax.set_xlabel("trial (in creation order)")
    ax.set_ylabel(objective)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# Parameter importance


@dataclass(frozen=True)
class ParamImportance:
    name: str
    importance: float  # normalised permutation importance, sums to 1 over parameters
    spearman: float  # correlation of the parameter with the objective (direction)


def _design(
    trials: Sequence[TrialRecord],
) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, list], list[TrialRecord]]:
    """Numeric design matrix from trial params; categorical values become sorted ordinal codes."""
    done = [t for t in trials if t.value is not None and t.params]
    names = sorted({k for t in done for k in t.params})
    done = [t for t in done if all(k in t.params for k in names)]
    cats: dict[str, list] = {}
    cols = []
    for k in names:
        vals = [t.params[k] for t in done]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            cols.append([float(v) for v in vals])
        else:
            levels = sorted({str(v) for v in vals})
            cats[k] = levels
            cols.append([float(levels.index(str(v))) for v in vals])
    x = np.array(cols, float).T if cols else np.zeros((len(done), 0))
    y = np.array([float(t.value) for t in done])
    return names, x, y, cats, done


def param_importance(trials: Sequence[TrialRecord], *, seed: int = 0) -> list[ParamImportance]:
    """Permutation importance of a seeded random forest over the trials (see module docstring).

    Returns [] when there are fewer than 4 usable trials or nothing varies.
    """
    from scipy.stats import spearmanr
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    names, x, y, _, done = _design(trials)
    rungs = [t.rung or 0 for t in done]
    if len(set(rungs)) > 1:
        names = [*names, RUNG_FEATURE]
        x = np.column_stack([x, np.array(rungs, float)])
    varying = [j for j in range(x.shape[1]) if np.ptp(x[:, j]) > 0]
    if len(y) < 4 or not varying or np.ptp(y) == 0:
        return []
    xv = x[:, varying]
    rf = RandomForestRegressor(n_estimators=100, random_state=seed, n_jobs=1).fit(xv, y)
    imp = permutation_importance(rf, xv, y, n_repeats=10, random_state=seed, n_jobs=1).importances_mean
    imp = np.clip(imp, 0, None)
    total = imp.sum()
    imp = imp / total if total > 0 else imp
    out = []
    for i, j in enumerate(varying):
        rho = spearmanr(x[:, j], y).statistic
        out.append(ParamImportance(names[j], float(imp[i]), 0.0 if np.isnan(rho) else float(rho)))
    return sorted(out, key=lambda p: (-p.importance, p.name))


def param_importance_figure(
    trials: Sequence[TrialRecord],
    *,
    seed: int = 0,
    objective: str = "objective",
    importances: Sequence[ParamImportance] | None = None,
) -> Figure:
    """Horizontal bars of :func:`param_importance` (or the given ``importances``), most important
    on top, each labelled with its Spearman correlation."""
    imps = list(param_importance(trials, seed=seed) if importances is None else importances)
    fig = Figure(figsize=(9, 0.6 * max(len(imps), 3) + 1.5))
    ax = fig.add_subplot()
    ax.set_title(f"Hyperparameter importance for {objective}")
    if not imps:
        return _message(fig, ax, "not enough varied trials (need >= 4)")
    imps = imps[::-1]
    colors = ["tab:green" if p.spearman >= 0 else "tab:purple" for p in imps]
    bars = ax.barh([p.name for p in imps], [p.importance for p in imps], color=colors)
    for bar, p in zip(bars, imps, strict=True):
        ax.text(
            bar.get_width() + 0.01,
            bar.get_y() + bar.get_height() / 2,
            f"{p.importance:.2f} (rho {p.spearman:+.2f})",
            va="center",
            fontsize=9,
        )
    ax.set_xlim(0, max(1.0, max(p.importance for p in imps) + 0.25))
    ax.set_xlabel("random-forest permutation importance (sums to 1); rho: Spearman correlation")
    ax.legend(
        handles=[
            Line2D([], [], color="tab:green", lw=8, label="higher value, higher objective"),
            Line2D([], [], color="tab:purple", lw=8, label="higher value, lower objective"),
        ],
        loc="lower right",
        fontsize=8,
    )
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# Parallel coordinates


def _axis_scale(values: np.ndarray) -> str:
    lo, hi = float(values.min()), float(values.max())
    return "log" if lo > 0 and hi / lo >= 10 else "linear"


def parallel_coordinates_figure(
    trials: Sequence[TrialRecord], *, direction: str = "maximize", objective: str = "objective"
) -> Figure:
    """One polyline per trial across the hyperparameter axes and the objective, coloured by objective.

    Every axis is scaled to [0, 1] between its min and max (log scale for positive parameters
    spanning a decade or more, e.g. the learning rate; categorical values evenly spaced). The best
    trial is drawn thick and red.
    """
    names, x, y, cats, done = _design(trials)
    fig = Figure(figsize=(max(8.0, 1.6 * (len(names) + 1)), 5))
    ax = fig.add_subplot()
    ax.set_title("Parallel coordinates")
    if len(y) == 0 or not names:
        return _message(fig, ax, "no completed trials with parameters")
    cols = [*names, objective]
    data = np.column_stack([x, y])
    scaled = np.zeros_like(data)
    ticks: list[tuple[str, str]] = []
    for j, name in enumerate(cols):
        v = data[:, j]
        if name in cats:
            n_levels = len(cats[name])
            scaled[:, j] = v / (n_levels - 1) if n_levels > 1 else 0.5
            ticks.append((cats[name][0], cats[name][-1]))
            continue
        scale = "linear" if j == len(cols) - 1 else _axis_scale(v)
        t = np.log10(v) if scale == "log" else v
        span = np.ptp(t)
        scaled[:, j] = (t - t.min()) / span if span > 0 else 0.5
        fmt = (lambda a: f"{a:.1e}") if scale == "log" or abs(v).max() < 1e-3 else (lambda a: f"{a:.4g}")
        ticks.append((fmt(v.min()), fmt(v.max())))
    norm = Normalize(vmin=float(y.min()), vmax=float(y.max()) if np.ptp(y) > 0 else float(y.min()) + 1)
    cmap = matplotlib.colormaps["viridis"]
    order = np.argsort(_sign(direction) * y)  # best drawn last (on top)
    xs = np.arange(len(cols))
    for i in order[:-1]:
        ax.plot(xs, scaled[i], color=cmap(norm(y[i])), alpha=0.8, lw=1.2, gid=done[i].name)
    best = order[-1]
    ax.plot(xs, scaled[best], color="tab:red", lw=3, gid=done[best].name)
    ax.set_title(f"Parallel coordinates (red: best trial, {objective} = {y[best]:.4g})")
    for j in xs:
        ax.axvline(j, color="0.3", lw=0.8)
        ax.text(j, -0.06, ticks[j][0], ha="center", va="top", fontsize=8)
        ax.text(j, 1.04, ticks[j][1], ha="center", va="bottom", fontsize=8)
    ax.set_xticks(xs, [textwrap.fill(c.replace("_", " "), 14) for c in cols], fontsize=9)
    ax.tick_params(axis="x", pad=18)
    ax.set_yticks([])
    ax.set_ylim(-0.15, 1.15)
    ax.set_xlim(-0.3, len(cols) - 0.7)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    sm = ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, label=objective, fraction=0.04)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# Evaluation-matrix heatmap


def matrix_row_label(row: MatrixRow, rows: Sequence[MatrixRow]) -> str:
    """Only the parts that differ between rows: ``uncased``, or ``Original / uncased / ASHA``."""
    parts = []
    if len({r.tag_family for r in rows}) > 1:
        parts.append(family_label(row.tag_family))
    parts.append(row.trained_on)
    if len({r.hpo_alg for r in rows}) > 1:
        parts.append(row.hpo_alg)
    return " / ".join(parts)


def matrix_values(rows: Sequence[MatrixRow]) -> np.ndarray:
    """rows x VARIANTS array of scores, NaN where missing."""
    return np.array(
        [[np.nan if r.scores.get(v) is None else float(r.scores[v]) for v in VARIANTS] for r in rows]
    )


def matrix_heatmap_figure(
    rows: Sequence[MatrixRow], *, title: str = "Evaluation matrix", metric: str = "F1"
) -> Figure:
    """Rows = trained on, columns = evaluated on (the seven variants); annotated values, grey = missing."""
    vals = matrix_values(rows)
    fig = Figure(figsize=(10, 1.0 + 0.55 * max(len(rows), 2)))
    ax = fig.add_subplot()
    ax.set_title(title)
    if vals.size == 0 or np.all(np.isnan(vals)):
        return _message(fig, ax, "no scores yet")
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")
    lo, hi = np.nanmin(vals), np.nanmax(vals)
    norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1e-9)
    im = ax.imshow(np.ma.masked_invalid(vals), cmap=cmap, norm=norm, aspect="auto")
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            v = vals[i, j]
            if np.isnan(v):
                ax.text(j, i, "-", ha="center", va="center", color="0.4")
            else:
                dark = norm(v) < 0.5
                ax.text(
                    j, i, f"{v:.4f}", ha="center", va="center", fontsize=9, color="white" if dark else "black"
                )
    ax.set_xticks(range(len(VARIANTS)), VARIANTS, rotation=25, ha="right", fontsize=9)
    ax.set_yticks(range(len(rows)), [matrix_row_label(r, rows) for r in rows], fontsize=9)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained on")
    fig.colorbar(im, ax=ax, label=metric, fraction=0.03)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# Learning curves by ASHA rung


def learning_curves_figure(trials: Sequence[TrialRecord], *, metric: str = "objective") -> Figure:
    """Each trial's (epoch, metric) curve, coloured by its rung; a promoted trial's curve is joined
    to the last point of the trial it resumed from."""
    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    ax.set_title("Learning curves by ASHA rung")
    with_curve = [t for t in trials if t.curve]
    if not with_curve:
        return _message(fig, ax, "no trial reported per-epoch metrics")
    by_name = {t.name: t for t in trials}
    rungs = sorted({t.rung or 0 for t in with_curve})
    cmap = matplotlib.colormaps["tab10"]
    color = {r: cmap(i % 10) for i, r in enumerate(rungs)}
    for t in sorted(with_curve, key=lambda t: t.rung or 0):
        pts = list(t.curve)
        parent = by_name.get(t.parent) if t.parent else None
        if parent is not None and parent.curve:
            pts = [tuple(parent.curve[-1]), *pts]
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker="o",
            ms=3,
            lw=1.2,
            alpha=0.85,
            color=color[t.rung or 0],
            gid=t.name,
        )
    ax.legend(
        handles=[Line2D([], [], color=color[r], marker="o", label=f"rung {r}") for r in rungs], fontsize=9
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
