"""The chart's MLflow server, run for real: the rendered command line against PostgreSQL and S3.

The test renders the chart with its default values (bundled PostgreSQL and MinIO), takes the MLflow
container's command, args and env, and the bucket init container's, and runs them here. Nothing is
rewritten except what `LOCAL_SWAPS` lists (host, ports, in-cluster service addresses, the mounted
script path), and every swap must match exactly once, so a change to the rendered command line
either still runs or fails here. Secrets the chart references by name get the values in `SECRETS`.

- PostgreSQL: the local server binaries, started as the non-root `postgres` user (runuser), with
  password authentication over TCP, so the chart's PGPASSWORD wiring is what gets the server in.
- S3: moto's server on 127.0.0.1 stands in for the bundled MinIO; the chart's init container
  command creates the bucket.

`mlflow_server` is a module fixture that yields the tracking URI: a `kftune train --log-model` run
can be added next to the client test below.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kftune_chart import CHART_DIR, container, one, render_docs
from pg_server import Postgres, postgres_server

pytestmark = [pytest.mark.server, pytest.mark.timeout(180)]

VENV_BIN = Path(sys.executable).parent
SECRETS = {
    ("kftune-postgres", "password"): "pg-test-password-7f3a",
    ("kftune-s3", "AWS_ACCESS_KEY_ID"): "kftune-test",
    ("kftune-s3", "AWS_SECRET_ACCESS_KEY"): "kftune-test-secret",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(
    url: str, timeout: float, proc: subprocess.Popen | None = None, headers: dict | None = None
) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer 200 within {timeout} s: {last}")


def stop(proc: subprocess.Popen) -> None:
    """Stop a process this test started, and its children (it leads its own session)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


# ---- PostgreSQL --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    docs = render_docs()
    pg_env = {
        e["name"]: e for e in container(one(docs, "StatefulSet", "kftune-postgresql"), "postgresql")["env"]
    }
    mlflow = one(docs, "Deployment", "kftune-mlflow")
    return {
        "mlflow": container(mlflow, "mlflow"),
        "ensure_bucket": container(mlflow, "ensure-bucket"),
        "pg_user": pg_env["POSTGRES_USER"]["value"],
        "pg_db": pg_env["POSTGRES_DB"]["value"],
        "pg_password_ref": (
            pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"],
            pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"],
        ),
    }


@pytest.fixture(scope="module")
def postgres(rendered) -> Iterator[Postgres]:
    """The chart's user, database and password secret; scram authentication over TCP."""
    with postgres_server(rendered["pg_user"], rendered["pg_db"], SECRETS[rendered["pg_password_ref"]]) as pg:
        yield pg


# ---- S3 (moto) ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory) -> Iterator[str]:
    moto = VENV_BIN / "moto_server"
    if not moto.exists():
        pytest.skip("moto[server] is not installed (dev dependency)")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=fh, stderr=fh,
                                start_new_session=True)  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/moto-api/", 30, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


# ---- the chart's command lines, made local ---------------------------------------------------


@dataclass
class Local:
    pg_port: int
    s3_url: str
    mlflow_port: int

    def swaps(self) -> list[tuple[str, str, str]]:
        """(where, rendered text, local text): the only differences from what the chart renders."""
        return [
            ("arg", "--host=0.0.0.0", "--host=127.0.0.1"),
            ("arg", "--port=5000", f"--port={self.mlflow_port}"),
            ("arg-part", "@kftune-postgresql:5432/", f"@127.0.0.1:{self.pg_port}/"),
            ("env", "MLFLOW_S3_ENDPOINT_URL", self.s3_url),
            ("arg", "/scripts/ensure_bucket.py", str(CHART_DIR / "files" / "ensure_bucket.py")),
        ]


def localize(
    c: dict[str, Any], swaps: list[tuple[str, str, str]]
) -> tuple[list[str], dict[str, str], set[str]]:
    """argv and env of a rendered container with the swaps applied; returns the swaps that matched."""
    argv = list(c.get("command") or []) + list(c.get("args") or [])
    env: dict[str, str] = {}
    for e in c.get("env") or []:
        if "value" in e:
            env[e["name"]] = str(e["value"])
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = SECRETS[(ref["name"], ref["key"])]
    used: set[str] = set()
    for where, old, new in swaps:
        if where == "arg":
            hits = [i for i, a in enumerate(argv) if a == old]
            for i in hits:
                argv[i] = new
        elif where == "arg-part":
            hits = [i for i, a in enumerate(argv) if old in a]
            for i in hits:
                argv[i] = argv[i].replace(old, new)
        else:
            hits = [old] if old in env else []
            if hits:
                env[old] = new
        assert len(hits) <= 1, f"swap {old!r} matched {len(hits)} times in {argv}"
        if hits:
            used.add(old)
    # The executable the image puts on PATH comes from this venv here.
    assert argv[0] in ("mlflow", "python"), argv
    argv[0] = str(VENV_BIN / argv[0]) if (VENV_BIN / argv[0]).exists() else sys.executable
    base = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ") if k in os.environ}
    return argv, {**base, **env}, used


