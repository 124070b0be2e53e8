"""Shared pieces of the GPU benchmark: a CoNLL-like synthetic NER set, a BERT-base-size random
model, and the useful-FLOPs count.

Data: sentence lengths drawn like CoNLL-2003's (gamma, mean 25 words + [CLS]/[SEP] = 27 tokens,
long tail clipped at 124 words), 9 BIO labels (PER/LOC/ORG/MISC), one sub-word per word (words are
whole-word entries of the tiny model's WordPiece vocabulary, entity words drawn from a
type-specific part of it, so there is something to learn). Written as CoNLL files, read by
``kftune train --data DIR`` and by the plain-Trainer script alike.

Model: ``BertConfig()`` defaults (hidden 768, 12 layers, 12 heads, intermediate 3072, vocabulary
30,522: 109.5 M parameters), random init (seed 0), the tiny model's tokenizer (its ids are all
below 30,522).

Useful FLOPs of one training example of ``l`` real tokens (padding excluded):
``6 * N_matmul * l + 12 * n_layers * d * l**2``, where ``N_matmul`` counts the weights of the
matrix products (encoder layers' Q, K, V, output, intermediate, output dense, and the classifier;
not the embedding tables, which are lookups) and the second term is attention's ``QK^T`` and
``AV`` (``2 * 2 * l * l * d`` per layer forward, x3 for forward + backward).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
TYPES = ["PER", "LOC", "ORG", "MISC"]


def words_of(tokenizer) -> list[str]:
    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_tokens)
    words = sorted(
        w for w in vocab if w.isalpha() and len(w) >= 2 and not w.startswith("##") and w not in special
    )
    one = tokenizer(words, add_special_tokens=False)["input_ids"]
    return [w for w, ids in zip(words, one, strict=True) if len(ids) == 1]


def sentence_lengths(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.round(rng.gamma(2.0, 12.5, size=n)), 1, 124).astype(int)


def write_conll(path: Path, n: int, words: list[str], rng: np.random.Generator) -> None:
    words_arr = np.array(words)
    k = len(words) // 5
    pools = {t: words_arr[(i + 1) * k : (i + 2) * k] for i, t in enumerate(TYPES)}
    common = words_arr[:k]
    lines = []
    for length in sentence_lengths(n, rng):
        i = 0
        while i < length:
            if rng.random() < 0.12:
                kind = TYPES[rng.integers(4)]
                span = int(min(length - i, rng.integers(1, 4)))
                for j in range(span):
                    lines.append(f"{rng.choice(pools[kind])} {'B' if j == 0 else 'I'}-{kind}")
                i += span
            else:
                lines.append(f"{rng.choice(common)} O")
                i += 1
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def prepare(work: Path, n_train: int, n_dev: int, size: str = "base") -> tuple[Path, Path]:
    """(data dir, model dir) under ``work``; built once."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from kftune.train.models import resolve_model

    data = work / f"conll-like-{n_train}-{n_dev}"
    model = work / f"bert-{size}-random"
    tok = AutoTokenizer.from_pretrained(resolve_model("tiny"))
    if not (data / "train.conll").is_file():
        data.mkdir(parents=True, exist_ok=True)
        words = words_of(tok)
        rng = np.random.default_rng(2003)
        write_conll(data / "train.conll", n_train, words, rng)
        write_conll(data / "dev.conll", n_dev, words, rng)
    if not (model / "config.json").is_file():
        import torch

        torch.manual_seed(0)
        if size == "base":
            config = BertConfig(pad_token_id=tok.pad_token_id)  # BERT-base defaults, vocab 30522
        else:  # "smoke": a small stand-in for CPU checks of the bench itself
            config = BertConfig(
                vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=128, pad_token_id=tok.pad_token_id,
            )  # fmt: skip
        BertModel(config).save_pretrained(model)
        tok.save_pretrained(model)
    return data, model


def model_shape(model_dir: Path) -> dict:
    cfg = json.loads((model_dir / "config.json").read_text())
    d, layers, inter = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"]
    n_matmul = layers * (4 * d * d + 2 * d * inter) + d * len(LABELS)
    params = (
        (cfg["vocab_size"] + cfg["max_position_embeddings"] + cfg["type_vocab_size"]) * d
        + layers * (4 * d * d + 4 * d + 2 * d * inter + inter + d + 4 * d)
        + 2 * d
        + d * len(LABELS)
        + len(LABELS)
    )
    return {"hidden": d, "layers": layers, "n_matmul": n_matmul, "params": params}


def token_lengths(data_dir: Path, model_dir: Path, max_length: int = 128) -> np.ndarray:
    """Tokens per training sentence, as kftune and the Trainer script encode them."""
    from transformers import AutoTokenizer

    from kftune.data import load_corpus

    corpus = load_corpus(str(data_dir), "ner")
    tok = AutoTokenizer.from_pretrained(model_dir)
    enc = tok([ex.tokens for ex in corpus.splits["train"]], is_split_into_words=True, truncation=True,
              max_length=max_length)  # fmt: skip
    return np.array([len(x) for x in enc["input_ids"]])


def useful_flops_per_sample(lengths: np.ndarray, shape: dict) -> float:
    l = lengths.astype(np.float64)  # noqa: E741
    per = 6 * shape["n_matmul"] * l + 12 * shape["layers"] * shape["hidden"] * l**2
    return float(per.mean())
