"""The plots are real images of the data: checked on the Axes and on the rendered PNG pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from PIL import Image
from report_samples import synthetic_trials

from kftune.report import plots
from kftune.report.plots import TrialRecord
from kftune.report.tables import VARIANTS, MatrixRow


def _png(fig) -> Image.Image:
    data = plots.png_bytes(fig)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(data)).convert("RGB")


def _pixel_at(fig, ax, x, y) -> tuple[int, int, int]:
    """The rendered colour at data coordinates (x, y) of ``ax``."""
    img = _png(fig)
    px, py = ax.transData.transform((x, y))
    return img.getpixel((int(round(px)), int(round(img.height - py))))


def test_optimization_history_plots_values_and_best_so_far():
    values = [0.80, 0.85, None, 0.83, 0.87, 0.86]
    trials = [TrialRecord(f"t{i}", v, {"lr": 1e-5 * (i + 1)}) for i, v in enumerate(values)]
    fig = plots.optimization_history_figure(trials, objective="eval_f1")
    ax = fig.axes[0]
    pts = ax.collections[0].get_offsets()
    assert pts[:, 0].tolist() == [0, 1, 3, 4, 5]  # the failed trial (None) is left out, order kept
    assert pts[:, 1].tolist() == [0.80, 0.85, 0.83, 0.87, 0.86]
    best = ax.get_lines()[0]
    assert list(best.get_ydata()) == [0.80, 0.85, 0.85, 0.87, 0.87]
    assert ax.get_ylabel() == "eval_f1"
    assert plots.best_so_far([3, 1, 2, 0.5], "minimize") == [3, 1, 1, 0.5]
    img = _png(fig)
    assert img.size == (800, 450)
    other = plots.optimization_history_figure([TrialRecord("a", 0.1), TrialRecord("b", 0.9)])
    assert np.asarray(_png(other)).tobytes() != np.asarray(img).tobytes()


def test_heatmap_holds_the_values_and_colours_follow_them():
    rows = [
        MatrixRow("original", "cased", "ASHA", {v: 0.80 for v in VARIANTS} | {"cased": 0.90}),
        MatrixRow("original", "uncased", "ASHA", {v: 0.85 for v in VARIANTS} | {"ne-lower": 0.70}),
        MatrixRow("simple", "cased", "ASHA"),  # not run yet: grey row of '-'
    ]
    fig = plots.matrix_heatmap_figure(rows, title="Development")
    ax = fig.axes[0]
    arr = ax.images[0].get_array()
    assert arr.shape == (3, 7)
    assert arr[0, 0] == 0.90 and arr[1, 4] == 0.70 and arr.mask[2].all() and not arr.mask[:2].any()
    texts = {t.get_text() for t in ax.texts}
    assert {"0.9000", "0.7000", "0.8500", "-"} <= texts
    assert [t.get_text() for t in ax.get_xticklabels()] == list(VARIANTS)
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "Original / cased",
        "Original / uncased",
        "Simple / cased",
    ]
    # viridis: the highest score is yellow, the lowest dark purple, missing cells grey
    hi = _pixel_at(fig, ax, 0.3, 0.0)  # (row 0, cased), off the annotation text
    lo = _pixel_at(fig, ax, 4.3, 1.0)  # (row 1, ne-lower)
    missing = _pixel_at(fig, ax, 2.3, 2.0)
    assert hi[0] > 200 and hi[1] > 200 and hi[2] < 100, hi
    assert lo[0] < 90 and lo[1] < 40 and lo[2] > 60, lo
    assert abs(missing[0] - missing[1]) < 5 and abs(missing[1] - missing[2]) < 5 and missing[0] > 180
    # swap the two extremes: the pixels swap colours too
    swapped = [
        MatrixRow("original", "cased", "ASHA", dict(rows[0].scores) | {"cased": 0.70}),
        MatrixRow("original", "uncased", "ASHA", dict(rows[1].scores) | {"ne-lower": 0.90}),
        rows[2],
    ]
    fig2 = plots.matrix_heatmap_figure(swapped, title="Development")
    ax2 = fig2.axes[0]
    assert _pixel_at(fig2, ax2, 0.3, 0.0) == lo and _pixel_at(fig2, ax2, 4.3, 1.0) == hi


def test_param_importance_finds_the_parameter_that_matters():
    rng = np.random.default_rng(3)
    trials = []
    for i in range(30):
        params = {
            "learning_rate": float(10 ** rng.uniform(-6, -4)),
            "weight_decay": float(rng.uniform(0, 0.2)),
            "optim": str(rng.choice(["adamw", "sgd"])),
        }
        value = 0.9 - 0.05 * abs(np.log10(params["learning_rate"]) + 5) + rng.normal(0, 0.001)
        trials.append(TrialRecord(f"t{i}", float(value), params))
    imps = plots.param_importance(trials, seed=0)
    assert [p.name for p in imps][0] == "learning_rate"
    assert imps[0].importance > 0.7
    assert sum(p.importance for p in imps) == pytest.approx(1.0)
    assert imps == plots.param_importance(trials, seed=0)  # seeded
    assert plots.param_importance(trials[:3]) == []  # too few trials
    fig = plots.param_importance_figure(trials, importances=imps)
    bars = fig.axes[0].patches
    assert [b.get_width() for b in bars] == [p.importance for p in imps[::-1]]


def test_param_importance_adds_the_rung_when_budgets_differ():
    trials = synthetic_trials()
    names = [p.name for p in plots.param_importance(trials)]
    assert plots.RUNG_FEATURE in names
    same_rung = [TrialRecord(t.name, t.value, t.params) for t in trials]
    assert plots.RUNG_FEATURE not in [p.name for p in plots.param_importance(same_rung)]


def test_parallel_coordinates_one_line_per_trial_best_in_red():
    trials = synthetic_trials(n=12)
    fig = plots.parallel_coordinates_figure(trials, objective="eval_f1")
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines() if ln.get_gid()]
    assert sorted(ln.get_gid() for ln in lines) == sorted(t.name for t in trials)
    best = max(trials, key=lambda t: t.value)
    red = lines[-1]
    assert red.get_gid() == best.name
    assert to_rgba(red.get_color()) == to_rgba("tab:red") and red.get_linewidth() == 3
    assert ax.get_xticks().tolist() == [0, 1, 2, 3]  # 3 hyperparameters + the objective
    ys = np.array([ln.get_ydata() for ln in lines])
    assert ys.min() == 0 and ys.max() == 1
    assert red.get_ydata()[-1] == 1.0  # the best objective sits at the top of its axis
    # the learning rate (spanning > 1 decade) is on a log axis: scaled positions follow log10(lr)
    names = sorted(best.params)
    j = names.index("learning_rate")
    lrs = np.log10([t.params["learning_rate"] for t in trials])
    expect = (np.log10(best.params["learning_rate"]) - lrs.min()) / np.ptp(lrs)
    assert red.get_ydata()[j] == pytest.approx(expect)
    assert f"{best.value:.4g}" in ax.get_title()


def test_learning_curves_coloured_by_rung_and_joined_to_parent():
    parent = TrialRecord("a", 0.80, {"lr": 1e-5}, "EARLY_STOPPED", 0, [(1, 0.80)])
    child = TrialRecord("a-r1", 0.84, {"lr": 1e-5}, "EARLY_STOPPED", 1, [(2, 0.83), (3, 0.84)], parent="a")
    other = TrialRecord("b", 0.75, {"lr": 3e-5}, "EARLY_STOPPED", 0, [(1, 0.75)])
    fig = plots.learning_curves_figure([parent, child, other], metric="eval_f1")
    ax = fig.axes[0]
    lines = {ln.get_gid(): ln for ln in ax.get_lines() if ln.get_gid()}
    assert set(lines) == {"a", "a-r1", "b"}
    assert list(lines["a-r1"].get_xdata()) == [1, 2, 3]  # starts at the parent's last point
    assert list(lines["a-r1"].get_ydata()) == [0.80, 0.83, 0.84]
    assert lines["a"].get_color() == lines["b"].get_color() != lines["a-r1"].get_color()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["rung 0", "rung 1"]
    img = np.asarray(_png(fig))
    assert (img != 255).any(axis=2).mean() > 0.05  # not a blank canvas


@pytest.mark.parametrize(
    "make",
    [
        lambda: plots.optimization_history_figure([]),
        lambda: plots.param_importance_figure([]),
        lambda: plots.parallel_coordinates_figure([]),
        lambda: plots.learning_curves_figure([TrialRecord("a", 0.5)]),
        lambda: plots.matrix_heatmap_figure([MatrixRow("original", "cased", "ASHA")]),
    ],
)
def test_empty_inputs_give_a_labelled_placeholder(make):
    fig = make()
    assert any(t.get_text() for t in fig.axes[0].texts)
    _png(fig)
