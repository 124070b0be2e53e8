"""``kftune registry``: publish a run's best model to the MLflow Model Registry, or look at one.

    kftune registry register RUN_DIR --name NAME [--tracking-uri URI] [--alpha 0.05] [--force]
    kftune registry compare  RUN_DIR --name NAME [--tracking-uri URI]   # dry run: what register would do
    kftune registry show     NAME [--tracking-uri URI]

The tracking URI is ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``.
Exit codes: 0 done, 2 bad input (not a run directory, no completed seed, a bad name), 3 the MLflow
server did not answer (nothing registered; the command to run later is printed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kftune.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(f"{message} (see `kftune registry --help`)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="kftune registry",
        description="publish a run's best model to the MLflow Model Registry, or look at one",
    )
    sub = p.add_subparsers(dest="action", required=True, parser_class=_Parser)
    uri_help = "MLflow tracking/registry URI (default: MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db)"

    reg = sub.add_parser(
        "register", help="register the run's best seed; move 'champion' only if significantly better"
    )
    reg.add_argument(
        "run_dir",
        type=Path,
        metavar="RUN_DIR",
        help="a pipeline run directory (or a kftune train output dir)",
    )
    reg.add_argument("--name", required=True, help="registered model name, e.g. ner-original-uncased")
    reg.add_argument("--tracking-uri", help=uri_help)
    reg.add_argument(
        "--alpha", type=float, default=0.05, help="significance level of the champion test (default 0.05)"
    )
    reg.add_argument(
        "--experiment", help="MLflow experiment of the registration run (default: the run's pipeline)"
    )
    reg.add_argument(
        "--force", action="store_true", help="register again even if registry.json records this name"
    )
    reg.add_argument("--json", action="store_true", help="print the result as JSON")

    cmp_ = sub.add_parser("compare", help="dry run: compare with the current champion, register nothing")
    cmp_.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    cmp_.add_argument("--name", required=True)
    cmp_.add_argument("--tracking-uri", help=uri_help)
    cmp_.add_argument("--alpha", type=float, default=0.05)
    cmp_.add_argument("--json", action="store_true", help="print the decision as JSON")

    show = sub.add_parser("show", help="list a registered model's versions with aliases and metrics")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--tracking-uri", help=uri_help)
    show.add_argument("--json", action="store_true")
    return p  # fmt: skip


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise UserError(f"--alpha must be between 0 and 1 (exclusive), got {alpha}")


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from kftune.registry import publish

    if args.action == "register":
        _check_alpha(args.alpha)
        r = publish.register(
            args.run_dir, name=args.name, tracking_uri=args.tracking_uri, alpha=args.alpha, force=args.force,
            experiment=args.experiment,
        )  # fmt: skip
        if args.json:
            print(json.dumps({**r.to_dict(), "already_registered": r.already_registered}, indent=1))
            return 0
        if r.already_registered:
            print(
                f"{r.name} version {r.version} already holds {args.run_dir} (registry.json); --force registers it again"
            )
        else:
            print(f"registered {r.model_uri} (seed {r.seed} of {', '.join(map(str, r.scores))}) as {r.alias}")
        print(f"reason: {r.reason}")
        print(f"load: models:/{r.name}@{r.alias}   run: {r.run_id}   at {r.tracking_uri}")
        if not r.already_registered:
            print(f"wrote {args.run_dir / publish.REGISTRY_JSON}", file=sys.stderr)
        return 0
    if args.action == "compare":
        _check_alpha(args.alpha)
        plan = publish.plan_registration(
            args.run_dir, name=args.name, tracking_uri=args.tracking_uri, alpha=args.alpha
        )
        d = plan.decision
        if args.json:
            print(json.dumps({"name": plan.name, "seed": plan.seed, "champion_version": plan.champion_version,
                              **d.to_dict()}, indent=1))  # fmt: skip
            return 0
        scores = ", ".join(f"seed {s}: {v:.4f}" for s, v in d.scores.items())
        print(f"{plan.run_dir.path}: {d.metric} {scores}; would publish seed {plan.seed}")
        if d.champion_scores is not None:
            champ = ", ".join(f"seed {s}: {v:.4f}" for s, v in d.champion_scores.items()) or "none recorded"
            print(f"champion v{plan.champion_version} of {plan.name}: {champ}")
        for c in plan.comparisons:
            print(f"vs {c.against} ({c.metric}): {c.comparison.summary()}")
        print(f"would become: {d.alias} ({d.reason}); nothing was registered")
        return 0
    versions = publish.list_versions(args.name, tracking_uri=args.tracking_uri)
    if args.json:
        print(json.dumps([{"version": v.version, "aliases": v.aliases, "run_id": v.run_id, "tags": v.tags}
                          for v in versions], indent=1))  # fmt: skip
        return 0
    print(publish.format_versions(args.name, versions))
    return 0
