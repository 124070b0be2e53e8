"""`kftune report RUN_OR_DIR` and ``build_report`` on run directories of real trained models.

The run directories come from ``tests/registry/test_registry_rundirs.py`` (real ``kftune train`` and
``kftune evaluate`` outputs, a synthetic ``tune/``), built once per session and shared with the
registry tests.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kftune.report import render_html, render_markdown
from kftune.report.build import build_report
from kftune.report.render import make_plots

_spec = importlib.util.spec_from_file_location(
    "registry_rundirs", Path(__file__).resolve().parents[1] / "registry" / "test_registry_rundirs.py"
)
rundirs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rundirs)

PLOTS = ["matrix_dev", "matrix_test", "optimization_history", "param_importance", "parallel_coordinates",
         "learning_curves"]  # fmt: skip


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory, kftune_home) -> Path:
    return rundirs.build_run(rundirs.shared_base(tmp_path_factory))


@pytest.fixture(scope="module")
def run(ner_run, tmp_path_factory) -> Path:
    """The 3-seed run plus a comparison.json against a baseline (p-values in the seeds table)."""
    from kftune.registry.rundir import compare_scores, load_run_dir, write_comparisons

    run = rundirs.copy_run(ner_run, tmp_path_factory.mktemp("report-run") / "ner-original-cased")
    scores = load_run_dir(run).seed_scores()
    baseline = {1: 0.30, 2: 0.31, 3: 0.29}
    write_comparisons(
        run / "comparison.json", [compare_scores(scores, baseline, metric="test_f1", against="baseline")]
    )
    return run


@pytest.fixture(scope="module")
def written(run):
    # the real command in a fresh process (tests/conftest.py exports PYTHONPATH for it)
    proc = subprocess.run(
        [sys.executable, "-m", "kftune", "report", str(run)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run / "report", proc


def _m(run: Path, seed: int) -> dict:
    return json.loads((run / "retrain" / f"seed-{seed}" / "metrics.json").read_text())


def _ev(run: Path, seed: int) -> dict:
    return json.loads((run / "eval" / f"seed-{seed}.json").read_text())


def test_cli_writes_the_report_into_the_run_dir_and_prints_the_paths(written):
    out, proc = written
    lines = proc.stdout.splitlines()
    assert lines[:3] == [f"markdown: {out.resolve() / 'report.md'}", f"html:     {out.resolve() / 'report.html'}",
                         f"json:     {out.resolve() / 'report.json'}"]  # fmt: skip
    assert lines[3:] == [f"plot:     {out.resolve() / (p + '.png')}" for p in PLOTS]
    for name in PLOTS:
        img = Image.open(out / f"{name}.png")
        assert img.format == "PNG" and img.width >= 800 and img.height >= 150
    md = (out / "report.md").read_text()
    assert re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md) == [f"{p}.png" for p in PLOTS]


def test_tables_hold_the_run_dirs_numbers(run, written):
    report = build_report(run)
    (dev,) = report.dev_matrix
    (test,) = report.test_matrix
    assert (dev.tag_family, dev.trained_on, dev.hpo_alg) == ("original", "cased", "ASHA")
    for split, row in (("dev", dev), ("test", test)):
        assert set(row.scores) == set(_ev(run, 1)[split])
        for variant, value in row.scores.items():
            assert value == pytest.approx(
                statistics.mean(_ev(run, s)[split][variant]["f1"] for s in (1, 2, 3))
            )
    best = {
        p["name"]: p["value"]
        for p in json.loads((run / "tune" / "best.json").read_text())["parameterAssignments"]
    }
    (hp,) = report.hyperparameters
    assert hp.learning_rate == float(best["learning_rate"]) and hp.batch_size == int(best["batch_size"])
    assert hp.hidden_dropout == float(best["hidden_dropout"]) and hp.hpo_alg == "ASHA"
    (seeds,) = report.seeds
    assert seeds.metrics == ["dev F1", "test F1", "test precision", "test recall"]
    for r in seeds.runs:
        m = _m(run, r.seed)
        assert (
            r.metrics["dev F1"] == m["best"]["metrics"]["eval_f1"]
            and r.metrics["test F1"] == m["test"]["test_f1"]
        )
    (cmp,) = seeds.comparisons
    assert cmp.against == "baseline" and cmp.metric == "test F1" and cmp.comparison.paired
    md = (written[0] / "report.md").read_text()
    test_f1 = [_m(run, s)["test"]["test_f1"] for s in (1, 2, 3)]
    assert f"{statistics.mean(test_f1):.4f} ± {statistics.stdev(test_f1):.4f}" in md
    assert "| p vs baseline |" in re.sub(r" +", " ", md) and "Statistical policy: " in md
    assert f"| Original | cased | ASHA | {dev.scores['cased']:.5f} |" in re.sub(r" +", " ", md)
    # the search: every trial, its rung and parent from the labels, its curve
    trials = json.loads((run / "tune" / "trials.json").read_text())
    assert [t.name for t in report.trials] == [t["name"] for t in trials]
    by_name = {t.name: t for t in report.trials}
    promoted = next(t for t in trials if t["labels"]["kftune.io/rung"] == "2")
    rec = by_name[promoted["name"]]
    assert rec.rung == 2 and rec.parent == promoted["labels"]["kftune.io/parent-trial"]
    assert rec.value == promoted["metrics"]["eval_f1"] and [list(p) for p in rec.curve] == promoted["curve"]
    assert "num_epochs" not in rec.params and rec.params["batch_size"] in (8, 16, 32)
    assert (report.objective, report.direction) == ("eval_f1", "maximize")
    assert report.batch_sizes is None  # the search varied more than the batch size


def test_html_renders_in_headless_chromium(written, tmp_path):
    from test_report_render import CHROME_FLAGS, _chromium

    exe = _chromium()
    if exe is None:
        pytest.skip("headless Chromium not installed: apt-get install -y chromium")
    page = written[0] / "report.html"
    html = page.read_text()
    assert "<script" not in html and not re.search(r"https?://", html)
    shot = tmp_path / "shot.png"
    dom = subprocess.run(
        [exe, *CHROME_FLAGS, "--dump-dom", f"--screenshot={shot}", "--window-size=1280,5000", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    # matrices (2), hyperparameters, seeds + comparisons, importance = 6 tables; 6 plots
    assert dom.count("<table") == 6 and dom.count("<img") == len(PLOTS)
    assert "Successful hyperparameters" in dom and "p vs baseline" in dom
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    non_white = (img < 245).any(axis=2)
    assert non_white.mean() > 0.05 and np.flatnonzero(non_white.any(axis=1)).max() > 3000
    # viridis' top colour only exists inside the decoded heatmap PNG
    assert ((np.abs(img - np.array((253, 231, 37))).max(axis=2) <= 12).sum()) > 50


def test_markdown_with_embedded_images_for_a_kfp_artifact(run):
    report = build_report(run)
    plots = make_plots(report)
    assert [p.name for p in plots] == PLOTS
    md = render_markdown(report, plots, embed_images=True)
    srcs = re.findall(r"!\[[^\]]*\]\(data:image/png;base64,([^)]+)\)", md)
    assert [base64.b64decode(s) for s in srcs] == [p.png for p in plots]
    assert render_html(report, plots).count("data:image/png;base64,") == len(PLOTS)


def test_a_directory_of_run_directories_is_one_matrix(ner_run, tmp_path_factory, kftune_cli):
    base = rundirs.shared_base(tmp_path_factory)
    uncased = rundirs.build_run(base, train_variant="uncased", seeds=(1, 2), tune=False)
    parent = tmp_path_factory.mktemp("ner-matrix")
    rundirs.copy_run(uncased, parent / "b-uncased")  # listed first by name, second in seed-000 order
    rundirs.copy_run(ner_run, parent / "a-cased")
    proc = kftune_cli("report", str(parent), "--title", "NER matrix")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = build_report(parent, title="NER matrix")
    assert [r.trained_on for r in report.dev_matrix] == ["cased", "uncased"]
    assert [r.hpo_alg for r in report.dev_matrix] == ["ASHA", "-"]
    assert report.dev_matrix[1].scores["uncased"] == pytest.approx(
        statistics.mean(_ev(uncased, s)["dev"]["uncased"]["f1"] for s in (1, 2))
    )
    assert [h.hpo_alg for h in report.hyperparameters] == ["ASHA", "-"]
    assert report.hyperparameters[1].learning_rate == _m(uncased, 1)["args"]["learning_rate"]
    assert [s.model for s in report.seeds] == ["original/cased (a-cased)", "original/uncased (b-uncased)"]
    assert report.trials == () and any("kftune report" in n and "a-cased" in n for n in report.notes)
    assert any(n.startswith("b-uncased: no tune/trials.json") for n in report.notes)
    md = (parent / "report" / "report.md").read_text()
    assert md.startswith("# NER matrix\n") and md.count("### original/") == 2
    assert sorted(p.name for p in (parent / "report").glob("*.png")) == ["matrix_dev.png", "matrix_test.png"]


def test_missing_pieces_give_the_tables_that_can_be_made(ner_run, tmp_path, kftune_cli):
    run = rundirs.copy_run(ner_run, tmp_path / "one-seed")
    shutil.rmtree(run / "tune")
    for seed in (2, 3):
        shutil.rmtree(run / "retrain" / f"seed-{seed}")
        (run / "eval" / f"seed-{seed}.json").unlink()
    (run / "run.json").unlink()
    proc = kftune_cli("report", str(run), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = build_report(run)
    assert report.trials == [] and report.batch_sizes is None
    assert [h.hpo_alg for h in report.hyperparameters] == ["-"]  # the values seed 1 was trained with
    assert report.hyperparameters[0].learning_rate == 2e-3 and report.hyperparameters[0].batch_size == 8
    notes = " | ".join(report.notes)
    assert "only one completed seed" in notes and "no tune/trials.json" in notes
    md = (tmp_path / "out" / "report.md").read_text()
    assert "(n=1)" in md and "## Hyperparameter search" not in md and "## Evaluation matrix" in md
    # a bare `kftune train` output dir works too
    trial = build_report(ner_run / "retrain" / "seed-1")
    assert [r.seed for r in trial.seeds[0].runs] == [1] and list(trial.dev_matrix[0].scores) == ["cased"]


def test_batch_size_table_when_the_search_varied_only_the_batch_size(ner_run, tmp_path):
    run = rundirs.copy_run(ner_run, tmp_path / "bs")
    trials = rundirs.synthetic_trials(8, only_batch_size=True)
    (run / "tune" / "trials.json").unlink()
    (run / "tune" / "trials.json").write_text(json.dumps(trials))
    (run / "tune" / "best.json").unlink()
    (run / "tune" / "best.json").write_text(json.dumps(rundirs.best_json(trials)))
    report = build_report(run)
    table = report.batch_sizes
    assert table is not None and list(table.batch_sizes) == [16, 32, 64, 128]
    dev, test = table.rows
    assert (dev.label, test.label) == ("F1-Dev", "F1-Test")
    for bs in (16, 32, 64, 128):
        same = [t for t in trials if t["assignments"]["batch_size"] == str(bs)]
        assert dev.scores[bs] == pytest.approx(statistics.mean(t["metrics"]["eval_f1"] for t in same))
        assert test.scores[bs] == pytest.approx(statistics.mean(t["metrics"]["test_f1"] for t in same))
    md = render_markdown(report, [])
    assert "## Batch size" in md
    assert "| | BS=16 | BS=32 | BS=64 | BS=128 |" in re.sub(r" +", " ", md)
    assert "| F1-Dev | 0.6900 | **0.7000** | 0.6900 | 0.6800 |" in re.sub(r" +", " ", md)


def test_not_a_run_dir_is_one_line_exit_2(tmp_path, kftune_cli, ner_run):
    import contextlib
    import io

    from kftune.cli import main

    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    cases = [
        ([str(tmp_path / "empty")], "is not a run directory"),
        ([str(tmp_path / "missing")], "does not exist"),
        ([str(tmp_path / "file")], "is not a directory"),
        ([str(ner_run), "--out", str(tmp_path / "file" / "sub")], "cannot write the report"),
    ]
    for i, (argv, words) in enumerate(cases):
        if i == 0:  # the real command once; the others through the same main() in-process (no start-up)
            proc = kftune_cli("report", *argv)
            code, err = proc.returncode, proc.stderr
        else:
            buf = io.StringIO()
            with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(io.StringIO()):
                code = main(["report", *argv])
            err = buf.getvalue()
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1, (argv, err)
        assert lines[0].startswith("kftune report: error: ") and words in lines[0], lines
    assert not (ner_run / "report").exists()
