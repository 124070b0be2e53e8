"""``kftune baseline``: simple baselines (seed 001: "set up a simple baseline"), reported like a trial.

``--task seqcls``
    ``tfidf-lr``  TF-IDF (word uni+bigrams, sublinear tf) -> multinomial logistic regression.
    ``gbt``       TF-IDF -> truncated SVD (100 dense features) -> ``HistGradientBoostingClassifier``
                  with early stopping on a 10% hold-out of train.
``--task ner``
    ``token-lr``  per-token logistic regression on word features (lower-cased form, shape and
                  capitalisation, prefixes/suffixes, the words and shapes around it) through a
                  ``DictVectorizer``; decoding is a Viterbi search over the per-token probabilities
                  that allows only valid BIO sequences (``I-X`` only after ``B-X``/``I-X``).

Every model is a scikit-learn estimator (a ``Pipeline``; ``TokenTagger`` for NER), seeded, pickled to
``OUTPUT_DIR/model.joblib`` for reuse. Reporting is the trainer's: one metric line
``epoch=1 eval_...`` (dev), one ``final test_...`` line (test, when the corpus has one), the same
metric code (``kftune.evaluate.metrics``), ``OUTPUT_DIR/metrics.json`` in the trainer's shape,
and one MLflow run through ``kftune.registry.tracking.Tracker``. ``eval_loss`` is the
cross-entropy of the predicted probabilities (per text, or per token for NER).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from kftune.errors import UserError

MODELS = {"seqcls": ("tfidf-lr", "gbt"), "ner": ("token-lr",)}
DEFAULT_MODEL = {"seqcls": "tfidf-lr", "ner": "token-lr"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, through the CLI's UserError handling
        raise UserError(f"{message} (see `kftune baseline --help`)")


def build_parser() -> argparse.ArgumentParser:
    from kftune.data import VARIANTS

    p = _Parser(prog="kftune baseline", description="Fit a simple baseline and report it like a trial.")
    p.add_argument("--task", required=True, help="seqcls or ner")
    p.add_argument("--data", required=True, help="data URI: demo:textcls, demo:ner, a directory, hf:NAME")
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--model", help="seqcls: tfidf-lr (default) or gbt; ner: token-lr (default)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--c", type=float, default=None, help="inverse regularisation of logistic regression")
    p.add_argument("--tag-family", choices=("original", "simple"), default="original")
    p.add_argument("--mapping", help="tag mapping file for --tag-family simple")
    p.add_argument("--train-variant", choices=VARIANTS, default="cased")
    p.add_argument("--eval-variant", choices=VARIANTS, default="cased")
    p.add_argument("--experiment", default="baselines", help="MLflow experiment name")
    p.add_argument("--trial", help="run name (default: <task>-<model>-seed<seed>)")
    return p


# --------------------------------------------------------------------------------------------
# models


def _word_shape(word: str) -> str:
    shape = re.sub(r"[A-Z]", "X", word)
    shape = re.sub(r"[a-z]", "x", shape)
    shape = re.sub(r"[0-9]", "d", shape)
    return re.sub(r"(.)\1+", r"\1\1", shape)  # Xxxxxx -> Xxx: length-independent


def token_features(tokens: Sequence[str]) -> list[dict[str, float]]:
    """One feature dict per token: form, shape, affixes, and a +-2 window of words and shapes."""
    out = []
    n = len(tokens)
    lowered = [t.lower() for t in tokens]
    shapes = [_word_shape(t) for t in tokens]
    for i, word in enumerate(tokens):
        low = lowered[i]
        f = {
            "bias": 1.0,
            f"w={low}": 1.0,
            f"shape={shapes[i]}": 1.0,
            f"p2={low[:2]}": 1.0,
            f"p3={low[:3]}": 1.0,
            f"s2={low[-2:]}": 1.0,
            f"s3={low[-3:]}": 1.0,
            "title": float(word.istitle()),
            "upper": float(word.isupper()),
            "has_digit": float(any(ch.isdigit() for ch in word)),
            "first": float(i == 0),
        }
        for off in (-2, -1, 1, 2):
            j = i + off
            if 0 <= j < n:
                f[f"w{off:+d}={lowered[j]}"] = 1.0
                f[f"shape{off:+d}={shapes[j]}"] = 1.0
            else:
                f[f"w{off:+d}=<pad>"] = 1.0
        f[f"w-1|w={lowered[i - 1] if i else '<s>'}|{low}"] = 1.0
        out.append(f)
    return out


def bio_viterbi(log_probs, labels: Sequence[str]) -> list[str]:
    """The most probable tag sequence that is valid BIO (``I-X`` only after ``B-X`` or ``I-X``)."""
    import numpy as np

    k = len(labels)
    allowed = np.ones((k, k), dtype=bool)  # allowed[prev, cur]
    start_ok = np.ones(k, dtype=bool)
    for c, cur in enumerate(labels):
        if cur.startswith("I-"):
            typ = cur[2:]
            start_ok[c] = False
            for p, prev in enumerate(labels):
                allowed[p, c] = prev in (f"B-{typ}", f"I-{typ}")
    trans = np.where(allowed, 0.0, -np.inf)
    n = log_probs.shape[0]
    score = np.where(start_ok, log_probs[0], -np.inf)
    back = np.zeros((n, k), dtype=np.int64)
    for t in range(1, n):
        total = score[:, None] + trans  # prev x cur
        back[t] = np.argmax(total, axis=0)
        score = total[back[t], np.arange(k)] + log_probs[t]
    best = [int(np.argmax(score))]
    for t in range(n - 1, 0, -1):
        best.append(int(back[t, best[-1]]))
    return [labels[i] for i in reversed(best)]


def _token_pipeline(c: float, seed: int):
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline(
        [
            ("features", DictVectorizer()),
            ("clf", LogisticRegression(C=c, max_iter=500, random_state=seed)),
        ]
    )


class TokenTagger:
    """A scikit-learn style NER tagger: ``fit(sentences, tag_sequences)``, ``predict(sentences)``.

    ``pipeline`` (DictVectorizer + LogisticRegression) classifies tokens; ``predict`` decodes each
    sentence with ``bio_viterbi`` so the output is always a valid BIO sequence.
    """

    def __init__(self, c: float = 1.0, seed: int = 42):
        self.c = c
        self.seed = seed

    def get_params(self, deep: bool = True) -> dict:
        return {"c": self.c, "seed": self.seed}

    def set_params(self, **params) -> TokenTagger:
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def fit(self, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[str]]) -> TokenTagger:
        features = [f for sent in sentences for f in token_features(sent)]
        flat = [t for seq in tags for t in seq]
        self.pipeline_ = _token_pipeline(self.c, self.seed).fit(features, flat)
        self.labels_ = [str(x) for x in self.pipeline_.classes_]
        return self

    def sentence_log_probs(self, sentences: Sequence[Sequence[str]]) -> list:
        """Per-token log-probabilities (tokens x labels), one array per sentence, in one batch."""
        import numpy as np

        features = [f for sent in sentences for f in token_features(sent)]
        if not features:
            return [np.zeros((0, len(self.labels_))) for _ in sentences]
        logp = np.log(np.clip(self.pipeline_.predict_proba(features), 1e-12, 1.0))
        bounds = np.cumsum([len(s) for s in sentences])[:-1]
        return np.split(logp, bounds)

    def decode(self, log_probs: list) -> list[list[str]]:
        return [bio_viterbi(lp, self.labels_) if len(lp) else [] for lp in log_probs]

    def predict(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        return self.decode(self.sentence_log_probs(sentences))

    def token_log_loss(self, log_probs: list, tags: Sequence[Sequence[str]]) -> float:
        """Mean cross-entropy of the gold tags under the token classifier (tags unseen in train: 1e-12)."""
        index = {label: i for i, label in enumerate(self.labels_)}
        total, count = 0.0, 0
        for lp, gold in zip(log_probs, tags, strict=True):
            for t, tag in enumerate(gold):
                total -= float(lp[t, index[tag]]) if tag in index else math.log(1e-12)
                count += 1
        return total / count if count else 0.0


def seqcls_pipeline(model: str, seed: int, c: float | None = None):
    from sklearn.decomposition import TruncatedSVD
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    if model == "tfidf-lr":
        return Pipeline(
            [("tfidf", tfidf), ("clf", LogisticRegression(C=c or 10.0, max_iter=2000, random_state=seed))]
        )
    return Pipeline(
        [
            ("tfidf", tfidf),
            ("svd", TruncatedSVD(n_components=100, random_state=seed)),
            (
                "clf",
                HistGradientBoostingClassifier(
                    max_iter=300,
                    learning_rate=0.1,
                    max_leaf_nodes=15,
                    early_stopping=True,
                    validation_fraction=0.1,
                    n_iter_no_change=15,
                    random_state=seed,
                ),
            ),
        ]
    )


def _log_loss(gold: Sequence[str], probs, classes: Sequence[str]) -> float:
    index = {label: i for i, label in enumerate(classes)}
    total = 0.0
    for label, row in zip(gold, probs, strict=True):
        p = float(row[index[label]]) if label in index else 0.0
        total -= math.log(max(p, 1e-12))
    return total / len(gold) if len(gold) else 0.0


# --------------------------------------------------------------------------------------------
# the command


def _writable_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".kftune-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(
            f"output directory {path} is not writable ({exc.strerror}): choose another path"
        ) from None
    return path


def _check_args(args: argparse.Namespace) -> None:
    if args.task not in MODELS:
        raise UserError(
            f"--task {args.task!r} has no baseline: choose one of {', '.join(MODELS)} (mlm has none)"
        )
    args.model = args.model or DEFAULT_MODEL[args.task]
    if args.model not in MODELS[args.task]:
        raise UserError(
            f"--model {args.model!r} is not a {args.task} baseline: choose one of {', '.join(MODELS[args.task])}"
        )
    if args.c is not None and not args.c > 0:
        raise UserError(f"--c must be > 0, got {args.c}")
    if args.tag_family == "simple" and args.task != "ner":
        raise UserError("--tag-family simple applies to --task ner only")


def _evaluate(task: str, model, examples: list) -> tuple[dict[str, float], list]:
    """Metrics (without prefix) in the order of METRICS_BY_TASK, and the predictions."""
    from kftune.evaluate.metrics import classification_metrics, ner_metrics

    if task == "ner":
        gold = [ex.tags for ex in examples]
        log_probs = model.sentence_log_probs([ex.tokens for ex in examples])
        pred = model.decode(log_probs)
        m = ner_metrics(gold, pred)
        m["loss"] = model.token_log_loss(log_probs, gold)
        return {k: m[k] for k in ("f1", "precision", "recall", "accuracy", "loss")}, pred
    texts = [ex.text for ex in examples]
    gold = [ex.label for ex in examples]
    pred = [str(x) for x in model.predict(texts)]
    m = classification_metrics(gold, pred)
    m["loss"] = _log_loss(gold, model.predict_proba(texts), [str(c) for c in model.classes_])
    return {k: m[k] for k in ("accuracy", "macro_f1", "loss")}, pred


def run(args: argparse.Namespace) -> dict:
    """Fit, evaluate, write ``metrics.json`` and the model; returns the metrics.json content."""
    import joblib
    from threadpoolctl import threadpool_limits

    from kftune.data import apply_variant, load_corpus
    from kftune.registry.tracking import Tracker
    from kftune.train.metric_lines import format_epoch_line, format_final_line

    t0 = time.perf_counter()
    _check_args(args)
    corpus = load_corpus(args.data, args.task, family=args.tag_family, mapping=args.mapping)
    out = _writable_dir(args.output_dir)
    train = apply_variant(corpus.splits["train"], args.train_variant, seed=args.seed)
    dev = apply_variant(corpus.splits["dev"], args.eval_variant, seed=args.seed)
    test = (
        apply_variant(corpus.splits["test"], args.eval_variant, seed=args.seed)
        if "test" in corpus.splits
        else []
    )
    if not train:
        raise UserError(f"{args.data}: the train split is empty")
    if args.task == "seqcls" and len({ex.label for ex in train}) < 2:
        raise UserError(f"{args.data}: the train split has fewer than two labels; a classifier needs two")
    t_load = time.perf_counter()

    arg_dict = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    run_name = args.trial or f"{args.task}-{args.model}-seed{args.seed}"
    tags = {
        "kftune.experiment": args.experiment,
        "kftune.trial": run_name,
        "kftune.task": args.task,
        "kftune.seed": str(args.seed),
        "kftune.variant": args.train_variant,
        "kftune.eval_variant": args.eval_variant,
        "kftune.tag_family": args.tag_family,
        "kftune.baseline": args.model,
    }
    tracker = Tracker.start(out, experiment=args.experiment, run_name=run_name, tags=tags, params=arg_dict)
    try:
        # One BLAS/OpenMP thread: several times faster on a loaded 2-core machine (no spinning
        # threads), and trials run side by side anyway. threadpoolctl limits only libraries
        # already loaded, so import the estimators first.
        import sklearn.decomposition  # noqa: F401
        import sklearn.ensemble  # noqa: F401
        import sklearn.linear_model  # noqa: F401

        with threadpool_limits(1):
            if args.task == "ner":
                model = TokenTagger(c=args.c or 1.0, seed=args.seed).fit(
                    [ex.tokens for ex in train], [ex.tags for ex in train]
                )
            else:
                model = seqcls_pipeline(args.model, args.seed, args.c).fit(
                    [ex.text for ex in train], [ex.label for ex in train]
                )
            t_train = time.perf_counter()
            dev_metrics, _ = _evaluate(args.task, model, dev)
            test_metrics = _evaluate(args.task, model, test)[0] if test else {}
        t_eval = time.perf_counter()

        eval_row = {f"eval_{k}": v for k, v in dev_metrics.items()}
        print(format_epoch_line(1, eval_row), flush=True)
        tracker.log_metrics(eval_row, step=1)
        test_row = {f"test_{k}": v for k, v in test_metrics.items()}
        if test_row:
            print(format_final_line(test_row), flush=True)
            tracker.log_metrics(test_row, step=1)
        joblib.dump(model, out / "model.joblib")
        result = {
            "task": args.task,
            "args": arg_dict,
            "history": [{"epoch": 1, **eval_row}],
            "best": {"epoch": 1, **eval_row},
            "test": test_row,
            "status": "completed",
            "timings": {
                "load_s": round(t_load - t0, 3),
                "train_s": round(t_train - t_load, 3),
                "eval_s": round(t_eval - t_train, 3),
                "total_s": round(time.perf_counter() - t0, 3),
            },
            "baseline": {
                "model": args.model,
                "train_examples": len(train),
                "dev_examples": len(dev),
                "test_examples": len(test),
            },
        }
        (out / "metrics.json").write_text(
            json.dumps(result, indent=2, sort_keys=False) + "\n", encoding="utf-8"
        )
        tracker.log_artifact(out / "metrics.json")
        tracker.log_artifact(out / "model.joblib")
    except BaseException as exc:
        tracker.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    tracker.end("FINISHED")
    print(f"kftune baseline: wrote {out / 'metrics.json'} and {out / 'model.joblib'}", file=sys.stderr)
    return result


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    run(args)
    return 0
