"""``kftune model``: build the tiny demo model, resolve model names to directories."""

from __future__ import annotations

import argparse

from kftune.train.models import resolve_model


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kftune model", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("resolve", help="print the local directory a --model value resolves to (builds tiny)")
    p.add_argument("name")
    args = parser.parse_args(argv)
    print(resolve_model(args.name))
    return 0
