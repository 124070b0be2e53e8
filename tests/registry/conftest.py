"""Fixtures for the registry/tracking tests: one real ``mlflow server`` for the whole session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from registry_server import _free_port

MLFLOW_BIN = Path(sys.executable).with_name("mlflow")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """``http://127.0.0.1:PORT`` of a real mlflow server, up for the whole session."""
    base = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    log = open(base / "server.log", "w")  # noqa: SIM115 (closed at teardown)
    proc = subprocess.Popen(
        [
            str(MLFLOW_BIN),
            "server",
            "--backend-store-uri",
            f"sqlite:///{base / 'mlflow.db'}",
            "--artifacts-destination",
            str(base / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=base,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(base / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("mlflow server did not answer /health within 90 s")
            time.sleep(0.3)
        yield url
    finally:
        with_pgid = proc.pid
        try:
            os.killpg(with_pgid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(with_pgid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()
