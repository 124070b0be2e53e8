"""The model card from a real run directory: sections, numbers that match the run dir, YAML front
matter, comparisons with p-values, the short MLflow description within 5000 characters."""

from __future__ import annotations

import json
import re
import statistics

import pytest
from test_registry_rundirs import build_run, shared_base

from kftune.evaluate.stats import POLICY, format_p
from kftune.registry.decision import decide
from kftune.registry.modelcard import DESCRIPTION_LIMIT, card_description, model_card, parse_front_matter
from kftune.registry.rundir import compare_scores, load_run_dir

SECTIONS = [
    "# ner-card",
    "## Model details",
    "## Training procedure",
    "### Hyperparameter search",
    "### Best hyperparameters",
    "### Retraining",
    "## Evaluation",
    "### Results by seed",
    "### Evaluation matrix",
    "### Comparison with other models",
    "### Statistical policy",
    "## Limitations",
    "## How to use",
    "## Provenance",
]


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory, kftune_home):
    return build_run(shared_base(tmp_path_factory))


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory, kftune_home):
    """Seed 002's task: text classification, two seeds, no search and no kftune evaluate."""
    return build_run(shared_base(tmp_path_factory), task="seqcls", seeds=(4, 5), tune=False, evaluate=False)


def _squeeze(text: str) -> str:
    return re.sub(r" +", " ", text)


def _metrics(run, seed):
    return json.loads((run / "retrain" / f"seed-{seed}" / "metrics.json").read_text())


def _champion_card(ner_run):
    rd = load_run_dir(ner_run)
    seed = rd.select_seed().seed
    champion = {s: v - 0.01 for s, v in rd.seed_scores().items()}  # paired, slightly worse champion
    decision = decide(rd.seed_scores(), champion, metric=rd.compare_metric, champion_version="4")
    baseline = compare_scores(
        rd.seed_scores(), {7: 0.2, 8: 0.25, 9: 0.22}, metric="test_f1", against="baseline tfidf"
    )
    comps = [compare_scores(rd.seed_scores(), champion, metric="test_f1", against="champion v4"), baseline]
    card = model_card(rd, name="ner-card", published_seed=seed, decision=decision, comparisons=comps,
                      version="5", run_id="abc123")  # fmt: skip
    return rd, seed, decision, comps, card


def test_card_sections_and_front_matter(ner_run):
    rd, seed, decision, _, card = _champion_card(ner_run)
    assert re.findall(r"^#{1,3} .*$", card, flags=re.M) == SECTIONS
    fm = parse_front_matter(card)
    assert fm["library_name"] == "transformers" and fm["pipeline_tag"] == "token-classification"
    assert fm["datasets"] == ["demo:ner"] and fm["base_model"] == "tiny"
    assert {"kftune", "ner", "tag-family-original", "trained-on-cased"} <= set(fm["tags"])
    (index,) = fm["model-index"]
    assert index["name"] == "ner-card"
    first = index["results"][0]
    assert first["task"]["type"] == "token-classification" and first["dataset"]["split"] == "test"
    test = _metrics(ner_run, seed)["test"]
    by_name = {m["name"]: m["value"] for m in first["metrics"]}
    assert by_name[f"test F1 (published seed {seed})"] == round(test["test_f1"], 6)
    assert by_name[f"test recall (published seed {seed})"] == round(test["test_recall"], 6)
    values = [_metrics(ner_run, s)["test"]["test_f1"] for s in (1, 2, 3)]
    assert by_name["test F1 (mean of 3 seeds)"] == round(statistics.mean(values), 6)
    ev = json.loads((ner_run / "eval" / f"seed-{seed}.json").read_text())
    per_variant = {r["dataset"]["config"]: r["metrics"][0]["value"] for r in index["results"][1:]}
    assert per_variant == {v: round(x["f1"], 6) for v, x in ev["test"].items()}
    k = fm["kftune"]
    assert (k["version"], k["alias"], k["published_seed"], k["seeds"]) == (
        "5",
        decision.alias,
        seed,
        [1, 2, 3],
    )
    assert k["mean"] == round(statistics.mean(values), 6) and k["std"] == round(statistics.stdev(values), 6)


