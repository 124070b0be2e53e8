"""The ``kftune`` command.

Each subcommand lives in its own module and is imported only when used, so that
``kftune katib validate`` does not pay for importing torch. A subcommand module exposes
``main(argv: list[str]) -> int``.
"""

from __future__ import annotations

import importlib
import sys

from kftune import __version__
from kftune.errors import UserError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("kftune.train.cli", "run one trial: fine-tune a model, print metric lines, checkpoint"),
    "evaluate": ("kftune.evaluate.cli", "evaluate a trained model on every casing variant of dev/test"),
    "data": ("kftune.data.cli", "data tools: casing variants, tag families, demo corpora"),
    "model": ("kftune.train.models_cli", "model tools: build the tiny demo model, resolve names"),
    "baseline": ("kftune.train.baseline", "simple baselines (TF-IDF + LR, boosted trees, token-level NER)"),
    "track": ("kftune.registry.track_cli", "tracking tools: sync metrics kept locally to an MLflow server"),
    "katib": ("kftune.katib.cli", "Katib experiments: validate, run locally, serve suggestions, submit"),
    "pipeline": ("kftune.pipelines_cli", "Kubeflow Pipelines: compile, run locally, submit"),
    "registry": ("kftune.registry.cli", "MLflow model registry: register, compare with champion"),
    "report": ("kftune.report.cli", "write the seed-style tables and plots for a run"),
    "demo": ("kftune.demo", "the local end-to-end demo behind `make demo`"),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = [f"usage: kftune <command> [options]   (kftune {__version__})", "", "commands:"]
    for name, (_, text) in COMMANDS.items():
        lines.append(f"  {name:<{width}}  {text}")
    lines += ["", "Run `kftune <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"kftune {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(
            f"kftune: error: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr
        )
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.main(rest) or 0)
    except UserError as exc:
        print(f"kftune {name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"kftune {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
