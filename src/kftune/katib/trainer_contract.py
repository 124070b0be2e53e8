"""The ``kftune train`` command line as docs/contracts.md pins it, for offline checks of templates.

The validator uses this to find the trainer in a trial's argv (``kftune train ...``,
``python -m kftune train ...``, ``torchrun ... -m kftune train ...``) and to check its flags before
a pod ever starts. Keep it in step with docs/contracts.md ("Trial argv").
"""

from __future__ import annotations

import os
from dataclasses import dataclass

VARIANTS = (
    "cased",
    "uncased",
    "uncased-cased-mix",
    "uncased-cased-both",
    "ne-lower",
    "ne-lower-cased-mix",
    "ne-lower-cased-both",
)

# flag -> "int" | "float" | "str" | tuple of allowed values
FLAGS: dict[str, str | tuple[str, ...]] = {
    "--task": ("ner", "seqcls", "mlm"),
    "--data": "str",
    "--model": "str",
    "--output-dir": "str",
    "--config": "str",
    "--learning-rate": "float",
    "--weight-decay": "float",
    "--warmup-ratio": "float",
    "--attention-dropout": "float",
    "--hidden-dropout": "float",
    "--per-device-train-batch-size": "int",
    "--num-epochs": "int",
    "--schedule-epochs": "int",
    "--seed": "int",
    "--lr-scheduler": ("linear", "cosine", "constant", "cosine_with_restarts"),
    "--optimizer": ("adamw", "adafactor", "sgd"),
    "--max-grad-norm": "float",
    "--gradient-accumulation-steps": "int",
    "--label-smoothing": "float",
    "--max-length": "int",
    "--precision": ("auto", "fp32", "fp16", "bf16"),
    "--tag-family": ("original", "simple"),
    "--mapping": "str",
    "--train-variant": VARIANTS,
    "--eval-variant": VARIANTS,
    "--resume-from": "str",
    "--keep": ("none", "best", "last", "both"),
    "--experiment": "str",
    "--trial": "str",
}
SWITCHES: tuple[str, ...] = ("--auto-batch-size", "--log-model")


def _add_trainer_flags() -> None:
    """Add the further options the trainer defines (``kftune.train.args``, torch-free), e.g.
    ``--max-train-samples`` and ``--tracking``; the table above stays the contract's core."""
    global SWITCHES
    try:
        from kftune.train.args import _field_type, _flag, cli_fields
    except ImportError:  # pragma: no cover - the trainer is part of the package
        return
    for f in cli_fields():
        flag, kind = _flag(f.name), _field_type(f)
        if kind is bool:
            if flag not in SWITCHES:
                SWITCHES = (*SWITCHES, flag)
        elif flag not in FLAGS:
            choices = f.metadata.get("choices")
            FLAGS[flag] = tuple(choices) if choices else {int: "int", float: "float"}.get(kind, "str")


_add_trainer_flags()
REQUIRED = ("--task", "--data", "--model", "--output-dir")
TRAINER_IMAGE = "ghcr.io/kftune/trainer"


@dataclass(frozen=True)
class TrainerArg:
    flag: str
    value: str | None  # None for switches and for a flag with its value missing
    index: int  # index of the flag in the container's command + args


def trainer_start(argv: list[str]) -> int | None:
    """Index of the first trainer argument in ``argv``, or None when argv does not run ``kftune train``."""
    for i in range(1, len(argv)):
        if argv[i] == "train" and os.path.basename(argv[i - 1]) == "kftune":
            return i + 1
    return None


def parse_trainer_args(argv: list[str], start: int) -> tuple[list[TrainerArg], list[tuple[int, str]]]:
    """``--flag value`` / ``--flag=value`` pairs after ``start``, and the (index, text) of stray tokens."""
    args: list[TrainerArg] = []
    stray: list[tuple[int, str]] = []
    i = start
    while i < len(argv):
        token = argv[i]
        if token.startswith("--"):
            flag, eq, value = token.partition("=")
            if eq:
                args.append(TrainerArg(flag, value, i))
            elif flag in SWITCHES:
                args.append(TrainerArg(flag, None, i))
            elif i + 1 < len(argv) and not (argv[i + 1].startswith("--") and argv[i + 1] != "--"):
                args.append(TrainerArg(flag, argv[i + 1], i))
                i += 1
            else:
                args.append(TrainerArg(flag, None, i))
        else:
            stray.append((i, token))
        i += 1
    return args, stray
