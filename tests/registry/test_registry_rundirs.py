"""Real run directories for the registry, model-card and report tests, and tests of reading them.

``build_run`` runs the real ``kftune train`` (tiny model, 240 sentences, 2 epochs, tracking off)
for each seed and the real ``kftune evaluate`` (seven casing variants of dev and test) for each
model, then adds run.json and a synthetic ``tune/`` (an ASHA-like search with rung labels and
curves). Built once per session under pytest's base temp dir (a ``.complete`` marker), so the
registry tests and the report tests (``tests/report/test_report_cli.py`` imports this file) share
the trained models. Nothing here is mocked: only ``tune/`` is synthetic, because a search is not
what these tests are about.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
from pathlib import Path

import pytest

DATA = {"ner": "demo:ner", "seqcls": "demo:textcls"}
TRAIN = [
    "--model", "tiny", "--learning-rate", "2e-3",
    "--max-train-samples", "240", "--max-eval-samples", "80", "--max-length", "48",
    "--per-device-train-batch-size", "8", "--tracking", "off", "--num-threads", "1", "--num-epochs", "2",
]  # fmt: skip
PARAMS = (
    "learning_rate",
    "weight_decay",
    "warmup_ratio",
    "attention_dropout",
    "hidden_dropout",
    "batch_size",
)


def kftune_in_process(*argv: str) -> str:
    """``kftune ARGV`` in this process (torch is imported once per session); returns its stdout."""
    from kftune.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    assert code == 0, f"kftune {' '.join(argv)} exited {code}\n{out.getvalue()[-2000:]}"
    return out.getvalue()


def synthetic_trials(n_configs: int = 9, *, only_batch_size: bool = False) -> list[dict]:
    """An ASHA-like search: rung-0 trials of 1 epoch, the best third promoted to 2 then 4 epochs,
    each promotion resuming its parent (curve continues, label kftune.io/parent-trial)."""
    trials = []
    rung0 = []
    for i in range(n_configs):
        if only_batch_size:
            a = {"batch_size": str([16, 32, 64, 128][i % 4])}
            score = 0.80 - 0.01 * abs(i % 4 - 1)
        else:
            lr = 10 ** (-4.5 + 1.5 * i / max(1, n_configs - 1))
            a = {
                "learning_rate": f"{lr:.6g}",
                "weight_decay": f"{0.02 * (i % 5):.3f}",
                "warmup_ratio": f"{0.01 * (i % 7):.3f}",
                "attention_dropout": f"{0.05 * (i % 3):.3f}",
                "hidden_dropout": f"{0.04 * (i % 4):.3f}",
                "batch_size": str([8, 16, 32][i % 3]),
            }
            score = 0.75 - 0.3 * (math.log10(lr) + 3.2) ** 2
        curve = [[1, round(score - 0.1, 6)]]
        t = {
            "name": f"asha-{i:03d}",
            "status": "Succeeded" if only_batch_size else "EarlyStopped",
            "assignments": {**a, "num_epochs": "1"},
            "labels": {"kftune.io/rung": "0", "kftune.io/parent-trial": "", "kftune.io/config": f"c{i}"},
            "metrics": {"eval_f1": curve[-1][1], "eval_loss": round(1 - curve[-1][1], 6)},
            "curve": curve,
            "epochs": 1,
        }
        if only_batch_size:
            t["metrics"]["test_f1"] = round(score - 0.012, 6)
        trials.append(t)
        rung0.append((score, t))
    if only_batch_size:
        return trials
    promoted = sorted(rung0, key=lambda x: -x[0])[: max(1, n_configs // 3)]
    for rung, epochs in ((1, 2), (2, 4)):
        nxt = []
        for score, parent in promoted:
            curve = [*parent["curve"]] + [
                [e, round(score - 0.1 / e, 6)] for e in range(parent["epochs"] + 1, epochs + 1)
            ]
            t = {
                "name": f"{parent['name'].split('-r')[0]}-r{rung}",
                "status": "Succeeded" if rung == 2 else "EarlyStopped",
                "assignments": {**parent["assignments"], "num_epochs": str(epochs)},
                "labels": {"kftune.io/rung": str(rung), "kftune.io/parent-trial": parent["name"],
                           "kftune.io/config": parent["labels"]["kftune.io/config"]},
                "metrics": {"eval_f1": curve[-1][1], "eval_loss": round(1 - curve[-1][1], 6)},
                "curve": curve,
                "epochs": epochs,
            }  # fmt: skip
            trials.append(t)
            nxt.append((score, t))
        promoted = nxt[: max(1, len(nxt) // 3)]
    return trials


def best_json(trials: list[dict], metric: str = "eval_f1") -> dict:
    best = max(trials, key=lambda t: t["metrics"].get(metric, -1))
    return {
        "bestTrialName": best["name"],
        "parameterAssignments": [{"name": k, "value": v} for k, v in best["assignments"].items()],
        "observation": {"metrics": [{"name": metric, "latest": str(best["metrics"][metric]),
                                     "max": str(best["metrics"][metric]), "min": str(best["metrics"][metric])}]},
        "objective": {"type": "maximize", "metric": metric},
    }  # fmt: skip


EXPERIMENT_YAML = """\
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata: {name: ner-asha}
spec:
  objective: {type: maximize, objectiveMetricName: eval_f1}
  algorithm: {algorithmName: asha}
  parameters:
    - {name: learning_rate, parameterType: double, feasibleSpace: {min: "3e-5", max: "3e-3", distribution: logUniform}}
    - {name: weight_decay, parameterType: double, feasibleSpace: {min: "0.0", max: "0.1"}}
    - {name: batch_size, parameterType: discrete, feasibleSpace: {list: ["8", "16", "32"]}}
