"""seqcls and mlm trials, and the optimizer/schedule/precision options on a tiny budget."""

import pytest

from kftune.data import load_corpus
from kftune.train.metric_lines import METRICS_BY_TASK, parse_line
from kftune.train.modelio import load_trained
from kftune.train.predict import evaluate_examples

COMMON = ["--model", "tiny", "--learning-rate", "2e-3", "--max-length", "48", "--tracking", "off",
          "--num-threads", "1", "--per-device-train-batch-size", "16"]  # fmt: skip


def test_seqcls_trial_and_reload(h, tiny, tmp_path):
    out = tmp_path / "cls"
    argv = ["--task", "seqcls", "--data", "demo:textcls", "--output-dir", str(out), "--num-epochs", "2",
            "--max-train-samples", "400", "--max-eval-samples", "100", *COMMON]  # fmt: skip
    code, lines = h.train(argv)
    assert code == 0
    assert [n for n, _ in parse_line(lines[0])] == ["epoch", *METRICS_BY_TASK["seqcls"]]
    assert lines[-1].startswith("final test_accuracy=")
    m = h.metrics(out)
    assert m["best"]["metric"] == "eval_macro_f1"
    model, tok, meta = load_trained(out)
    assert meta["task"] == "seqcls" and model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    dev = load_corpus("demo:textcls", "seqcls").splits["dev"][:100]
    again = evaluate_examples("seqcls", model, tok, dev, max_length=48)
    assert again["macro_f1"] == pytest.approx(m["best"]["metrics"]["eval_macro_f1"], abs=1e-12)
    assert again["accuracy"] == pytest.approx(m["best"]["metrics"]["eval_accuracy"], abs=1e-12)


def test_mlm_trial_has_a_deterministic_eval_loss(h, tiny, tmp_path):
    out = tmp_path / "mlm"
    argv = ["--task", "mlm", "--data", "demo:mlm", "--output-dir", str(out), "--num-epochs", "1",
            "--max-train-samples", "300", "--max-eval-samples", "100", *COMMON]  # fmt: skip
    code, lines = h.train(argv)
    assert code == 0 and len(lines) == 1  # demo:mlm has no test split: no final line
    assert [n for n, _ in parse_line(lines[0])] == ["epoch", "eval_loss", "eval_perplexity"]
    m = h.metrics(out)
    assert m["best"]["metric"] == "eval_loss"
    model, tok, _ = load_trained(out)
    dev = load_corpus("demo:mlm", "mlm").splits["dev"][:100]
    first = evaluate_examples("mlm", model, tok, dev, max_length=48)
    second = evaluate_examples("mlm", model, tok, dev, max_length=48)
    assert first == second
    assert first["loss"] == pytest.approx(m["best"]["metrics"]["eval_loss"], rel=1e-6)


@pytest.mark.parametrize(
    "extra",
    [
        ["--optimizer", "adafactor", "--lr-scheduler", "cosine_with_restarts", "--warmup-ratio", "0.2"],
        ["--optimizer", "sgd", "--lr-scheduler", "constant", "--learning-rate", "0.05"],
        [
            "--lr-scheduler",
            "cosine",
            "--label-smoothing",
            "0.1",
            "--gradient-accumulation-steps",
            "2",
            "--weight-decay",
            "0.01",
        ],
        ["--precision", "bf16", "--attention-dropout", "0.05", "--hidden-dropout", "0.2"],
    ],
    ids=["adafactor-restarts", "sgd-constant", "cosine-smoothing-accum", "bf16-cpu-dropouts"],
)
def test_options_train(h, tiny, tmp_path, extra):
    out = tmp_path / "t"
    code, lines = h.train(h.ner_argv(out, "--num-epochs", "1", "--max-train-samples", "64", *extra))
    assert code == 0 and lines[0].startswith("epoch=1 ")
    m = h.metrics(out)
    assert m["status"] == "completed" and m["history"][0]["train_loss"] > 0
    if "--hidden-dropout" in extra:
        import json

        config = json.loads((out / "best" / "config.json").read_text())
        assert config["hidden_dropout_prob"] == 0.2 and config["attention_probs_dropout_prob"] == 0.05
        assert m["precision"] == "bfloat16"
    if "--gradient-accumulation-steps" in extra:
        assert m["batch"]["effective_batch_size"] == 16 and m["global_step"] == 4
