"""Training throughput: `kftune train` vs a plain Hugging Face `Trainer` with padding="max_length".

Both train the same model (the tiny demo BERT by default) on the same data (the demo NER train
split, 3,000 sentences) for one epoch with the same batch size, learning rate and torch threads,
side by side in this process; rounds alternate (kftune, HF, kftune, HF, ...) and the best of
each is reported, so host noise hits both alike. Samples/s counts training only (no evaluation,
no checkpointing): kftune's from its metrics.json, the Trainer's from its `train_runtime`.

    python bench/throughput.py                       # CPU, tiny model
    python bench/throughput.py --device cuda --model base-random --precision bf16
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def model_dir(name: str, work: Path) -> str:
    """tiny, minilm, a path, or base-random (BERT-base shape, random init, the tiny vocabulary)."""
    from kftune.train.models import resolve_model

    if name != "base-random":
        return resolve_model(name)
    target = work / "bert-base-random"
    if not (target / "config.json").is_file():
        import torch
        from transformers import AutoTokenizer, BertConfig, BertModel

        tok = AutoTokenizer.from_pretrained(resolve_model("tiny"))
        torch.manual_seed(0)
        BertModel(BertConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id)).save_pretrained(target)
        tok.save_pretrained(target)
    return str(target)


def run_kftune(model: str, out: Path, a) -> float:
    from kftune.train.args import TrainArgs, validate
    from kftune.train.cli import run_trial

    args = TrainArgs(
        task="ner", data="demo:ner", model=model, output_dir=str(out), learning_rate=a.learning_rate,
        per_device_train_batch_size=a.batch_size, num_epochs=1, max_length=128, seed=0, device=a.device,
        precision=a.precision, max_eval_samples=64, keep="none", tracking="off", num_threads=a.threads,
        max_train_samples=a.samples,
    )  # fmt: skip
    validate(args)
    code = run_trial(args, io.StringIO())
    if code:
        raise SystemExit(f"kftune train failed with exit {code}")
    return json.loads((out / "metrics.json").read_text())["train_samples_per_second"]


class _Rows:
    """A list of feature dicts as a map-style dataset (no `datasets` needed)."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def hf_dataset(model: str, samples: int | None):
    from transformers import AutoTokenizer

    from kftune.data import load_corpus

    corpus = load_corpus("demo:ner", "ner")
    labels = corpus.labels()
    label2id = {t: i for i, t in enumerate(labels)}
    train = corpus.splits["train"][:samples] if samples else corpus.splits["train"]
    tok = AutoTokenizer.from_pretrained(model)
    enc = tok(
        [ex.tokens for ex in train],
        is_split_into_words=True,
        truncation=True,
        max_length=128,
        padding="max_length",
    )
    all_labels = []
    for i, ex in enumerate(train):
        prev, row = None, []
        for w in enc.word_ids(i):
            row.append(label2id[ex.tags[w]] if w is not None and w != prev else -100)
            prev = w
        all_labels.append(row)
    rows = [
        {"input_ids": ids, "attention_mask": mask, "labels": lab}
        for ids, mask, lab in zip(enc["input_ids"], enc["attention_mask"], all_labels, strict=True)
    ]
    return _Rows(rows), labels, tok


def run_hf(model: str, work: Path, a, dataset, labels, tok) -> float:
    import torch
    from transformers import (
        AutoModelForTokenClassification,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    torch.manual_seed(0)
    net = AutoModelForTokenClassification.from_pretrained(
        model,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={t: i for i, t in enumerate(labels)},
    )
    targs = TrainingArguments(
        output_dir=str(work / "hf"), per_device_train_batch_size=a.batch_size, num_train_epochs=1,
        learning_rate=a.learning_rate, report_to="none", save_strategy="no", eval_strategy="no",
        logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0, use_cpu=a.device == "cpu", seed=0,
        bf16=a.precision == "bf16", fp16=a.precision == "fp16",
    )  # fmt: skip
    trainer = Trainer(model=net, args=targs, train_dataset=dataset, data_collator=default_data_collator)
    return trainer.train().metrics["train_samples_per_second"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default="tiny", help="tiny (default), minilm, base-random, or a model directory"
    )
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads for both")
    p.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds; the best of each side is reported"
    )
    p.add_argument("--samples", type=int, help="train on the first N sentences (default: all 3,000)")
    p.add_argument("--min-ratio", type=float, default=0.0, help="exit 1 when the ratio is below this")
    a = p.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    os.environ.setdefault("KFTUNE_HOME", str(Path.cwd() / ".kftune"))
    with tempfile.TemporaryDirectory(prefix="kftune-bench-") as tmp:
        work = Path(tmp)
        model = model_dir(a.model, work)
        dataset, labels, tok = hf_dataset(model, a.samples)
        ours, theirs = [], []
        for r in range(a.rounds):
            t0 = time.perf_counter()
            ours.append(run_kftune(model, work / f"k{r}", a))
            theirs.append(run_hf(model, work, a, dataset, labels, tok))
            print(f"round {r + 1}: kftune {ours[-1]:.1f} samples/s, HF Trainer {theirs[-1]:.1f} samples/s "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)  # fmt: skip
    best_ours, best_theirs = max(ours), max(theirs)
    ratio = best_ours / best_theirs
    device = torch.cuda.get_device_name(0) if a.device == "cuda" else f"CPU, {a.threads} threads"
    print(f"device: {device}; model {a.model}; batch {a.batch_size}; precision {a.precision}; "
          f"{len(dataset)} sentences, 1 epoch, best of {a.rounds}")  # fmt: skip
    print(f"kftune train (length-grouped, dynamic padding): {best_ours:8.1f} samples/s")
    print(f"HF Trainer (padding=max_length, 128):           {best_theirs:8.1f} samples/s")
    print(f"speed-up: {ratio:.2f}x")
    return 1 if ratio < a.min_ratio else 0


if __name__ == "__main__":
    sys.exit(main())
