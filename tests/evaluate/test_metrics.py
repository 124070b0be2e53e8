import random

import pytest
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2
from sklearn.metrics import f1_score as sk_f1

from kftune.evaluate.metrics import classification_metrics, ner_metrics, ner_per_type, perplexity

TAGS = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


def _random_corpus(rng, n=60):
    gold, pred = [], []
    for _ in range(n):
        length = rng.randint(1, 15)
        g = [rng.choice(TAGS) for _ in range(length)]
        # predictions: mostly gold with random corruptions, including ill-formed I- starts
        p = [t if rng.random() < 0.7 else rng.choice(TAGS) for t in g]
        gold.append(g)
        pred.append(p)
    return gold, pred


@pytest.mark.parametrize("seed", range(25))
def test_ner_metrics_equal_seqeval_strict_on_random_predictions(seed):
    gold, pred = _random_corpus(random.Random(seed))
    ours = ner_metrics(gold, pred)
    kw = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    assert ours["f1"] == pytest.approx(f1_score(gold, pred, **kw), abs=1e-12)
    assert ours["precision"] == pytest.approx(precision_score(gold, pred, **kw), abs=1e-12)
    assert ours["recall"] == pytest.approx(recall_score(gold, pred, **kw), abs=1e-12)
    assert ours["accuracy"] == pytest.approx(accuracy_score(gold, pred), abs=1e-12)


def test_per_type_equals_seqeval_report():
    gold, pred = _random_corpus(random.Random(7), n=200)
    report = classification_report(gold, pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    for typ, row in ner_per_type(gold, pred).items():
        assert row["f1"] == pytest.approx(report[typ]["f1-score"])
        assert row["support"] == report[typ]["support"]


def test_ner_known_answer():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    assert ner_metrics(gold, gold)["f1"] == 1.0
    # boundary error on PER, LOC right: P = R = 1/2
    m = ner_metrics(gold, [["B-PER", "O", "O", "B-LOC"]])
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)
    assert ner_metrics([["O"]], [["O"]])["f1"] == 0.0  # no entities at all: 0, like seqeval


@pytest.mark.parametrize("seed", range(10))
def test_classification_equals_sklearn(seed):
    rng = random.Random(seed)
    gold = [rng.choice("abc") for _ in range(50)]
    pred = [g if rng.random() < 0.6 else rng.choice("abcd") for g in gold]
    m = classification_metrics(gold, pred)
    assert m["macro_f1"] == pytest.approx(sk_f1(gold, pred, average="macro", zero_division=0))
    assert m["accuracy"] == pytest.approx(sum(a == b for a, b in zip(gold, pred, strict=True)) / 50)


def test_perplexity():
    assert perplexity(0.0) == 1.0
    assert perplexity(1e6) == float("inf")
