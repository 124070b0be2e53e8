"""Task metrics, shared by the trainer, the baselines and cross-variant evaluation.

NER: entity-level micro precision/recall/F1 with seqeval's strict IOB2 semantics (an entity is
``B-X`` followed by ``I-X``s; type and both boundaries must match exactly) plus token accuracy.
Classification: accuracy and macro-F1 (mean of per-class F1 over the classes present in either
gold or predictions, as sklearn's ``f1_score(average="macro")``). MLM: perplexity = exp(loss).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from kftune.data.tags import spans


def _prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def ner_metrics(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level micro P/R/F1 (seqeval strict IOB2) and token accuracy over sentences."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    tp = n_pred = n_gold = correct = total = 0
    for g, p in zip(gold, pred, strict=True):
        if len(g) != len(p):
            raise ValueError("a predicted sentence has a different length than its gold sentence")
        gs, ps = set(spans(list(g))), set(spans(list(p)))
        tp += len(gs & ps)
        n_pred += len(ps)
        n_gold += len(gs)
        correct += sum(a == b for a, b in zip(g, p, strict=True))
        total += len(g)
    precision, recall, f1 = _prf(tp, n_pred, n_gold)
    return {"f1": f1, "precision": precision, "recall": recall, "accuracy": correct / total if total else 0.0}


def ner_per_type(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, dict[str, float]]:
    """Per entity type P/R/F1 and support (seqeval's classification_report numbers)."""
    counts: dict[str, list[int]] = {}
    for g, p in zip(gold, pred, strict=True):
        gs, ps = set(spans(list(g))), set(spans(list(p)))
        for typ, *_ in gs | ps:
            counts.setdefault(typ, [0, 0, 0])
        for s in gs & ps:
            counts[s[0]][0] += 1
        for s in ps:
            counts[s[0]][1] += 1
        for s in gs:
            counts[s[0]][2] += 1
    out = {}
    for typ, (tp, npred, ngold) in sorted(counts.items()):
        p, r, f = _prf(tp, npred, ngold)
        out[typ] = {"precision": p, "recall": r, "f1": f, "support": ngold}
    return out


def classification_metrics(gold: Sequence[str], pred: Sequence[str]) -> dict[str, float]:
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predicted")
    if not gold:
        return {"accuracy": 0.0, "macro_f1": 0.0}
    accuracy = sum(a == b for a, b in zip(gold, pred, strict=True)) / len(gold)
    f1s = []
    for label in sorted(set(gold) | set(pred)):
        tp = sum(g == label and p == label for g, p in zip(gold, pred, strict=True))
        f1s.append(_prf(tp, sum(p == label for p in pred), sum(g == label for g in gold))[2])
    return {"accuracy": accuracy, "macro_f1": sum(f1s) / len(f1s)}


def perplexity(loss: float) -> float:
    """exp(mean token cross-entropy); inf when the loss overflows."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf
