"""Fixtures for trainer tests: the tiny model, small NER/seqcls/MLM runs, shared trained outputs.

Runs are small (a few hundred sentences, max length 48, 1-2 epochs, one torch thread: on a
shared 2-core host two spinning OpenMP threads are several times slower than one) and most run in-process
through ``run_trial`` (torch is imported once per session); the ones that test what a separate
process sees (stdout, exit codes, signals, fresh reloads) go through the real CLI.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SMALL = [
    "--data", "demo:ner", "--model", "tiny", "--learning-rate", "2e-3", "--max-train-samples", "240",
    "--max-eval-samples", "80", "--max-length", "48", "--per-device-train-batch-size", "8",
    "--tracking", "off", "--seed", "7", "--num-threads", "1",
]  # fmt: skip


def ner_argv(out: Path, *extra: str) -> list[str]:
    return ["--task", "ner", "--output-dir", str(out), *SMALL, *extra]


def train_in_process(argv: list[str]) -> tuple[int, list[str]]:
    """Parse, validate and run a trial here; returns (exit code, metric lines)."""
    from kftune.train.args import parse_args, validate
    from kftune.train.cli import run_trial

    args = parse_args(argv)
    validate(args)
    out = io.StringIO()
    code = run_trial(args, out)
    return code, out.getvalue().splitlines()


def cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m kftune ARGS`` in a fresh process (PYTHONPATH is set by the top conftest)."""
    return subprocess.run(
        [sys.executable, "-m", "kftune", *args],
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def read_metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="session")
def tiny(kftune_home) -> str:
    import torch

    from kftune.train.models import resolve_model

    torch.set_num_threads(1)  # in-process evaluation in tests: see the module docstring

    return resolve_model("tiny")


@pytest.fixture(scope="session")
def cli_run(tmp_path_factory, tiny):
    """One real `kftune train` subprocess (2 epochs); its output dir, stdout and stderr are shared."""
    out = tmp_path_factory.mktemp("cli-run") / "trial"
    proc = cli("train", *ner_argv(out, "--num-epochs", "2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


@pytest.fixture
def h(kftune_home):
    """The helpers above, for test modules (tests/ is not a package)."""

    class Helpers:
        SMALL = SMALL
        ner_argv = staticmethod(ner_argv)
        train = staticmethod(train_in_process)
        cli = staticmethod(cli)
        metrics = staticmethod(read_metrics)

    return Helpers
