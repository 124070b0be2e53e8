"""best/ reloaded in a fresh process predicts exactly what the trainer measured (seed 002's
re-initialised heads must be impossible), through plain from_pretrained and `kftune evaluate`."""

import json
import subprocess
import sys

import pytest

from kftune.errors import UserError

RELOAD = r"""
import json, sys, torch
from transformers import AutoModelForTokenClassification, AutoTokenizer
from kftune.data import load_corpus
from kftune.evaluate.metrics import ner_metrics
from kftune.train.predict import predict_ner_tags
torch.set_num_threads(1)
best = sys.argv[1]
model, info = AutoModelForTokenClassification.from_pretrained(best, output_loading_info=True)
tok = AutoTokenizer.from_pretrained(best)
dev = load_corpus("demo:ner", "ner").splits["dev"][:80]
tags = predict_ner_tags(model.eval(), tok, dev, max_length=model.config.kftune["max_length"])
with torch.no_grad():
    logits = model(**tok(["Bill Gates visited Berlin ."], return_tensors="pt")).logits
print(json.dumps({"missing": sorted(info["missing_keys"]), "tags": tags, "f1": ner_metrics([e.tags for e in dev], tags)["f1"],
                  "logits": logits.flatten().tolist()}))
"""


def _reload(best) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", RELOAD, str(best)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_fresh_processes_reload_best_identically(cli_run):
    out, _ = cli_run
    metrics = json.loads((out / "metrics.json").read_text())
    first, second = _reload(out / "best"), _reload(out / "best")
    assert first["missing"] == [], "a weight of best/ would be initialised at random on reload"
    assert first == second
    assert first["f1"] == pytest.approx(metrics["best"]["metrics"]["eval_f1"], abs=1e-12)
    assert any(t != "O" for sent in first["tags"] for t in sent), (
        "the model must predict entities for this to mean much"
    )


def test_kftune_evaluate_reproduces_the_trainer_metrics(cli_run, h, tmp_path):
    out, _ = cli_run
    metrics = json.loads((out / "metrics.json").read_text())
    runs = []
    for name in ("a", "b"):
        target = tmp_path / f"{name}.json"
        proc = h.cli("evaluate", "--model", str(out), "--data", "demo:ner", "--variants", "cased",
                     "--max-samples", "80", "--out", str(target))  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "cased" in proc.stdout and "dev" in proc.stdout
        runs.append(json.loads(target.read_text()))
    assert runs[0] == runs[1]
    dev, test = runs[0]["dev"]["cased"], runs[0]["test"]["cased"]
    best = metrics["best"]["metrics"]
    for key in ("f1", "precision", "recall", "accuracy"):
        assert dev[key] == pytest.approx(best[f"eval_{key}"], abs=1e-12)
        assert test[key] == pytest.approx(metrics["test"][f"test_{key}"], abs=1e-12)
    assert dev["loss"] == pytest.approx(best["eval_loss"], rel=1e-5)


def test_evaluate_matrix_covers_seven_variants(cli_run, tmp_path):
    from kftune.data import VARIANTS, load_corpus
    from kftune.evaluate.crossvariant import evaluate_variants
    from kftune.train.modelio import load_trained

    out, _ = cli_run
    model, tok, meta = load_trained(out, "ner")
    assert meta["task"] == "ner" and meta["max_length"] == 48
    corpus = load_corpus("demo:ner", "ner")
    res = evaluate_variants(model, tok, "ner", corpus, variants=VARIANTS, max_samples=40, max_length=48)
    assert list(res) == ["dev", "test"] and list(res["dev"]) == list(VARIANTS)
    assert res["dev"]["uncased-cased-both"]["n"] == 80 and res["dev"]["cased"]["n"] == 40
    assert set(res["test"]["ne-lower"]) >= {"f1", "precision", "recall", "accuracy", "loss"}


def test_a_base_model_is_refused_for_evaluation(tiny):
    from kftune.train.modelio import load_trained

    with pytest.raises(UserError, match="initialised at random"):
        load_trained(tiny, "ner")
