"""``kftune track``: tools for the local tracking spools (see ``kftune.registry.tracking``).

``kftune track sync DIR [DIR ...]`` replays the events kept in ``DIR/tracking/`` (a trial output
dir) or in every ``*/tracking/`` below DIR (a parent of many trials) to the current tracking URI
(``MLFLOW_TRACKING_URI``, ``--tracking-uri``, or the default SQLite file). Events already
delivered there are skipped, so re-running adds nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kftune.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, through the CLI's UserError handling
        raise UserError(f"{message} (see `kftune track --help`)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kftune track", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True, parser_class=_Parser)
    sync = sub.add_parser("sync", help="upload locally kept tracking events to the MLflow tracking URI")
    sync.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="trial output dir or a parent dir")
    sync.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db")
    sync.add_argument(
        "--unfinished",
        choices=("leave", "KILLED", "FAILED"),
        default="leave",
        help="what to do with runs whose process never ended them (default: leave them RUNNING)",
    )
    return parser


def _sync(args: argparse.Namespace) -> int:
    from kftune.registry import tracking

    spools = []
    for directory in args.dirs:
        if not directory.is_dir():
            raise UserError(
                f"{directory} is not a directory: pass a trial output dir or a parent of trial dirs"
            )
        found = tracking.find_spools(directory)
        if not found:
            raise UserError(
                f"no tracking spools under {directory} (looked for {directory}/**/tracking/run-*.jsonl): "
                "pass the output dir of a trial that ran with kftune"
            )
        spools += found
    uri = args.tracking_uri or tracking.default_tracking_uri()
    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        store = tracking.Store(uri)
    except Exception as exc:
        raise UserError(
            f"cannot reach the MLflow tracking store {tracking.uri_key(uri)} "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}): start it, or set MLFLOW_TRACKING_URI"
        ) from None
    unfinished = None if args.unfinished == "leave" else args.unfinished
    failed = 0
    counts = {"created": 0, "updated": 0, "up to date": 0}
    for spool in spools:
        try:
            result = tracking.sync_spool(spool, store, unfinished=unfinished)
        except Exception as exc:
            result = tracking.SyncResult(spool.path, None, 0, "failed", f"{type(exc).__name__}: {exc}")
        if result.action == "failed":
            failed += 1
            msg = " ".join(result.error.split())[:300]
            print(f"kftune track sync: error: {spool.path}: {msg}", file=sys.stderr)
            continue
        counts[result.action] += 1
        print(f"{result.action}: {spool.path} -> run {result.run_id} ({result.delivered} events)")
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    print(f"synced {len(spools) - failed} of {len(spools)} spools to {tracking.uri_key(uri)}: {summary}")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.action == "sync":
        return _sync(args)
    return 2
