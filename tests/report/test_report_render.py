"""The whole report: markdown + PNG files, self-contained HTML (rendered by headless Chromium), JSON."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report_samples import sample_report

from kftune.report import Report, load_report, render_html, render_markdown, write_report
from kftune.report.render import make_plots, report_to_dict

PLOTS = [
    "matrix_dev",
    "matrix_test",
    "optimization_history",
    "param_importance",
    "parallel_coordinates",
    "learning_curves",
]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return write_report(sample_report(), out)


def test_write_report_files(written):
    assert written.markdown.name == "report.md" and written.html.name == "report.html"
    assert list(written.images) == PLOTS
    md = written.markdown.read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert linked == [f"{p}.png" for p in PLOTS]
    for name in linked:
        img = Image.open(written.markdown.parent / name)
        assert img.format == "PNG" and img.width >= 800 and img.height >= 300


def test_markdown_has_the_seed_tables_in_order(written):
    md = written.markdown.read_text()
    heads = re.findall(r"^#+ .*$", md, flags=re.M)
    assert heads == [
        "# NER HPO: original tags, uncased <demo>",
        "## Evaluation matrix",
        "### Development",
        "### Test",
        "## Successful hyperparameters",
        "## Batch size",
        "## Runs by seed",
        "### bcms-bertic",
        "## Fine-tuning results (mean and max over runs)",
        "## Hyperparameter search",
        "## Notes and limitations",
    ]
    assert "| Original   | uncased           | ASHA    | **0.77931** | **0.87012** |" in md
    assert "| Original   | uncased    | ASHA    | 2.326071e-05  | 0.144090228  |" in md
    assert "| F1-Dev  | 0.8651 | 0.8676 | **0.8683** | 0.8635 | 0.8572 |" in md
    assert "| mean ± std             | 0.8328 ± 0.0028" in md
    assert "p vs crosloengual-bert" in md and "Statistical policy: " in md
    assert "| bert_1mi  | max  | 1-3  |" in md


def test_markdown_with_embedded_images(written):
    plots = make_plots(sample_report())
    md = render_markdown(sample_report(), plots, embed_images=True)
    srcs = re.findall(r"!\[[^\]]*\]\(data:image/png;base64,([^)]+)\)", md)
    assert [base64.b64decode(s) for s in srcs] == [written.images[n].read_bytes() for n in PLOTS]


def test_html_is_self_contained(written):
    page = written.html.read_text()
    assert page.startswith("<!DOCTYPE html>")
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == len(PLOTS) and all(s.startswith("data:image/png;base64,") for s in srcs)
    for tag in ("<script", "<link", "<iframe", "href=", "url(", "@import"):
        assert tag not in page
    assert not re.search(r"https?://", page)
    # the embedded images are the same PNGs as the files next to report.md
    first = base64.b64decode(srcs[0].split(",", 1)[1])
    assert first == written.images["matrix_dev"].read_bytes()
    assert page.count('<table class="kft">') == 8
    assert "NER HPO: original tags, uncased &lt;demo&gt;" in page


def test_json_round_trip_renders_the_same(written):
    back = load_report(written.json)
    original = sample_report()
    assert report_to_dict(back) == report_to_dict(original)
    assert render_markdown(back) == written.markdown.read_text()


def test_sections_without_data_are_left_out():
    md = render_markdown(Report(title="empty"))
    assert md == "# empty\n"
    assert make_plots(Report(title="empty")) == []
    page = render_html(Report(title="x", notes=["n"]))
    assert "<img" not in page and "<li>n</li>" in page


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


CHROME_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]


@pytest.mark.skipif(
    _chromium() is None, reason="headless Chromium not installed: apt-get install -y chromium"
)
def test_html_renders_in_headless_chromium(written, tmp_path):
    exe = _chromium()
    url = written.html.resolve().as_uri()
    shot = tmp_path / "shot.png"
    dom = subprocess.run(
        [exe, *CHROME_FLAGS, "--dump-dom", f"--screenshot={shot}", "--window-size=1280,7000", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert dom.count("<table") == 8 and dom.count("<img") == len(PLOTS)
    assert "Successful hyperparameters" in dom and "2.326071e-05" in dom
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[:2] == (7000, 1280)
    non_white = (img < 245).any(axis=2)
    assert non_white.mean() > 0.05  # text, tables and plots, not a blank page
    rows_with_ink = np.flatnonzero(non_white.any(axis=1))
    assert rows_with_ink.max() > 5000  # the page is long: the plots were laid out at full size

    def has_colour(rgb, tol=12):
        return bool((np.abs(img - np.array(rgb)).max(axis=2) <= tol).sum() > 50)

    # colours that exist only inside the embedded PNGs: the images were decoded and painted
    assert has_colour((253, 231, 37))  # viridis maximum: the heatmap's best cell
    assert has_colour((214, 39, 40))  # tab:red: best-so-far line / best trial
    assert has_colour((233, 239, 246))  # the tables' header background (inline CSS applied)


def test_report_pngs_differ_when_data_differ(written):
    a = sample_report()
    a.trials = ()  # only the matrices: quick
    a.dev_matrix = [
        type(r)(r.tag_family, r.trained_on, r.hpo_alg, {k: 1 - v for k, v in r.scores.items()})
        for r in a.dev_matrix
    ]
    pa = {p.name: p.png for p in make_plots(a)}
    assert list(pa) == ["matrix_dev", "matrix_test"]
    assert pa["matrix_dev"] != written.images["matrix_dev"].read_bytes()
    assert pa["matrix_test"] == written.images["matrix_test"].read_bytes()
    ia = np.asarray(Image.open(io.BytesIO(pa["matrix_dev"])).convert("RGB"))
    ib = np.asarray(Image.open(written.images["matrix_dev"]).convert("RGB"))
    assert ia.shape == ib.shape and (ia != ib).any(axis=2).mean() > 0.01


def test_plots_are_deterministic(written):
    assert [p.png for p in make_plots(sample_report())] == [written.images[n].read_bytes() for n in PLOTS]


def test_write_report_creates_the_directory(tmp_path):
    paths = write_report(Report(title="t", description="only text"), tmp_path / "a" / "b")
    assert paths.markdown.read_text() == "# t\n\nonly text\n"
    assert Path(paths.html).exists() and paths.images == {}
