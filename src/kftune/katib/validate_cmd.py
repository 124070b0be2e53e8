"""``kftune katib validate FILE|DIR...``: check Katib Experiment files offline.

Exit status: 0 when there is no error (warnings alone do not fail), 1 when any document has an
error, 2 for a usage error (a path that does not exist, an unreadable --katib-config).
"""

from __future__ import annotations

import argparse
import json
import sys

from kftune.katib.findings import Options
from kftune.katib.katib_config import KatibConfig
from kftune.katib.validator import format_text, validate_paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kftune katib validate",
        description="Check Katib Experiment YAML files offline: every rule of Katib's admission webhook, the "
        "suggestion services' settings checks, and what Katib misses (see kftune.katib.validator).",
    )
    p.add_argument(
        "paths", nargs="+", metavar="FILE|DIR", help="Experiment YAML files or directories of them"
    )
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    p.add_argument(
        "--katib-config",
        metavar="FILE",
        help="the cluster's katib-config ConfigMap or KatibConfig "
        "(default: Katib's standard one plus kftune's asha and bohb)",
    )
    p.add_argument(
        "--kube-version", default="1.30", help="Kubernetes version for the Job schema (default 1.30)"
    )
    p.add_argument(
        "--no-algorithm-settings",
        action="store_true",
        help="skip the suggestion services' settings checks (kftune.hpo)",
    )
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    config = KatibConfig.load(args.katib_config) if args.katib_config else KatibConfig()
    options = Options(
        config, kube_version=args.kube_version, check_algorithm_settings=not args.no_algorithm_settings
    )
    report = validate_paths(args.paths, options)
    if args.format == "json":
        json.dump(report.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_text(report))
    return report.exit_code
