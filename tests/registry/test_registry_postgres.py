"""The registry on an MLflow server backed by PostgreSQL (the chart's production setup).

PostgreSQL comes from the local server binaries, started as the non-root ``postgres`` user (via
``runuser`` when the tests run as root) on a free port in a temp dir; an ``mlflow server`` uses it
through ``postgresql+psycopg2://``. Both are stopped and the dirs removed even when a test fails.
PostgreSQL enforces MLflow's column sizes (descriptions are ``varchar(5000)``), which SQLite ignores:
a model card too long for the description would fail here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pg_server import postgres_server
from registry_server import _free_port
from test_registry_rundirs import build_run, copy_run, shared_base

from kftune.registry.decision import CHALLENGER, CHAMPION
from kftune.registry.modelcard import DESCRIPTION_LIMIT, parse_front_matter

pytestmark = pytest.mark.server

MLFLOW_BIN = Path(sys.executable).with_name("mlflow")
NAME = "ner-tiny-pg"


def _wait_health(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"mlflow server did not answer {url}/health in {timeout:.0f} s: {log.read_text()[-3000:]}"
            )
        time.sleep(0.3)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 3 s: uvicorn's graceful shutdown waits for the test client's
    keep-alive connections, and the server has nothing to flush (the data is in PostgreSQL)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def postgres_url():
    """``postgresql+psycopg2://`` URL of a fresh database on a PostgreSQL started for this module."""
    with postgres_server("mlflow", "mlflow") as pg:
        yield pg.url


@pytest.fixture(scope="module")
def pg_mlflow(postgres_url, tmp_path_factory):
    """``http://127.0.0.1:PORT`` of an mlflow server whose backend store is the PostgreSQL above."""
    base = tmp_path_factory.mktemp("mlflow-pg")
    port = _free_port()
    log_path = base / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(MLFLOW_BIN), "server", "--backend-store-uri", postgres_url,
             "--artifacts-destination", str(base / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, cwd=base, start_new_session=True,
            env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_health(url, proc, log_path)
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory, kftune_home):
    return build_run(shared_base(tmp_path_factory))


def test_register_champion_then_challenger_on_postgres(pg_mlflow, ner_run, tmp_path, kftune_cli):
    import mlflow
    from mlflow import MlflowClient

    from kftune.registry import register

    first = register(copy_run(ner_run, tmp_path / "first"), name=NAME, tracking_uri=pg_mlflow)
    assert (first.version, first.alias, first.reason) == ("1", CHAMPION, "no champion yet")
    second = register(
        copy_run(ner_run, tmp_path / "second", test_shift={1: 0.001, 2: -0.002, 3: 0.0005}),
        name=NAME,
        tracking_uri=pg_mlflow,
    )
    assert second.alias == CHALLENGER and "not shown better than champion v1" in second.reason
    client = MlflowClient(pg_mlflow)
    assert dict(client.get_registered_model(NAME).aliases) == {CHAMPION: "1", CHALLENGER: "2"}
    for v in ("1", "2"):
        mv = client.get_model_version(NAME, v)
        assert 0 < len(mv.description) <= DESCRIPTION_LIMIT
        scores = json.loads(mv.tags["kftune.seed_scores"])["test_f1"]
        assert set(scores) == {"1", "2", "3"}
    card_path = mlflow.artifacts.download_artifacts(
        f"runs:/{second.run_id}/README.md", tracking_uri=pg_mlflow
    )
    card = Path(card_path).read_text()
    assert len(card) > DESCRIPTION_LIMIT  # the full card would not fit a description column
    assert parse_front_matter(card)["kftune"]["alias"] == CHALLENGER and "vs champion v1 (test F1)" in card

    # the limit is real here (SQLite would accept it): a description one character too long fails
    with pytest.raises(Exception, match="(?i)too long|truncat|5000"):
        client.update_model_version(NAME, "1", description="x" * (DESCRIPTION_LIMIT + 1))

    proc = kftune_cli("registry", "show", NAME, "--tracking-uri", pg_mlflow)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0] == f"{NAME}: 2 versions, champion v1"
