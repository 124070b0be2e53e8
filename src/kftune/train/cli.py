"""``kftune train``: one trial (docs/contracts.md, "Trial argv").

Order of work: parse and validate the arguments, read the data, resolve the model name — all
before torch is imported or a model is loaded, so bad input fails fast with one line (exit 2).
Then the trial runs with stdout reserved for metric lines: file descriptor 1 is pointed at
stderr for the duration, so nothing a library prints (progress bars, load reports, warnings,
C++ messages) can end up between the metric lines.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TextIO

from kftune.train.args import TrainArgs, parse_args, validate


def load_inputs(args: TrainArgs):
    """Data and model directory, checked before any model is loaded (UserError on bad input)."""
    from kftune.data import load_corpus
    from kftune.train.models import resolve_model

    corpus = load_corpus(args.data, args.task, family=args.tag_family, mapping=args.mapping)
    for split in ("train", "dev"):
        if not corpus.splits.get(split):
            from kftune.errors import UserError

            raise UserError(f"{args.data}: the {split} split is empty: a trial needs train and dev examples")
    model_dir = resolve_model(args.model)
    return corpus, model_dir


def quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


@contextlib.contextmanager
def stdout_for_metrics() -> Iterator[TextIO]:
    """Yield a stream on the real stdout; everything else written to stdout goes to stderr."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no usable fd 1: nothing to protect
        yield sys.stdout
        return
    metric = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    old = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield metric
    finally:
        metric.flush()
        metric.close()
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)
        sys.stdout = old


def run_trial(args: TrainArgs, metric_out: TextIO, corpus=None, model_dir: str | None = None) -> int:
    """Run a validated trial in this process, metric lines to ``metric_out``; returns the exit code."""
    if corpus is None or model_dir is None:
        corpus, model_dir = load_inputs(args)
    quiet_libraries()
    from kftune.train.trainer import Trial

    return Trial(args, corpus, model_dir, metric_out).run()


def supervised(argv: list[str], args: TrainArgs) -> int | None:
    """With ``KFTUNE_STALL_TIMEOUT_S`` > 0 (and not already the watched child): run this very trial
    as a child process under the stall watchdog (kftune.train.watchdog) and return its exit code;
    else None (run it here)."""
    from pathlib import Path

    from kftune.train import watchdog

    if os.environ.get(watchdog.CHILD_ENV) == "1":
        return None
    stall = watchdog.stall_timeout()
    if stall <= 0:
        return None
    world = os.environ.get("WORLD_SIZE", "1").strip()
    if world.isdigit() and int(world) > 1:
        # one rank cannot be restarted alone (it could not rejoin the others): under torchrun a
        # hung collective ends in NCCL's timeout, and torchrun's --max-restarts restarts the lot
        if os.environ.get("RANK", "0") == "0":
            print(
                f"[kftune train] {watchdog.STALL_ENV} is not applied to a distributed trial "
                f"(WORLD_SIZE={world}): use torchrun --max-restarts and the NCCL timeout",
                file=sys.stderr,
                flush=True,
            )
        return None
    return watchdog.supervise(
        [sys.executable, "-m", "kftune", "train", *argv],
        Path(args.output_dir),
        what=f"trial {args.trial_name}",
        stall_s=stall,
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    validate(args)
    code = supervised(argv, args)
    if code is not None:
        return code
    corpus, model_dir = load_inputs(args)
    with stdout_for_metrics() as out:
        return run_trial(args, out, corpus, model_dir)
