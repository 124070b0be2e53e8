"""Shared test fixtures.

Subprocesses started by tests (``python -m kftune ...``, trial processes of the local runner)
must import the package from *this* checkout, whatever is installed in the venv: put its ``src``
first on PYTHONPATH for the whole session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(SRC), str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_kftune(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600, check: bool = False
) -> subprocess.CompletedProcess:
    """Run ``python -m kftune ARGS`` in a fresh process and capture its output."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "kftune", *args],
        cwd=cwd,
        env=full_env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"kftune {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def kftune_cli():
    return run_kftune


@pytest.fixture(scope="session")
def kftune_home(tmp_path_factory) -> Path:
    """One KFTUNE_HOME for the whole session, so the tiny model and demo corpora are built once."""
    home = Path(os.environ.get("KFTUNE_TEST_HOME") or tmp_path_factory.mktemp("kftune-home"))
    os.environ["KFTUNE_HOME"] = str(home)
    return home
