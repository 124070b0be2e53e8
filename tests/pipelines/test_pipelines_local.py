"""Every pipeline end to end with kfp.local (``kftune pipeline run NAME --local``), small settings,
plus the fault: a search whose trials all fail ends the pipeline with the experiment's reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kftune.cli import main as kftune_main

pytestmark = pytest.mark.e2e

SMALL: list[str] = []  # filled by the fixture: --set-arg --config=<small.json>


@pytest.fixture(autouse=True)
def _home(kftune_home, monkeypatch, tmp_path_factory):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("KFTUNE_TRACKING", "off")
    # trainer options the Katib validator does not know go through --config
    config = tmp_path_factory.getbasetemp() / "small-train.json"
    config.write_text(json.dumps({"max_train_samples": 300, "max_eval_samples": 150}))
    SMALL[:] = ["--set-arg", f"--config={config}"]
    return kftune_home


def run(name: str, out: Path, capsys, *params: str) -> tuple[int, str, str]:
    argv = ["pipeline", "run", name, "--local", "--out", str(out)]
    for p in params:
        argv += ["--param", p]
    code = kftune_main(argv)
    o, e = capsys.readouterr()
    return code, o, e


def overrides(*extra: str) -> str:
    """A ``tune_overrides=[...]`` parameter (JSON, since flags contain commas and '=')."""
    from kftune.pipelines_cli import LOCAL_SETTINGS

    return "tune_overrides=" + json.dumps(LOCAL_SETTINGS["ner-hpo"]["tune_overrides"] + list(extra))


def test_a_tune_step_whose_experiment_failed_fails_the_pipeline_with_its_reason(tmp_path, capsys):
    code, out, err = run(
        "ner-hpo", tmp_path, capsys,
        "max_trial_count=2", "parallel_trial_count=2", "max_failed_trial_count=1",
        overrides(*SMALL, "--set-env", "KFTUNE_TEST_NAN_AT_STEP=1"),
    )  # fmt: skip
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("kftune pipeline: error: pipeline ner-hpo failed at step tune: ")
    assert "Failed (ExperimentMaxFailedTrialsReached)" in last or "Failed (" in last, last
    info = json.loads((tmp_path / "ner-hpo" / "run.json").read_text())
    assert info["status"] == "failed" and info["failed_step"] == "tune"
    assert not (tmp_path / "ner-hpo" / "retrain").exists()  # nothing ran after the failed search


def test_ner_hpo_local_end_to_end(tmp_path, capsys):
    code, out, err = run(
        "ner-hpo", tmp_path, capsys,
        "max_trial_count=2", "num_seeds=2", "eval_max_samples=100", overrides(*SMALL),
    )  # fmt: skip
    assert code == 0, err[-3000:]
    rd = tmp_path / "ner-hpo"
    info = json.loads((rd / "run.json").read_text())
    assert info["status"] == "succeeded" and info["pipeline"] == "ner-hpo"
    assert (
        info["tag_family"] == "original"
        and info["train_variant"] == "uncased"
        and info["hpo_algorithm"] == "asha"
    )
    trials = json.loads((rd / "tune" / "trials.json").read_text())
    assert len(trials) == 2 and all(t["status"] == "Succeeded" and t["curve"] for t in trials)
    best = json.loads((rd / "tune" / "best.json").read_text())
    assert best["bestTrialName"] in {t["name"] for t in trials}
    assert best["objective"] == {"type": "maximize", "metric": "eval_f1"}
    for seed in (1, 2):
        metrics = json.loads((rd / "retrain" / f"seed-{seed}" / "metrics.json").read_text())
        assert metrics["status"] == "completed" and (rd / "retrain" / f"seed-{seed}" / "best").is_dir()
        ev = json.loads((rd / "eval" / f"seed-{seed}.json").read_text())
        assert set(ev) == {"dev", "test"} and len(ev["test"]) == 7
    comparison = json.loads((rd / "comparison.json").read_text())
    assert comparison["comparisons"][0]["against"] == "baseline token-lr"
    report = (rd / "report" / "report.md").read_text()
    assert "Evaluation matrix" in report and "Runs by seed" in report
    assert f"report: {rd / 'report' / 'report.html'}" in out
    # the report step's artifacts (what the KFP UI shows) hold the same report
    html_artifacts = list((tmp_path / ".kfp" / "ner-hpo").rglob("write-report/html"))
    assert html_artifacts and html_artifacts[0].read_text().startswith("<!DOCTYPE html>")


def test_ner_matrix_local_fills_the_seed_000_tables(tmp_path, capsys):
    code, out, err = run(
        "ner-matrix", tmp_path, capsys,
        "tag_families=original,simple", "train_variants=uncased", "max_trial_count=1",
        "max_failed_trial_count=1", "num_seeds=1", "eval_max_samples=60", "baselines=[]",
    )  # fmt: skip
    assert code == 0, err[-3000:]
    rd = tmp_path / "ner-matrix"
    assert not (rd / "run.json").exists()  # a directory of run directories (docs/contracts.md)
    assert json.loads((rd / "matrix.json").read_text())["status"] == "succeeded"
    for cfg in ("original-uncased", "simple-uncased"):
        info = json.loads((rd / cfg / "run.json").read_text())
        assert info["status"] == "succeeded" and info["tag_family"] == cfg.split("-")[0]
    assert (rd / "original-uncased" / "eval" / "seed-1.json").is_file()
    assert (rd / "simple-uncased" / "eval" / "seed-1.json").is_file()
    report = (rd / "report" / "report.md").read_text()
    for heading in ("### Development", "### Test", "## Successful hyperparameters"):
        assert heading in report
    rows = [line for line in report.splitlines() if line.startswith(("| Original", "| Simple"))]
    assert len(rows) == 6  # 2 configurations x (dev, test, hyperparameters)
    for row in rows[:4]:  # dev and test rows: a score for each of the seven variants
        cells = [c.strip() for c in row.strip().strip("|").split("|")][3:]
        assert len(cells) == 7 and "-" not in cells, row


def test_textcls_local_compares_with_a_baseline_and_another_model(tmp_path, capsys):
    code, out, err = run(
        "textcls", tmp_path, capsys,
        "max_trial_count=2", "num_seeds=2", "other_models=tiny",
        "tune_overrides=" + json.dumps(["--param", "num_epochs=1:1", "--set-env", "KFTUNE_TRACKING=off",
                                        "--set-arg", "--max-length=64", *SMALL, "--threads-per-trial", "1"]),
    )  # fmt: skip
    assert code == 0, err[-3000:]
    rd = tmp_path / "textcls"
    comparison = json.loads((rd / "comparison.json").read_text())
    assert comparison["metric"] == "test_macro_f1"
    assert {c["against"] for c in comparison["comparisons"]} == {"baseline tfidf-lr", "model tiny"}
    assert (rd / "others" / "tiny" / "seed-2" / "metrics.json").is_file()
    report = (rd / "report" / "report.md").read_text()
    assert "mean ± std" in report and "baseline tfidf-lr" in report


def test_mlm_local_pretrains_then_fine_tunes_it_and_the_original_on_two_tasks(tmp_path, capsys):
    tasks = [
        {"name": "textcls", "task": "seqcls", "data": "demo:textcls"},
        {"name": "ner", "task": "ner", "data": "demo:ner", "runs": 1, "args": ["--num-epochs", "2"]},
    ]
    code, out, err = run("mlm", tmp_path, capsys, "num_finetunes=2", "finetune_tasks=" + json.dumps(tasks),
                         "average_excluding=ner")  # fmt: skip
    assert code == 0, err[-3000:]
    rd = tmp_path / "mlm"
    assert json.loads((rd / "tune" / "best.json").read_text())["objective"]["metric"] == "eval_perplexity"
    pretrained = rd / "retrain" / "seed-42"
    assert (pretrained / "best" / "config.json").is_file()
    plan = json.loads((rd / "finetune" / "plan.json").read_text())
    assert [t["name"] for t in plan["tasks"]] == ["textcls", "ner"] and plan["compare_original"] is True
    for root in (rd, rd / "original"):
        for seed in (1, 2):
            assert json.loads((root / "finetune" / "textcls" / f"seed-{seed}" / "metrics.json").read_text())[
                "status"] == "completed"  # fmt: skip
        ner = json.loads((root / "finetune" / "ner" / "seed-1" / "metrics.json").read_text())
        assert (
            ner["status"] == "completed" and ner["args"]["num_epochs"] == 2 and ner["args"]["task"] == "ner"
        )
        assert not (root / "finetune" / "ner" / "seed-2").exists()
    # the original row fine-tunes the model the search started from, the other the pretrained one
    original_args = json.loads(
        (rd / "original" / "finetune" / "textcls" / "seed-1" / "metrics.json").read_text()
    )
    assert original_args["args"]["model"] == "tiny"
    tuned_args = json.loads((rd / "finetune" / "textcls" / "seed-1" / "metrics.json").read_text())
    assert tuned_args["args"]["model"] == str(pretrained / "best")
    # perplexity: the pretrained model measured as in training (same examples and masks); the
    # random-init demo model has no masked-LM head, so its perplexity is not made up
    measured = json.loads((rd / "perplexity.json").read_text())["models"]
    trained = json.loads((pretrained / "metrics.json").read_text())
    assert measured["pretrained"]["dev"]["perplexity"] == pytest.approx(
        trained["best"]["metrics"]["eval_perplexity"], rel=1e-3)  # fmt: skip
    assert "no trained masked-LM head" in measured["original"]["unavailable"]
    report = (rd / "report" / "report.md").read_text()
    assert "Fine-tuning results (mean and max over runs)" in report
    assert "tiny + continued pretraining" in report and "tiny original" in report
    assert "macro-F1/Accuracy" in report and "Average w/o ner" in report and "dev perplexity" in report
    assert "has no trained masked-LM head" in report


def test_mlm_bad_finetune_tasks_fail_before_anything_runs(tmp_path, capsys):
    bad = [{"name": "textcls", "task": "seqcls", "data": "demo:textcls"}, {"name": "textcls", "task": "ner",
                                                                          "data": "demo:ner"}]  # fmt: skip
    code, out, err = run("mlm", tmp_path, capsys, "finetune_tasks=" + json.dumps(bad))
    assert code == 2
    assert "finetune_tasks[1].name: 'textcls' is already the name of finetune_tasks[0]" in err
    assert not (tmp_path / "mlm").exists()
