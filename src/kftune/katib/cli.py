"""``kftune katib <subcommand>``: Katib experiments offline, locally and on a cluster.

Each subcommand is a module with ``main(argv: list[str]) -> int``, imported only when used; adding
one is a line in ``SUBCOMMANDS`` plus its module.
"""

from __future__ import annotations

import importlib

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "validate": (
        "kftune.katib.validate_cmd",
        "check Experiment files offline: Katib's admission rules and more",
    ),
    "serve": (
        "kftune.katib.service",
        "serve kftune's algorithms (asha, bohb, ...) over Katib's Suggestion gRPC API",
    ),
    "submit": (
        "kftune.katib.submit_cmd",
        "validate an Experiment file, create it on the cluster and follow it",
    ),
    "best": ("kftune.katib.best_cmd", "print an Experiment's status.currentOptimalTrial"),
}


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = ["usage: kftune katib <subcommand> [options]", "", "subcommands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in SUBCOMMANDS.items()]
    lines += ["", "Run `kftune katib <subcommand> --help` for its options."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        import sys

        print(
            f"kftune katib: error: unknown subcommand {name!r}; choose one of: {', '.join(SUBCOMMANDS)}",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)
