"""mlm's downstream steps without KFP: the ``finetune_tasks`` check (every error names the entry,
the field and the fix), the plan, and the GLUE-style report built from a run directory. Fast: no
training (the whole pipeline runs in test_pipelines_local.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kftune.errors import UserError
from kftune.pipelines_cli import check_values, pipeline_inputs
from kftune.steps.finetune import DEFAULT_METRICS, FinetuneTask, finetune, parse_tasks, plan
from kftune.steps.publish import glue_report
from kftune.steps.rundir import RunDir, write_json

SEQ = {"name": "frenk-hr", "task": "seqcls", "data": "/cache/data/frenk-hr"}
NER = {"name": "conll", "task": "ner", "data": "/cache/data/conll", "runs": 3}


def test_tasks_take_their_defaults_and_keep_their_order():
    tasks = parse_tasks(
        [SEQ, {**NER, "args": ["--num-epochs", 5.0], "metrics": ["f1", "precision"]}], num_runs=10
    )
    assert tasks == [
        FinetuneTask("frenk-hr", "seqcls", "/cache/data/frenk-hr", 10, (), DEFAULT_METRICS["seqcls"]),
        FinetuneTask("conll", "ner", "/cache/data/conll", 3, ("--num-epochs", "5"), ("f1", "precision")),
    ]
    # numbers arrive in a KFP step as floats (protobuf Struct): 3.0 is 3
    assert parse_tasks([{**NER, "runs": 3.0}], num_runs=1)[0].runs == 3


@pytest.mark.parametrize(
    ("tasks", "num_runs", "excluding", "message"),
    [
        ([], 5, [], "finetune_tasks: expected a non-empty list of tasks"),
        ({"name": "x"}, 5, [], "finetune_tasks: expected a non-empty list of tasks"),
        (["frenk-hr"], 5, [], "finetune_tasks[0]: expected an object with name, task and data"),
        ([{**SEQ, "epochs": 3}], 5, [], "finetune_tasks[0]: unknown field(s) epochs; a task has name, task, data"),
        ([{**SEQ, "data": ""}], 5, [], "finetune_tasks[0].data: required, a non-empty string"),
        ([{"task": "ner", "data": "d"}], 5, [], "finetune_tasks[0].name: required"),
        ([{**SEQ, "name": "FRENK hr"}], 5, [], "finetune_tasks[0].name: 'FRENK hr' is also a directory name"),
        ([{**SEQ, "name": "original"}], 5, [], "finetune_tasks[0].name: 'original' is reserved"),
        ([SEQ, {**NER, "name": "frenk-hr"}], 5, [],
         "finetune_tasks[1].name: 'frenk-hr' is already the name of finetune_tasks[0]"),
        ([{**SEQ, "task": "mlm"}], 5, [], "finetune_tasks[0].task: 'mlm' is not a fine-tuning task: choose seqcls or ner (mlm"),
        ([{**SEQ, "task": "qa"}], 5, [], "finetune_tasks[0].task: 'qa' is not a fine-tuning task"),
        ([{**SEQ, "runs": 0}], 5, [], "finetune_tasks[0].runs: expected a positive integer"),
        ([{**SEQ, "runs": 2.5}], 5, [], "finetune_tasks[0].runs: expected a positive integer"),
        ([{**SEQ, "runs": True}], 5, [], "finetune_tasks[0].runs: expected a positive integer"),
        ([SEQ], 0, [], "num_finetunes must be a positive integer"),
        ([{**SEQ, "args": "--num-epochs 3"}], 5, [], "finetune_tasks[0].args: expected a list"),
        ([{**SEQ, "args": ["--model", "x"]}], 5, [], "finetune_tasks[0].args: --model is set by the pipeline"),
        ([{**SEQ, "args": ["--seed=3"]}], 5, [], "finetune_tasks[0].args: --seed is set by the pipeline"),
        ([{**SEQ, "metrics": []}], 5, [], "finetune_tasks[0].metrics: expected a non-empty list"),
        ([{**SEQ, "metrics": ["f1"]}], 5, [], "finetune_tasks[0].metrics: 'f1' not reported for seqcls: choose from macro_f1"),
        ([SEQ], 5, ["wnli"], "average_excluding: 'wnli' is not a task in finetune_tasks; the tasks are frenk-hr"),
        ([SEQ], 5, ["frenk-hr"], "average_excluding: leaves no task in the second average"),
        ([SEQ], 5, "frenk-hr", "average_excluding: expected a list of task names"),
    ],
)  # fmt: skip
def test_every_bad_task_list_is_one_error_naming_the_field(tasks, num_runs, excluding, message):
    with pytest.raises(UserError) as err:
        parse_tasks(tasks, num_runs=num_runs, average_excluding=excluding)
    assert message in str(err.value)


def test_the_pipeline_cli_checks_the_tasks_with_the_pipeline_defaults():
    from kftune.pipelines import load

    inputs = pipeline_inputs(load("mlm"))
    check_values({}, inputs)  # the pipeline's own defaults are valid
    check_values({"finetune_tasks": [SEQ, NER], "average_excluding": ["conll"]}, inputs)
    with pytest.raises(UserError, match=r"finetune_tasks\[0\]\.task"):
        check_values({"finetune_tasks": [{**SEQ, "task": "qa"}]}, inputs)
    with pytest.raises(UserError, match="num_finetunes"):
        check_values({"num_finetunes": 0}, inputs)
    check_values({"num_seeds": 0}, pipeline_inputs(load("ner-hpo")))  # no fine-tuning tasks to check


def test_plan_writes_the_tasks_and_one_flat_item_per_model_task_and_seed(tmp_path):
    items = plan(tmp_path, [SEQ, {**NER, "runs": 1}], num_runs=2, first_seed=7, common_args=["--num-epochs", "3"],
                 average_excluding=["conll"])  # fmt: skip
    assert [(i["column"], i["seed"], i["original"]) for i in items] == [
        ("frenk-hr", 7, False), ("frenk-hr", 8, False), ("conll", 7, False),
        ("frenk-hr", 7, True), ("frenk-hr", 8, True), ("conll", 7, True),
    ]  # fmt: skip
    assert {i["run_dir"] for i in items} == {str(tmp_path)}
    saved = json.loads((tmp_path / "finetune" / "plan.json").read_text())
    assert [t["name"] for t in saved["tasks"]] == ["frenk-hr", "conll"]
    assert saved["common_args"] == ["--num-epochs", "3"] and saved["average_excluding"] == ["conll"]
    assert [
        i["original"] for i in plan(tmp_path, [SEQ], num_runs=1, first_seed=1, compare_original=False)
    ] == [False]


def test_finetune_without_a_plan_or_a_pretrained_model_fails_with_the_reason(tmp_path):
    with pytest.raises(UserError, match="plan.json is missing"):
        finetune(tmp_path, "frenk-hr", 1, base_seed=42)
    plan(tmp_path, [SEQ], num_runs=1, first_seed=1)
    with pytest.raises(UserError, match="task 'conll' is not in"):
        finetune(tmp_path, "conll", 1, base_seed=42)
    with pytest.raises(UserError, match="no pretrained model at .*retrain/seed-42/best"):
        finetune(tmp_path, "frenk-hr", 1, base_seed=42)
    with pytest.raises(UserError, match="no --model in tune/best.json's command nor in run.json"):
        finetune(tmp_path, "frenk-hr", 1, base_seed=42, original=True)


def _fake_finetune(root: Path, task: str, seed: int, test: dict[str, float]) -> None:
    d = root / "finetune" / task / f"seed-{seed}"
    write_json(d / "metrics.json", {"status": "completed", "best": {"metrics": {"eval_" + k: v for k, v in test.items()}},
                                    "test": {"test_" + k: v for k, v in test.items()}})  # fmt: skip


def test_glue_report_has_a_row_per_model_a_column_per_task_and_both_perplexities(tmp_path):
    rd = RunDir.at(tmp_path / "run")
    write_json(rd.run_json, {"pipeline": "mlm", "model": "/cache/models/bert-base-uncased", "data": "wiki"})
    plan(rd.path, [SEQ, {**NER, "runs": 1}], num_runs=2, first_seed=1, average_excluding=["conll"])
    for root, shift in ((rd.path, 0.0), (rd.path / "original", -0.1)):
        _fake_finetune(root, "frenk-hr", 1, {"macro_f1": 0.70 + shift, "accuracy": 0.80 + shift})
        _fake_finetune(root, "frenk-hr", 2, {"macro_f1": 0.74 + shift, "accuracy": 0.82 + shift})
        _fake_finetune(root, "conll", 1, {"f1": 0.90 + shift, "precision": 0.5, "accuracy": 0.99})
    write_json(rd.path / "perplexity.json", {"models": {
        "pretrained": {"model": "x", "dev": {"perplexity": 5.013}, "test": {"perplexity": 5.2}},
        "original": {"model": "bert-base-uncased", "dev": {"perplexity": 8.619}, "test": {"perplexity": 9.0}},
    }})  # fmt: skip
    glue_report(str(rd.path))
    md = (rd.report / "report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| bert-base-uncased")]
    assert len(rows) == 4  # mean and max of each model
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows]
    pre_mean, pre_max, orig_mean, _ = cells
    assert pre_mean[:3] == ["bert-base-uncased + continued pretraining", "mean", "1-2"]
    # Average: mean over tasks of each task's mean metric: ((72+81)/2 + 90)/2; w/o conll: frenk-hr only
    assert pre_mean[3:] == ["83.25", "76.50", "72.00/81.00", "90.00", "5.013", "5.200"]
    assert pre_max[5] == "74.00/82.00"  # the run with the best mean of its metrics
    assert orig_mean[0] == "bert-base-uncased original" and orig_mean[5:] == [
        "62.00/71.00",
        "80.00",
        "8.619",
        "9.000",
    ]
    assert "macro-F1/Accuracy" in md and "| F1 " in md  # the metrics of each task, not token accuracy


def test_glue_report_of_a_run_without_test_splits_a_missing_head_or_a_plan(tmp_path):
    rd = RunDir.at(tmp_path / "run")
    write_json(rd.run_json, {"pipeline": "mlm", "model": "tiny"})
    plan(rd.path, [SEQ], num_runs=1, first_seed=1)
    d = rd.path / "finetune" / "frenk-hr" / "seed-1"
    write_json(
        d / "metrics.json",
        {"status": "completed", "best": {"metrics": {"eval_macro_f1": 0.5, "eval_accuracy": 0.6}}},
    )
    write_json(rd.path / "perplexity.json", {"models": {
        "pretrained": {"model": "x", "dev": {"perplexity": 12.0}},
        "original": {"model": "tiny", "unavailable": "tiny has no trained masked-LM head"},
    }})  # fmt: skip
    glue_report(str(rd.path))
    md = (rd.report / "report.md").read_text()
    assert "dev macro-F1/dev Accuracy" in md and "the column holds dev scores" in md
    assert "tiny original: tiny has no trained masked-LM head" in md
    assert "frenk-hr: no completed" not in md
    orig = next(line for line in md.splitlines() if line.startswith("| tiny original"))
    assert orig.count("| -") >= 3  # no runs, no perplexity: '-', not a made-up number

    # a run directory from before multi-task fine-tuning: no plan, one directory per task
    old = RunDir.at(tmp_path / "old")
    write_json(old.run_json, {"pipeline": "mlm", "model": "tiny"})
    _fake_finetune(old.path, "textcls", 1, {"macro_f1": 0.5, "accuracy": 0.6})
    glue_report(str(old.path))
    md = (old.report / "report.md").read_text()
    assert "tiny + continued pretraining" in md and "tiny original" not in md and "50.00/60.00" in md
