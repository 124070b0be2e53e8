"""``kftune evaluate``: score a trained model on every casing variant of dev and test.

    kftune evaluate --model runs/t1 --data demo:ner --out eval.json

``--model`` is a trial output directory (its ``best/`` is used, else ``last/``) or a model
directory. Task, tag family, mapping and max length come from the model's ``config.json``
(``kftune`` entry) unless given. Prints a matrix (splits x variants, the task's main metric) and
writes ``{split: {variant: {f1, precision, recall, accuracy, loss, n}}}`` as JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kftune.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(f"{message} (see kftune evaluate --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="kftune evaluate", description="Evaluate a trained model on every casing variant of dev/test."
    )
    p.add_argument("--model", required=True, help="trial output directory (uses best/) or a model directory")
    p.add_argument("--data", required=True, help="data URI (demo:ner, a directory, hf:NAME)")
    p.add_argument(
        "--task", choices=("ner", "seqcls", "mlm"), help="default: the task the model was trained for"
    )
    p.add_argument("--tag-family", choices=("original", "simple"), help="default: the model's tag family")
    p.add_argument(
        "--mapping", help="mapping file for --tag-family simple (default: the one used in training)"
    )
    p.add_argument("--variants", default="all", help="comma-separated casing variants, or all (default)")
    p.add_argument("--splits", default="dev,test", help="comma-separated splits (default dev,test)")
    p.add_argument("--out", help="write the results as JSON to this file")
    p.add_argument("--batch-size", type=int, default=64, help="examples per forward pass (default 64)")
    p.add_argument("--max-length", type=int, help="default: the max length the model was trained with")
    p.add_argument("--max-samples", type=int, help="evaluate only the first N examples of each split")
    p.add_argument(
        "--data-seed", type=int, default=0, help="seed of the *-mix variants (default 0, as in training)"
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be a positive integer, got {args.batch_size}")
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    for s in splits:
        if s not in ("train", "dev", "test"):
            raise UserError(f"--splits: unknown split {s!r}: choose from train, dev, test")
    from kftune.train.cli import quiet_libraries
    from kftune.train.modelio import find_model_dir

    model_dir = find_model_dir(args.model)
    import json

    meta = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("kftune") or {}
    task = args.task or meta.get("task")
    if task is None:
        raise UserError(
            f"{model_dir} was not trained by kftune (no 'kftune' entry in config.json): pass --task"
        )
    family = args.tag_family or meta.get("tag_family") or "original"
    mapping = args.mapping or (meta.get("mapping") if family == "simple" else None)
    from kftune.data import load_corpus

    corpus = load_corpus(args.data, task, family=family, mapping=mapping)
    from kftune.evaluate.crossvariant import evaluate_variants, format_matrix, variants_for, write_json

    variants = variants_for(task, args.variants)
    missing = [s for s in splits if s not in corpus.splits]
    if len(missing) == len(splits):
        raise UserError(
            f"{args.data} has none of the splits {', '.join(splits)}: pass --splits with existing ones"
        )
    quiet_libraries()
    from kftune.train.modelio import load_trained
    from kftune.train.optim import pick_device

    device = pick_device(args.device)
    model, tokenizer, meta = load_trained(model_dir, task, device=device)
    unknown = sorted(set(corpus.labels()) - set(model.config.label2id)) if task != "mlm" else []
    if unknown:
        print(f"kftune evaluate: warning: labels {unknown[:6]} are not in the model's label set; they count as misses",
              file=sys.stderr)  # fmt: skip
    results = evaluate_variants(
        model,
        tokenizer,
        task,
        corpus,
        variants=variants,
        splits=[s for s in splits if s in corpus.splits],
        max_length=args.max_length or int(meta.get("max_length", 128)),
        batch_size=args.batch_size,
        data_seed=args.data_seed,
        max_samples=args.max_samples,
        device=device,
    )
    print(f"model {model_dir} ({task}, trained on {meta.get('train_variant', '?')})")
    print(format_matrix(results, task))
    if args.out:
        write_json(Path(args.out), results)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