@pytest.fixture(scope="module")
def mlflow_server(rendered, postgres, s3_endpoint, tmp_path_factory) -> Iterator[str]:
    """Start the chart's MLflow command line; yield its tracking URI."""
    local = Local(postgres.port, s3_endpoint, free_port())
    swaps = local.swaps()

    # 1. the init container: creates the bucket on the S3 endpoint
    argv, env, used_init = localize(rendered["ensure_bucket"], swaps)
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "bucket mlflow: created"

    # 2. the server
    argv, env, used = localize(rendered["mlflow"], swaps)
    assert used | used_init == {old for _, old, _ in swaps}, "every swap must match the rendered chart"
    assert env["PGPASSWORD"] == postgres.password and "MLFLOW_BACKEND_STORE_URI" not in env
    log = tmp_path_factory.mktemp("mlflow") / "server.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{local.mlflow_port}"
    try:
        try:
            wait_http(f"{uri}/health", 90, proc)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"{exc}\n{argv}\n--- server log ---\n{log.read_text()[-4000:]}")
        yield uri
    finally:
        stop(proc)


# ---- tests ---------------------------------------------------------------------------------


def api_status(uri: str, host: str) -> int:
    req = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", headers={"Host": host}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_service_dns_names_are_allowed_hosts_and_others_are_not(mlflow_server):
    # Clients in the cluster send the Service's names as Host; MLflow 3 answers 403 to names it
    # was not told about (DNS-rebinding protection). --allowed-hosts from the chart must cover them.
    for host in (
        "kftune-mlflow:5000",
        "kftune-mlflow.kftune:5000",
        "kftune-mlflow.kftune.svc.cluster.local:5000",
    ):
        assert api_status(mlflow_server, host) == 200, host
    assert api_status(mlflow_server, "mlflow.attacker.example:5000") == 403


def test_run_with_model_lands_in_postgres_and_the_bucket(mlflow_server, postgres, s3_endpoint, monkeypatch):
    # The client has only the tracking URI: artifacts go through the server (--serve-artifacts).
    for var in list(os.environ):
        if var.startswith(("AWS_", "MLFLOW_")):
            monkeypatch.delenv(var)
    import boto3
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(mlflow_server)
    try:
        mlflow.set_experiment("kftune-chart-test")
        x = np.array([[0.0, 1.0], [1.0, 0.0], [0.9, 0.1], [0.1, 0.8]])
        y = np.array([0, 1, 1, 0])
        with mlflow.start_run() as run:
            mlflow.log_param("learning_rate", 3e-3)
            mlflow.log_metric("eval_f1", 0.873, step=2)
            info = mlflow.sklearn.log_model(
                LogisticRegression().fit(x, y),
                name="model",
                pip_requirements=["scikit-learn"],
                registered_model_name="kftune-chart-test",
            )
        loaded = mlflow.pyfunc.load_model(info.model_uri)
        assert list(loaded.predict(x)) == list(LogisticRegression().fit(x, y).predict(x))
    finally:
        mlflow.set_tracking_uri(None)

    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=SECRETS[("kftune-s3", "AWS_ACCESS_KEY_ID")],
        aws_secret_access_key=SECRETS[("kftune-s3", "AWS_SECRET_ACCESS_KEY")],
        region_name="us-east-1",
    )
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mlflow", Prefix="artifacts/").get("Contents", [])]
    assert any(k.endswith("/MLmodel") for k in keys), keys
    metadata = ("MLmodel", "conda.yaml", "python_env.yaml", "requirements.txt", "input_example.json")
    assert [k for k in keys if not k.endswith(metadata)], f"no serialized model among {keys}"

    with postgres.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (run.info.run_id,))
        assert cur.fetchone() == ("FINISHED",)
        cur.execute(
            "SELECT value FROM latest_metrics WHERE run_uuid = %s AND key = 'eval_f1'", (run.info.run_id,)
        )
        assert cur.fetchone()[0] == pytest.approx(0.873)
        cur.execute("SELECT name FROM registered_models")
        assert ("kftune-chart-test",) in cur.fetchall()


def test_kftune_train_tracks_into_the_charts_server(
    mlflow_server, postgres, s3_endpoint, kftune_cli, kftune_home, tmp_path
):
    """Issue #6 point 4: a real `kftune train --log-model` run against the chart's command line."""
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "KFTUNE_TRACKING": "on"}
    env.update(
        {var: "" for var in os.environ if var.startswith("AWS_")}
    )  # the client needs no S3 credentials
    out = tmp_path / "trial"
    proc = kftune_cli(
        "train",
        "--task",
        "ner",
        "--data",
        "demo:ner",
        "--model",
        "tiny",
        "--num-epochs",
        "1",
        "--max-train-samples",
        "200",
        "--max-eval-samples",
        "80",
        "--learning-rate",
        "1e-3",
        "--max-length",
        "48",
        "--output-dir",
        str(out),
        "--experiment",
        "chart-train",
        "--trial",
        "t1",
        "--log-model",
        "--num-threads",
        "1",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MLflow tracking at" not in proc.stderr, proc.stderr[-3000:]
    with postgres.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT r.run_uuid, r.status FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id "
            "WHERE e.name = 'chart-train'"
        )
        rows = cur.fetchall()
        assert len(rows) == 1 and rows[0][1] == "FINISHED"
        run_id = rows[0][0]
        cur.execute("SELECT key FROM latest_metrics WHERE run_uuid = %s", (run_id,))
        assert {"eval_f1", "eval_loss"} <= {r[0] for r in cur.fetchall()}
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=SECRETS[("kftune-s3", "AWS_ACCESS_KEY_ID")],
        aws_secret_access_key=SECRETS[("kftune-s3", "AWS_SECRET_ACCESS_KEY")],
        region_name="us-east-1",
    )
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mlflow", Prefix="artifacts/").get("Contents", [])]
    ours = [k for k in keys if f"/{run_id}/" in k]
    assert any(k.endswith("metrics.json") for k in ours), ours
    assert any(k.endswith(".safetensors") for k in ours), f"model weights missing from the bucket: {ours}"
