"""``kftune data``: casing variants, demo corpora, corpus summaries."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from kftune.data import VARIANTS, apply_variant, load_corpus
from kftune.data.conll import write_conll
from kftune.data.formats import write_csv
from kftune.errors import UserError


def _writable_dir(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".kftune-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(
            f"output directory {out} is not writable ({exc.strerror}): choose another path"
        ) from None
    return out


def cmd_variants(args: argparse.Namespace) -> int:
    corpus = load_corpus(args.input, args.task, family=args.family, mapping=args.mapping)
    out = _writable_dir(args.out_dir)
    variants = args.variant or list(VARIANTS)
    for variant in variants:
        for split, examples in corpus.splits.items():
            rows = apply_variant(examples, variant, seed=args.seed)
            target = out / args.family / variant
            if args.task == "ner":
                write_conll(target / f"{split}.conll", rows)
            else:
                write_csv(target / f"{split}.csv", rows)
        print(
            f"wrote {out / args.family / variant} ({', '.join(f'{s}={len(v)}' for s, v in corpus.splits.items())})"
        )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from kftune.data.demo import DEMOS, demo_path, export_demo

    names = [args.name] if args.name != "all" else list(DEMOS)
    for name in names:
        path = export_demo(name, Path(args.out_dir) / name) if args.out_dir else demo_path(name)
        print(f"demo:{name} -> {path}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    corpus = load_corpus(args.input, args.task, family=args.family, mapping=args.mapping)
    print(f"{corpus.source}  task={corpus.task}")
    for split, examples in corpus.splits.items():
        if corpus.task == "ner":
            types = Counter(t[2:] for ex in examples for t in ex.tags if t.startswith("B-"))
            ntok = sum(len(ex.tokens) for ex in examples)
            print(
                f"  {split:5s} sentences {len(examples):6d}  tokens {ntok:7d}  entities {dict(sorted(types.items()))}"
            )
        else:
            labels = Counter(ex.label for ex in examples)
            print(f"  {split:5s} texts {len(examples):6d}  labels {dict(sorted(labels.items()))}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kftune data", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    def corpus_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--task", default="ner", choices=["ner", "seqcls", "mlm"])
        p.add_argument("--family", default="original", choices=["original", "simple"], help="tag family")
        p.add_argument("--mapping", help="tag mapping file for --family simple")

    p = sub.add_parser("variants", help="write all seven casing variants of every split")
    p.add_argument("input", help="data URI: a directory with train/dev/test files, demo:ner, hf:NAME")
    p.add_argument("out_dir", help="writes OUT_DIR/<family>/<variant>/<split>.conll")
    p.add_argument("--variant", action="append", choices=VARIANTS, help="only these variants (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="seed of the *-mix variants")
    corpus_args(p)
    p.set_defaults(func=cmd_variants)

    p = sub.add_parser("demo", help="generate (and optionally export) the demo corpora")
    p.add_argument("name", nargs="?", default="all", choices=["all", "ner", "textcls", "mlm"])
    p.add_argument("--out-dir", help="copy the corpus here (default: just build it in the cache)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("show", help="summarise a corpus: sizes, entity types or labels")
    p.add_argument("input")
    corpus_args(p)
    p.set_defaults(func=cmd_show)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