def test_card_numbers_match_the_run_dir(ner_run):
    rd, seed, _, _, card = _champion_card(ner_run)
    m = {s: _metrics(ner_run, s) for s in (1, 2, 3)}
    # per-seed rows: dev F1 of the best epoch, test F1/precision/recall of that model
    for s in (1, 2, 3):
        label = f"**{s} (published)**" if s == seed else str(s)
        row = next(line for line in card.splitlines() if line.startswith(f"| {label} "))
        cells = [c.strip() for c in row.strip("|").split("|")]
        expected = [m[s]["best"]["metrics"]["eval_f1"], m[s]["test"]["test_f1"],
                    m[s]["test"]["test_precision"], m[s]["test"]["test_recall"]]  # fmt: skip
        assert cells[1:] == [f"{x:.4f}" for x in expected]
    test_f1 = [m[s]["test"]["test_f1"] for s in (1, 2, 3)]
    mean_std = f"{statistics.mean(test_f1):.4f} ± {statistics.stdev(test_f1):.4f}"
    assert f"**test F1: {mean_std}** over 3 seeds" in card
    # the matrix: the published seed's row and the mean over seeds, 5 decimals, from eval/seed-S.json
    ev = {s: json.loads((ner_run / "eval" / f"seed-{s}.json").read_text()) for s in (1, 2, 3)}
    pub = next(line for line in card.splitlines() if f"seed {seed} (published)" in line and "cased" in line)
    assert f"| {ev[seed]['dev']['cased']['f1']:.5f} | {ev[seed]['dev']['uncased']['f1']:.5f} |" in pub
    mean_rows = [line for line in card.splitlines() if re.search(r"\| mean of 3 seeds +\|", line)]
    assert len(mean_rows) == 2  # dev and test
    mean_test_uncased = statistics.mean(ev[s]["test"]["uncased"]["f1"] for s in (1, 2, 3))
    assert f"{mean_test_uncased:.5f}" in mean_rows[1]
    # the search: algorithm, objective, trial count, search space from tune/experiment.yaml, best values
    trials = json.loads((ner_run / "tune" / "trials.json").read_text())
    assert "- algorithm: `asha`" in card and "- objective: maximize `eval_f1`" in card
    assert f"- {len(trials)} trials (" in card and "early stopped" in card
    assert "| learning_rate | double | 3e-5 ... 3e-3 | logUniform |" in _squeeze(card)
    best = {
        p["name"]: p["value"]
        for p in json.loads((ner_run / "tune" / "best.json").read_text())["parameterAssignments"]
    }
    assert f"| learning_rate | {float(best['learning_rate']):.6e} |" in _squeeze(card)
    assert str(ner_run.resolve()) in card


def test_card_comparisons_policy_and_limitations(ner_run):
    rd, _, decision, comps, card = _champion_card(ner_run)
    assert "| test_f1 | champion v4 | 3 |" in _squeeze(card)  # paired by seed: n = 3 pairs
    assert "| test_f1 | baseline tfidf | 3/3 |" in _squeeze(card)  # other seeds: unpaired
    for c in comps:
        assert f"- vs {c.against} (test F1): {c.comparison.summary()}" in card
        if c.comparison.p_value is not None:
            assert format_p(c.comparison.p_value) in card
    assert "p vs baseline tfidf" in card  # the p-value row of the seeds table
    assert POLICY in card
    assert f"Decision: **{decision.alias}** - {decision.reason}." in card
    limits = card.split("## Limitations")[1].split("## How to use")[0]
    assert "chosen on the development set" in limits and "compare models on test scores" in limits
    assert "Casing: trained on `cased` text" in limits and "best of 3 seeds" in limits
    assert "demo corpus" in limits
    assert 'mlflow.transformers.load_model("models:/ner-card@' in card


def test_description_is_short_and_always_fits(ner_run):
    rd, seed, decision, comps, _ = _champion_card(ner_run)
    short = card_description(rd, name="ner-card", published_seed=seed, decision=decision, comparisons=comps,
                             run_id="abc123")  # fmt: skip
    assert len(short) <= DESCRIPTION_LIMIT
    mean = statistics.mean(rd.seed_scores().values())
    assert f"{mean:.4f} ± " in short and "vs champion v4" in short and "vs baseline tfidf" in short
    assert short.endswith("Full model card: artifact `README.md` of MLflow run `abc123`.")
    many = comps * 200  # far too many comparisons: clipped, the pointer to the full card kept
    long = card_description(
        rd, name="ner-card", published_seed=seed, decision=decision, comparisons=many, run_id="r"
    )
    assert len(long) <= DESCRIPTION_LIMIT and long.endswith(
        "Full model card: artifact `README.md` of MLflow run `r`."
    )


def test_first_version_card_and_a_classification_card(ner_run, cls_run):
    rd = load_run_dir(ner_run)
    d = decide(rd.seed_scores(), None, metric=rd.compare_metric)
    card = model_card(rd, name="ner-card", published_seed=rd.select_seed().seed, decision=d)
    assert "No other model was compared" in card and "is the `champion`: no champion yet." in card

    cls = load_run_dir(cls_run)
    assert cls.objective == "macro_f1" and cls.compare_metric == "test_macro_f1"
    seed = cls.select_seed().seed
    m = _metrics(cls_run, seed)
    assert seed == max((4, 5), key=lambda s: (_metrics(cls_run, s)["best"]["metrics"]["eval_macro_f1"], -s))
    card = model_card(
        cls,
        name="textcls",
        published_seed=seed,
        decision=decide(cls.seed_scores(), None, metric=cls.compare_metric),
    )
    fm = parse_front_matter(card)
    assert fm["pipeline_tag"] == "text-classification" and fm["metrics"] == ["accuracy", "macro_f1"]
    assert "| seed | dev macro-F1 | test macro-F1 | test accuracy |" in _squeeze(card)
    assert f"{m['test']['test_accuracy']:.4f}" in card
    assert "### Hyperparameter search" in card and "no tune/ in the run directory" in card
    # no kftune evaluate: the matrix holds the trainer's own variant only
    assert "| Original | cased | seed " in _squeeze(card) and "### Best hyperparameters" not in card
