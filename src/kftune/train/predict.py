"""Prediction and evaluation, shared by the trainer (dev/test each epoch) and ``kftune evaluate``.

``evaluate_encoded`` runs the model over a pre-encoded split and returns the task's metrics
(without the ``eval_`` prefix): ner -> f1, precision, recall, accuracy, loss (entity-level
seqeval-strict, on the full gold sentences: words cut off by truncation count as predicted
``O``); seqcls -> accuracy, macro_f1, loss; mlm -> loss, perplexity. ``predict_ner_tags`` is the
one function that turns a list of ``TokenExample`` into word-level tags.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from kftune.evaluate.metrics import classification_metrics, ner_metrics, perplexity
from kftune.train.batches import collate, eval_batches, mask_tokens
from kftune.train.encode import IGNORE, Encoded, encode


@dataclass
class Prediction:
    pred_ids: list  # ner: per example, per word (label id or -1 when truncated); seqcls: per example
    loss: float  # mean over labelled positions (unsmoothed); nan when nothing is labelled


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def mask_eval_split(enc: Encoded, tokenizer, seed: int, probability: float) -> tuple[list, list]:
    """Fixed MLM masks for an evaluation split: the same every epoch and every process."""
    rng = np.random.default_rng([seed, 0x65766C])
    return mask_tokens(
        enc.input_ids,
        enc.special_mask,
        rng,
        probability=probability,
        mask_id=tokenizer.mask_token_id,
        vocab_size=len(tokenizer),
    )


@torch.no_grad()
def run_model(
    task: str,
    model,
    enc: Encoded,
    *,
    pad_id: int,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype | None = None,
    mlm_inputs: tuple[list, list] | None = None,
    should_stop: Callable[[], None] | None = None,
) -> Prediction:
    """Forward every example once (longest first); loss = summed CE / labelled positions."""
    model.eval()
    n = len(enc)
    preds: list = [None] * n
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.int64, device=device)
    ids_all = mlm_inputs[0] if mlm_inputs else enc.input_ids
    labels_all = mlm_inputs[1] if mlm_inputs else enc.labels
    for idx in eval_batches(enc.lengths, batch_size):
        if should_stop is not None:
            should_stop()
        rows = [ids_all[i] for i in idx]
        labels = [labels_all[i] for i in idx]
        batch = collate(rows, labels, pad_id, device, token_labels=task != "seqcls")
        lab = batch.pop("labels")
        with _autocast(device, dtype):
            logits = model(**batch).logits
        logits = logits.float()
        loss_sum += F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), lab.reshape(-1), ignore_index=IGNORE, reduction="sum"
        ).double()
        count += (lab != IGNORE).sum()
        if task == "mlm":
            continue
        best = logits.argmax(-1).cpu().numpy()
        for j, i in enumerate(idx):
            if task == "seqcls":
                preds[i] = int(best[j])
            else:
                starts = enc.word_starts[i]
                preds[i] = [int(best[j, p]) if p >= 0 else -1 for p in starts]
    total = int(count.item())
    loss = float(loss_sum.item() / total) if total else float("nan")
    return Prediction(preds, loss)


def metrics_from_prediction(
    task: str, pred: Prediction, examples, id2label: dict[int, str]
) -> dict[str, float]:
    if task == "mlm":
        return {"loss": pred.loss, "perplexity": perplexity(pred.loss)}
    if task == "seqcls":
        gold = [ex.label for ex in examples]
        out = classification_metrics(gold, [id2label[p] for p in pred.pred_ids])
        return {**out, "loss": pred.loss}
    tags = ids_to_tags(pred.pred_ids, id2label)
    out = ner_metrics([ex.tags for ex in examples], tags)
    return {**out, "loss": pred.loss}


def ids_to_tags(pred_ids: list[list[int]], id2label: dict[int, str]) -> list[list[str]]:
    return [[id2label[p] if p >= 0 else "O" for p in sent] for sent in pred_ids]


def id2label_of(model) -> dict[int, str]:
    return {int(k): v for k, v in model.config.id2label.items()}


def label2id_of(model) -> dict[str, int]:
    return {v: k for k, v in id2label_of(model).items()}


def evaluate_examples(
    task: str,
    model,
    tokenizer,
    examples,
    *,
    max_length: int,
    batch_size: int = 64,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    mlm_seed: int = 0,
    mlm_probability: float = 0.15,
) -> dict[str, float]:
    """Encode ``examples`` and evaluate: the path ``kftune evaluate`` takes."""
    device = device or next(model.parameters()).device
    enc = encode(task, tokenizer, examples, label2id_of(model) if task != "mlm" else {}, max_length)
    mlm_inputs = mask_eval_split(enc, tokenizer, mlm_seed, mlm_probability) if task == "mlm" else None
    pred = run_model(
        task,
        model,
        enc,
        pad_id=pad_id_of(tokenizer),
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        mlm_inputs=mlm_inputs,
    )
    return metrics_from_prediction(task, pred, examples, id2label_of(model) if task != "mlm" else {})


def predict_ner_tags(
    model, tokenizer, examples, *, max_length: int, batch_size: int = 64, device: torch.device | None = None
) -> list[list[str]]:
    """Word-level BIO tags for a list of ``TokenExample`` (their gold tags are ignored)."""
    device = device or next(model.parameters()).device
    enc = encode("ner", tokenizer, examples, label2id_of(model), max_length)
    pred = run_model("ner", model, enc, pad_id=pad_id_of(tokenizer), batch_size=batch_size, device=device)
    return ids_to_tags(pred.pred_ids, id2label_of(model))


def pad_id_of(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