"""


def build_run(
    base: Path,
    *,
    task: str = "ner",
    seeds: tuple[int, ...] = (1, 2, 3),
    train_variant: str = "cased",
    tune: bool = True,
    evaluate: bool = True,
    name: str | None = None,
) -> Path:
    """A run directory of real trained models; cached under ``base`` (see the module docstring)."""
    run = base / (name or (f"ner-original-{train_variant}" if task == "ner" else f"{task}-{train_variant}"))
    if (run / ".complete").exists():
        return run
    if run.exists():
        shutil.rmtree(run)
    for seed in seeds:
        out = run / "retrain" / f"seed-{seed}"
        kftune_in_process(
            "train",
            "--task",
            task,
            "--data",
            DATA[task],
            *TRAIN,
            "--seed",
            str(seed),
            "--train-variant",
            train_variant,
            "--output-dir",
            str(out),
        )
        if evaluate:
            (run / "eval").mkdir(parents=True, exist_ok=True)
            kftune_in_process("evaluate", "--model", str(out), "--data", DATA[task], "--max-samples", "80",
                              "--device", "cpu", "--out", str(run / "eval" / f"seed-{seed}.json"))  # fmt: skip
    info = {
        "pipeline": "ner-hpo" if task == "ner" else "textcls", "tag_family": "original",
        "train_variant": train_variant, "task": task, "model": "tiny", "data": DATA[task], "hpo_algorithm": "asha" if tune else None, "git_sha": "0" * 40,
        "started": "2026-01-01T00:00:00Z", "finished": "2026-01-01T00:05:00Z", "status": "Succeeded",
    }  # fmt: skip
    (run / "run.json").write_text(json.dumps(info, indent=1))
    if tune:
        (run / "tune").mkdir()
        trials = synthetic_trials()
        (run / "tune" / "trials.json").write_text(json.dumps(trials, indent=1))
        (run / "tune" / "best.json").write_text(json.dumps(best_json(trials), indent=1))
        (run / "tune" / "experiment.yaml").write_text(EXPERIMENT_YAML)
    (run / ".complete").write_text("")
    return run


def shared_base(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp() / "kftune-rundirs"
    base.mkdir(exist_ok=True)
    return base


def copy_run(src: Path, dst: Path, *, test_shift: dict[int, float] | None = None) -> Path:
    """A copy of a run dir (models hard-linked) whose metrics.json test scores are shifted per seed:
    a model with scores the test decides, for the champion-rule tests."""
    shutil.copytree(
        src, dst, copy_function=os.link, ignore=shutil.ignore_patterns(".complete", "registry.json", "report")
    )
    for seed, delta in (test_shift or {}).items():
        path = dst / "retrain" / f"seed-{seed}" / "metrics.json"
        data = json.loads(path.read_text())
        data["test"] = {k: v + delta if k != "test_loss" else v for k, v in data["test"].items()}
        path.unlink()  # a hard link: do not write through to the original
        path.write_text(json.dumps(data, indent=1))
    return dst


def tree_state(path: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file under ``path``: to show nothing changed."""
    return {
        str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


# ----------------------------------------------------------------------------------------------
# Tests of reading run directories


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory, kftune_home) -> Path:
    return build_run(shared_base(tmp_path_factory))


