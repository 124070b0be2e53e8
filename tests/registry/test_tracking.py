"""Tracking: one MLflow run per invocation, a local spool, never fatal, ``kftune track sync``.

The ``server`` tests start one real ``mlflow server`` (SQLite backend in a temp dir, free port on
127.0.0.1) for the whole session and stop it at the end, even on failure.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from registry_server import _free_port

from kftune.registry import tracking
from kftune.registry.tracking import Spool, Tracker, find_spools, flatten_params

ROOT = Path(__file__).resolve().parents[2]


def _tiny_model(directory: Path, task: str) -> Path:
    """A ~10 k-parameter BERT with a head for ``task``, saved as a normal HF model dir."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertForTokenClassification,
        BertTokenizerFast,
    )

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
        "john",
        "smith",
        "lives",
        "in",
        "paris",
        "great",
        "bad",
    ]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True)
    labels = ["O", "B-PER", "I-PER"] if task == "ner" else ["neg", "pos"]
    cfg = BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(0)
    cls = BertForTokenClassification if task == "ner" else BertForSequenceClassification
    out = directory / "model"
    cls(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


# ------------------------------------------------------------------------------------------------
# local behaviour (no server)


def test_flatten_params_limits_and_keys():
    flat = flatten_params(
        {"lr": 1e-3, "opt": {"name": "adamw", "betas": [0.9, 0.99]}, "bad key!": "x" * 7000, "p": Path("/a")}
    )
    assert flat["lr"] == "0.001"
    assert flat["opt.name"] == "adamw"
    assert flat["opt.betas"] == "[0.9, 0.99]"
    assert flat["p"] == "/a"
    assert len(flat["bad key_"]) == tracking.MAX_PARAM_VALUE and flat["bad key_"].endswith("...")
    assert tracking.clean_key("k" * 300) == "k" * 250


def test_default_uri_is_sqlite_in_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.default_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert tracking.default_tracking_uri() == "http://mlflow:5000"
    assert tracking.uri_key("https://user:secret@host/x") == "https://host/x"


def test_tracking_off_writes_only_the_spool(tmp_path):
    """KFTUNE_TRACKING=off: no MLflow import, no warning, the full event log on disk."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from kftune.registry.tracking import Tracker\n"
        "with Tracker.start(Path(sys.argv[1]), experiment='e', run_name='r', tags={'kftune.seed': '3'},"
        " params={'lr': 0.1}) as t:\n"
        "    t.log_metrics({'eval_f1': 0.5, 'eval_loss': float('nan'), 'skip': 'text'}, step=1)\n"
        "    t.log_artifact(Path(sys.argv[1]) / 'metrics.json')\n"
        "assert 'mlflow' not in sys.modules\n"
    )
    out = tmp_path / "trial"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    env = dict(os.environ, KFTUNE_TRACKING="off", KFTUNE_GIT_SHA="abc123")
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out)], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and "warning" not in proc.stderr
    (spool,) = find_spools(tmp_path)
    events = spool.events()
    assert [e["event"] for e in events] == ["start", "metrics", "artifact", "end"]
    assert [e["seq"] for e in events] == [0, 1, 2, 3]
    start = events[0]
    assert start["params"] == {"lr": "0.1"}
    assert start["tags"]["kftune.seed"] == "3"
    assert start["tags"]["kftune.git_sha"] == "abc123"  # tmp_path is not a git repo: env var
    assert start["tags"]["kftune.experiment"] == "e"
    assert events[1]["metrics"]["eval_f1"] == 0.5 and "skip" not in events[1]["metrics"]
    assert events[2]["rel"] == "metrics.json"
    assert events[3]["status"] == "FINISHED"
    assert not (tmp_path / "mlflow.db").exists()


def test_context_manager_marks_failure_and_end_is_final(tmp_path, monkeypatch):
    monkeypatch.setenv("KFTUNE_TRACKING", "off")
    with pytest.raises(RuntimeError), Tracker.start(tmp_path, experiment="e", run_name="r") as t:
        raise RuntimeError("boom")
    t.log_metrics({"eval_f1": 1.0}, step=9)  # after end: ignored, not an error
    t.end("FINISHED")
    events = find_spools(tmp_path)[0].events()
    assert [e["event"] for e in events] == ["start", "end"] and events[-1]["status"] == "FAILED"
    with pytest.raises(ValueError, match="status"):
        Tracker.start(tmp_path, experiment="e", run_name="r2").end("DONE")


def test_git_sha_of_the_working_dir(tmp_path, monkeypatch):
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    monkeypatch.setenv("KFTUNE_GIT_SHA", "from-env")
    assert tracking.git_sha(ROOT) == head
    assert tracking.git_sha(tmp_path) == "from-env"


def test_spool_ignores_a_torn_last_line(tmp_path):
    spool = Spool(tmp_path / "tracking" / "run-x.jsonl")
    spool.path.parent.mkdir()
    spool.append({"seq": 0, "event": "start"})
    with open(spool.path, "a") as fh:
        fh.write('{"seq": 1, "event": "met')  # a writer caught mid-line
    assert [e["seq"] for e in spool.events()] == [0]


def test_retries_on_a_real_sqlite_lock(tmp_path):
    """with_retries rides out "database is locked" from another connection holding the lock."""
    db = tmp_path / "x.db"
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("create table t (x int)")
    holder.execute("begin exclusive")
    threading.Timer(0.4, lambda: holder.execute("commit")).start()
    attempts = []

    def write():
        attempts.append(1)
        con = sqlite3.connect(db, timeout=0)
        try:
            con.execute("insert into t values (1)")
            con.commit()
        finally:
            con.close()

    tracking.with_retries(write, attempts=8, base=0.05)
    assert len(attempts) > 1
    holder.close()
    assert sqlite3.connect(db).execute("select count(*) from t").fetchone() == (1,)
    with pytest.raises(ValueError):
        tracking.with_retries(lambda: (_ for _ in ()).throw(ValueError("not a lock")))


def test_concurrent_sqlite_writers(tmp_path):
    """Three trial processes create the schema, the experiment and their runs in one fresh SQLite file."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from kftune.registry.tracking import Tracker\n"
        "i = sys.argv[1]\n"
        "t = Tracker.start(Path('out' + i), experiment='conc', run_name='t' + i, tags={'kftune.trial': 't' + i},"
        " params={'i': i})\n"
        "for s in range(15):\n"
        "    t.log_metrics({'eval_loss': s + int(i)}, step=s)\n"
        "t.end()\n"
        "print(t.online, t.run_id)\n"
    )
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("KFTUNE_TRACKING", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(i)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2, 3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
        assert out.startswith("True "), err
        assert "warning" not in err, err
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exps = [e for e in client.search_experiments() if e.name == "conc"]
    assert len(exps) == 1
    runs = client.search_runs([exps[0].experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["t1", "t2", "t3"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert len(client.get_metric_history(run.info.run_id, "eval_loss")) == 15


# ------------------------------------------------------------------------------------------------
# against a real server


@pytest.mark.server
def test_live_run_on_a_server(mlflow_server, tmp_path, monkeypatch, capfd):
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.delenv("KFTUNE_TRACKING", raising=False)
    monkeypatch.setenv("KFTUNE_IMAGE", "ghcr.io/kftune/trainer:0.1.0")
    model_dir = _tiny_model(tmp_path / "m", "ner")
    out = tmp_path / "trial-7"
    tags = {"kftune.trial": "trial-7", "kftune.variant": "cased", "kftune.seed": "7", "kftune.task": "ner"}
    tracker = Tracker.start(
        out, experiment="live", run_name="trial-7", tags=tags, params={"lr": 3e-5, "o": {"x": 1}}
    )
    assert tracker.online and tracker.run_id
    for epoch in (1, 2):
        tracker.log_metrics({"eval_f1": 0.5 + epoch / 10, "eval_loss": 1.0 / epoch}, step=epoch)
    tracker.log_metrics({"eval_loss": float("nan")}, step=3)  # a diverged epoch is still logged
    (out / "metrics.json").write_text(json.dumps({"status": "completed"}))
    tracker.log_artifact(out / "metrics.json")
    tracker.log_artifact(out / "missing.txt")  # the caller's mistake: skipped, tracking stays on
    assert tracker.online
    tracker.log_model(model_dir, task="ner")
    tracker.end("FINISHED")
    captured = capfd.readouterr()
    assert captured.out == ""  # nothing on stdout: the metric-line contract
    warnings = [line for line in captured.err.splitlines() if line.startswith("kftune: warning")]
    assert len(warnings) == 1 and "missing.txt" in warnings[0] and "skipped" in warnings[0]

    client = MlflowClient(mlflow_server)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "trial-7"
    assert run.data.params == {"lr": "3e-05", "o.x": "1"}
    for key, value in tags.items():
        assert run.data.tags[key] == value
    assert run.data.tags["kftune.experiment"] == "live"
    assert run.data.tags["kftune.image"] == "ghcr.io/kftune/trainer:0.1.0"
    assert run.data.tags["kftune.host"] == socket.gethostname()
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert run.data.tags["kftune.git_sha"] == (head or os.environ.get("KFTUNE_GIT_SHA") or "unknown")
    assert run.data.tags["kftune.model_uri"] == f"runs:/{tracker.run_id}/model"
    history = client.get_metric_history(tracker.run_id, "eval_f1")
    assert [(m.step, round(m.value, 4)) for m in history] == [(1, 0.6), (2, 0.7)]
    losses = client.get_metric_history(tracker.run_id, "eval_loss")
    assert [m.step for m in losses] == [1, 2, 3] and math.isnan(losses[-1].value)
    assert {a.path for a in client.list_artifacts(tracker.run_id)} == {"metrics.json", "model"}
    state = Spool(find_spools(out)[0].path).target(mlflow_server)
    assert state["run_id"] == tracker.run_id and state["seq"] == 7  # all eight events delivered

    # the model loads, predicts, and can be registered then loaded by version
    mlflow.set_tracking_uri(mlflow_server)
    loaded = mlflow.pyfunc.load_model(f"runs:/{tracker.run_id}/model")
    assert len(loaded.predict(["john smith lives in paris"])) == 1
    version = mlflow.register_model(f"runs:/{tracker.run_id}/model", "kftune-test-ner")
    components = mlflow.transformers.load_model(
        f"models:/kftune-test-ner/{version.version}", return_type="components"
    )
    assert components["model"].config.id2label[1] == "B-PER"


@pytest.mark.server
def test_dead_server_then_sync(mlflow_server, tmp_path, monkeypatch, capfd, kftune_cli):
    from mlflow import MlflowClient

    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    monkeypatch.delenv("KFTUNE_TRACKING", raising=False)
    parent = tmp_path / "trials"
    started = time.time()
    for name in ("a", "b"):
        out = parent / name
        tracker = Tracker.start(
            out, experiment="offline", run_name=name, tags={"kftune.trial": name}, params={"n": name}
        )
        for epoch in (1, 2, 3):
            tracker.log_metrics({"eval_accuracy": epoch / 4}, step=epoch)
        out.mkdir(exist_ok=True)
        (out / "metrics.json").write_text("{}")
        tracker.log_artifact(out / "metrics.json")
        tracker.end("FINISHED")
        assert not tracker.online and tracker.run_id is None
    assert time.time() - started < 10  # a dead server costs seconds
    err = capfd.readouterr().err
    assert err.count("kftune: warning: MLflow tracking at") == 2  # once per run, not per event
    assert "kftune track sync" in err

    # one trial dir, then the parent (the second trial is new, the first up to date)
    env = {"MLFLOW_TRACKING_URI": mlflow_server}
    first = kftune_cli("track", "sync", str(parent / "a"), env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("created: ")
    both = kftune_cli("track", "sync", str(parent), env=env)
    assert both.returncode == 0, both.stderr
    assert "1 created, 0 updated, 1 up to date" in both.stdout

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("offline")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["a", "b"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params["n"] == run.info.run_name
        assert run.data.tags["kftune.trial"] == run.info.run_name
        hist = client.get_metric_history(run.info.run_id, "eval_accuracy")
        assert [(m.step, m.value) for m in hist] == [(1, 0.25), (2, 0.5), (3, 0.75)]
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["metrics.json"]

    # idempotent: re-syncing adds nothing, even when the state file is lost
    (find_spools(parent / "a")[0]).state_path.unlink()
    again = kftune_cli("track", "sync", str(parent), env=env)
    assert again.returncode == 0, again.stderr
    assert "0 created" in again.stdout
    runs2 = client.search_runs([exp.experiment_id])
    assert len(runs2) == 2
    for run in runs2:
        assert len(client.get_metric_history(run.info.run_id, "eval_accuracy")) == 3


def test_sync_bad_input(tmp_path, kftune_cli):
    missing = kftune_cli("track", "sync", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "is not a directory" in missing.stderr
    empty = kftune_cli("track", "sync", str(tmp_path))
    assert empty.returncode == 2 and "no tracking spools" in empty.stderr
    assert "Traceback" not in empty.stderr


def test_sync_to_an_unreachable_server_is_one_line(tmp_path, kftune_cli, monkeypatch):
    monkeypatch.setenv("KFTUNE_TRACKING", "off")
    Tracker.start(tmp_path / "t", experiment="e", run_name="r").end()
    proc = kftune_cli("track", "sync", str(tmp_path), "--tracking-uri", f"http://127.0.0.1:{_free_port()}")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "cannot reach the MLflow tracking store" in proc.stderr


def test_sync_ends_unfinished_runs_when_asked(tmp_path, monkeypatch):
    """A trial killed before ``end``: sync uploads it RUNNING, or KILLED with --unfinished KILLED."""
    monkeypatch.setenv("KFTUNE_TRACKING", "off")
    for name in ("left", "killed"):
        tracker = Tracker.start(tmp_path / name, experiment="crash", run_name=name)
        tracker.log_metrics({"eval_f1": 0.1}, step=1)  # ... and the process dies here: no end()
    monkeypatch.delenv("KFTUNE_TRACKING")
    store = tracking.Store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    left = tracking.sync_spool(find_spools(tmp_path / "left")[0], store)
    killed = tracking.sync_spool(find_spools(tmp_path / "killed")[0], store, unfinished="KILLED")
    assert store.client.get_run(left.run_id).info.status == "RUNNING"
    assert store.client.get_run(killed.run_id).info.status == "KILLED"
    assert tracking.sync_spool(find_spools(tmp_path / "killed")[0], store).action == "up to date"
