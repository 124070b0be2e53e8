"""``kftune report RUN_OR_DIR [--out DIR] [--title TEXT]``: the seed-style tables and plots of a run.

Reads a run directory (or a directory of run directories, or a ``kftune train`` output dir), writes
``report.md`` with its PNG plots, a self-contained ``report.html`` and ``report.json`` into
``RUN_OR_DIR/report/`` (or ``--out``), and prints their paths. Missing pieces (no search, one seed)
give the tables that can be made and a note; a path that is not a run directory is exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kftune.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(f"{message} (see `kftune report --help`)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="kftune report",
        description="write the seed-style tables and plots of a run directory as markdown, HTML and PNGs",
    )
    p.add_argument(
        "path", type=Path, metavar="RUN_OR_DIR", help="a run directory or a directory of run directories"
    )
    p.add_argument("--out", type=Path, help="output directory (default: RUN_OR_DIR/report)")
    p.add_argument("--title", help="the report's title (default: from run.json)")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from kftune.report.build import build_report

    report = build_report(args.path, title=args.title)
    out = args.out or args.path / "report"
    from kftune.report.render import write_report

    try:
        paths = write_report(report, out)
    except OSError as exc:
        raise UserError(
            f"cannot write the report to {out} ({exc.strerror or exc}): pass a writable --out DIR"
        ) from None
    print(f"markdown: {paths.markdown.resolve()}")
    print(f"html:     {paths.html.resolve()}")
    print(f"json:     {paths.json.resolve()}")
    for png in paths.images.values():
        print(f"plot:     {png.resolve()}")
    if report.notes:
        print(
            f"kftune report: {len(report.notes)} note(s) in the report (missing pieces, caveats)",
            file=sys.stderr,
        )
    return 0