def test_load_run_dir_reads_seeds_scores_and_matrix(ner_run):
    from kftune.registry.rundir import load_run_dir

    rd = load_run_dir(ner_run)
    assert [r.seed for r in rd.completed] == [1, 2, 3]
    assert (rd.task, rd.tag_family, rd.train_variant, rd.hpo_algorithm) == (
        "ner",
        "original",
        "cased",
        "asha",
    )
    assert rd.objective == "f1" and rd.compare_metric == "test_f1"
    for r in rd.completed:
        m = json.loads((ner_run / "retrain" / f"seed-{r.seed}" / "metrics.json").read_text())
        assert rd.seed_scores()[r.seed] == m["test"]["test_f1"]
        assert r.scores()["dev_f1"] == m["best"]["metrics"]["eval_f1"]
        ev = json.loads((ner_run / "eval" / f"seed-{r.seed}.json").read_text())
        # kftune evaluate on the training variant reproduces the trainer's own dev/test numbers
        assert ev["dev"]["cased"]["f1"] == pytest.approx(m["best"]["metrics"]["eval_f1"], abs=1e-12)
        assert ev["test"]["cased"]["f1"] == pytest.approx(m["test"]["test_f1"], abs=1e-12)
    dev = {r.seed: r.scores()["dev_f1"] for r in rd.completed}
    assert rd.select_seed().seed == max(dev, key=lambda s: (dev[s], -s))
    mean = rd.matrix("test")
    assert len(mean) == 7
    for variant, value in mean.items():
        per_seed = [
            json.loads((ner_run / "eval" / f"seed-{s}.json").read_text())["test"][variant]["f1"]
            for s in (1, 2, 3)
        ]
        assert value == pytest.approx(sum(per_seed) / 3)
    assert rd.best_hyperparameters()["batch_size"] in ("8", "16", "32")
    assert [p["name"] for p in rd.search_space()] == ["learning_rate", "weight_decay", "batch_size"]
    assert rd.notes == []


def test_missing_pieces_are_notes_not_errors(ner_run, tmp_path):
    from kftune.registry.rundir import load_run_dir

    run = copy_run(ner_run, tmp_path / "partial")
    shutil.rmtree(run / "tune")
    shutil.rmtree(run / "eval")
    (run / "retrain" / "seed-3" / "metrics.json").unlink()
    (run / "comparison.json").write_text("{not json")
    rd = load_run_dir(run)
    assert [r.seed for r in rd.completed] == [1, 2]
    text = " | ".join(rd.notes)
    assert "seed 3 is left out (status missing)" in text
    assert "comparison.json" in text and "no tune/trials.json" in text and "no eval/seed-<S>.json" in text
    # without eval/, the matrix holds the variant the trainer evaluated on, from metrics.json
    assert list(rd.matrix("dev")) == ["cased"]


def test_not_a_run_dir_is_one_clear_error(tmp_path):
    from kftune.errors import UserError
    from kftune.registry.rundir import find_run_dirs, load_run_dir

    (tmp_path / "empty").mkdir()
    for path, words in (
        (tmp_path / "nope", "does not exist"),
        (tmp_path / "empty", "is not a run directory"),
    ):
        with pytest.raises(UserError, match=words) as info:
            load_run_dir(path)
        assert "\n" not in str(info.value) and "docs/contracts.md" in str(info.value)
    parent = tmp_path / "matrix"
    (parent / "a" / "retrain").mkdir(parents=True)
    (parent / "b").mkdir()
    (parent / "b" / "run.json").write_text("{}")
    assert [p.name for p in find_run_dirs(parent)] == ["a", "b"]
    with pytest.raises(UserError, match="directory of run directories"):
        load_run_dir(parent)
    with pytest.raises(UserError, match="no completed retrained model"):
        load_run_dir(parent / "a").select_seed()


def test_a_trial_output_dir_reads_as_a_one_seed_run(ner_run):
    from kftune.registry.rundir import load_run_dir

    rd = load_run_dir(ner_run / "retrain" / "seed-2")
    assert rd.is_trial_dir and [r.seed for r in rd.completed] == [2]
    assert rd.task == "ner" and rd.compare_metric == "test_f1"


def test_compare_scores_pairs_by_seed_and_reads_back(tmp_path):
    from kftune.evaluate.stats import compare
    from kftune.registry.rundir import RunDir, compare_scores, read_comparisons, write_comparisons

    a = {1: 0.80, 2: 0.82, 3: 0.81, 4: 0.83, 5: 0.80}
    b = {1: 0.70, 2: 0.71, 3: 0.73, 4: 0.72, 5: 0.69}
    nc = compare_scores(a, b, metric="test_f1", against="baseline")
    assert nc.comparison.paired and nc.comparison.alternative == "greater"
    assert (
        nc.comparison.p_value
        == compare(list(a.values()), list(b.values()), paired=True, alternative="greater").p_value
    )
    loss = compare_scores({1: 0.3, 2: 0.2}, {7: 0.5, 8: 0.6, 9: 0.4}, metric="test_loss", against="x")
    assert not loss.comparison.paired and loss.comparison.alternative == "less"
    write_comparisons(tmp_path / "comparison.json", [nc, loss])
    rd = RunDir(tmp_path, comparisons_raw=json.loads((tmp_path / "comparison.json").read_text()))
    back = read_comparisons(rd)
    assert [(c.against, c.metric) for c in back] == [("baseline", "test_f1"), ("x", "test_loss")]
    assert back[0].comparison == nc.comparison
