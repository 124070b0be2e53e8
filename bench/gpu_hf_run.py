"""One plain Hugging Face ``Trainer`` run (a subprocess of ``bench/gpu_throughput.py``).

``--padding max_length``: every sentence padded to 128 (``default_data_collator``), random order.
``--padding dynamic``: ``DataCollatorForTokenClassification`` pads each batch to its longest row,
and the sampler groups by length (``train_sampling_strategy="group_by_length"``, or
``group_by_length=True`` on transformers versions that still call it that).
Everything else is the Trainer's defaults (its default optimizer, no workers). Prints one JSON
line: samples/s over the whole ``train()`` (``train_runtime``) and steady-state (from step 20 to
the end, timed with device syncs by a callback), peak memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

WARMUP = 20


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    p.add_argument("--padding", choices=("max_length", "dynamic"), default="max_length")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--samples", type=int)
    a = p.parse_args()

    import torch
    import transformers
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        default_data_collator,
    )

    from kftune.data import load_corpus

    corpus = load_corpus(a.data, "ner")
    labels = corpus.labels()
    label2id = {t: i for i, t in enumerate(labels)}
    train = corpus.splits["train"][: a.samples] if a.samples else corpus.splits["train"]
    tok = AutoTokenizer.from_pretrained(a.model)
    pad = a.padding == "max_length"
    enc = tok([ex.tokens for ex in train], is_split_into_words=True, truncation=True, max_length=128,
              padding="max_length" if pad else False)  # fmt: skip
    rows = []
    for i, ex in enumerate(train):
        prev, lab = None, []
        for w in enc.word_ids(i):
            lab.append(label2id[ex.tags[w]] if w is not None and w != prev else -100)
            prev = w
        rows.append(
            {"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": lab}
        )

    cuda = torch.cuda.is_available()
    torch.manual_seed(0)
    net = AutoModelForTokenClassification.from_pretrained(
        a.model, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
    )
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    grouping = {}
    if not pad:
        if "train_sampling_strategy" in names:
            grouping = {"train_sampling_strategy": "group_by_length"}
        else:
            grouping = {"group_by_length": True}
    targs = TrainingArguments(
        output_dir=str(Path(a.out) / "hf"), per_device_train_batch_size=a.batch_size, num_train_epochs=1,
        learning_rate=a.learning_rate, report_to="none", save_strategy="no", eval_strategy="no",
        logging_strategy="no", disable_tqdm=True, seed=0, bf16=a.precision == "bf16", use_cpu=not cuda,
        **grouping,
    )  # fmt: skip
    collator = default_data_collator if pad else DataCollatorForTokenClassification(tok)

    class Steady(TrainerCallback):
        t0: float | None = None
        steps0 = 0
        seen = 0

        def on_step_end(self, args, state, control, **kw):
            if state.global_step == WARMUP:
                if cuda:
                    torch.cuda.synchronize()
                self.t0 = time.perf_counter()
                self.steps0 = state.global_step

    cb = Steady()
    trainer = Trainer(model=net, args=targs, train_dataset=rows, data_collator=collator, callbacks=[cb])
    out = trainer.train()
    if cuda:
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    steps = trainer.state.global_step
    steady_samples = min(len(rows), steps * a.batch_size) - cb.steps0 * a.batch_size
    result = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "precision": a.precision,
        "padding": a.padding,
        "grouping": grouping or None,
        "optimizer": str(targs.optim),
        "batch_size": a.batch_size,
        "samples": len(rows),
        "steps": steps,
        "train_runtime_s": out.metrics["train_runtime"],
        "samples_per_second": out.metrics["train_samples_per_second"],
        "steady_samples_per_second": steady_samples / (t1 - cb.t0) if cb.t0 else None,
        "final_train_loss": out.metrics.get("train_loss"),
        "peak_allocated_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        "peak_reserved_bytes": torch.cuda.max_memory_reserved() if cuda else None,
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
