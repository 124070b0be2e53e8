"""Experiment tracking: one MLflow run per invocation, never fatal, always spooled locally.

``Tracker`` is what the trainer, the baselines and evaluation code log through::

    tracker = Tracker.start(output_dir, experiment="ner-hpo", run_name="trial-3",
                            tags={"kftune.trial": "trial-3", "kftune.seed": "1"}, params=args)
    tracker.log_metrics({"eval_f1": 0.81, "eval_loss": 0.52}, step=1)
    tracker.log_artifact(output_dir / "metrics.json")
    tracker.log_model(output_dir / "best", task="ner")
    tracker.end("FINISHED")          # or "FAILED" / "KILLED"

Behaviour:

- **Where.** ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<cwd>/mlflow.db`` (artifacts then go
  to ``<cwd>/mlruns/``). ``KFTUNE_TRACKING=off`` keeps everything in the local spool only (no
  MLflow import, no warning): for unit tests and quick local runs.
- **The spool, always.** Every event (run start with tags and params, metrics with steps and
  timestamps, artifacts and models by path, end status) is appended to
  ``OUTPUT_DIR/tracking/run-<time>-<uid>.jsonl`` *whether or not the server works*, so local reports
  and ``kftune track sync`` read one format and a run can be replayed to another server later.
  ``run-...state.json`` beside it records, per tracking URI (credentials stripped), the MLflow run
  id and the last event delivered there.
- **Never fatal.** MLflow's HTTP client is given short limits unless the user set them
  (``MLFLOW_HTTP_REQUEST_TIMEOUT=5``, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=1``, backoff factor 1): a
  closed port fails in well under a second, a server that accepts but never answers in ~10 s.
  The first failure prints one warning on stderr and the run continues locally only (no further
  attempts). An error that concerns one artifact or model while the store still answers (a missing
  file, a model directory that does not load) is a warning and that event is skipped. Nothing
  raised by MLflow reaches the caller, and nothing MLflow prints reaches stdout (the metric lines'
  channel; ``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT`` is forced on).
- **Sync.** ``kftune track sync DIR`` replays what was not delivered, into the same MLflow run when
  it still exists (else the run carrying the spool's ``kftune.spool`` tag, else a new run).
  Replays are idempotent: the state file skips delivered events, metrics carry their original
  timestamps (the store drops exact duplicates), params/tags are rewritten with the same values,
  and a model is not logged twice.
- **SQLite.** Several trial processes may share one SQLite file: creating/migrating the schema and
  the experiment happens under an exclusive file lock (``<db>.lock``) -- without it, concurrent
  first runs fail in alembic -- and every store call retries with exponential backoff on
  "database is locked" (on top of MLflow's own 20 s SQLite busy timeout).
- **Models.** ``log_model`` saves the HF model directory as an MLflow ``transformers`` model (a
  pipeline for the task, built offline, explicit pip requirements, no inference) and uploads it as
  the run's ``model`` artifacts: ``runs:/<run_id>/model`` is what to register
  (``mlflow.register_model``) and load (``mlflow.pyfunc.load_model``, or
  ``mlflow.transformers.load_model(..., return_type="components")`` for model + tokenizer). The
  tags ``kftune.model_uri`` and ``kftune.model_flavor`` record it. If the transformers flavour fails
  (or ``KFTUNE_MLFLOW_MODEL_FLAVOR=pyfunc``) the directory is saved as a ``pyfunc`` model whose
  loader is this module (``_load_pyfunc``; needs kftune installed where it is loaded).

Standard tags added to every run: ``kftune.git_sha`` (``git rev-parse HEAD`` of the working
directory, else ``KFTUNE_GIT_SHA``, else ``unknown``), ``kftune.image`` (``KFTUNE_IMAGE``, else
``local``), ``kftune.host``, ``kftune.version``, ``kftune.spool`` (the spool's uid); the caller's
tags (``kftune.experiment``, ``kftune.trial``, ``kftune.variant``, ``kftune.seed``, ``kftune.task``)
are added as given.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_TRACKING = "KFTUNE_TRACKING"  # "off" / "0" / "false" / "local": spool only
ENV_FLAVOR = "KFTUNE_MLFLOW_MODEL_FLAVOR"  # "transformers" (default) or "pyfunc"
SPOOL_DIR = "tracking"
STATUSES = ("FINISHED", "FAILED", "KILLED")
# Short HTTP limits, so that a dead server costs seconds (set only when the user has not).
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}
MODEL_UPLOAD_TIMEOUT = "300"  # seconds per request while uploading a model (when not set by the user)
# MLflow's limits (mlflow/utils/validation.py, 3.x)
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
PIPELINE_TASKS = {"ner": "token-classification", "seqcls": "text-classification", "mlm": "fill-mask"}

_BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")


# --------------------------------------------------------------------------------------------
# small helpers


def tracking_disabled() -> bool:
    return os.environ.get(ENV_TRACKING, "").strip().lower() in ("off", "0", "false", "no", "local")


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite file in the working directory."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    return uri or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def uri_key(uri: str) -> str:
    """The tracking URI without credentials, as a key in spool state files."""
    return re.sub(r"//[^/@]*@", "//", uri)


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(rest) if rest and rest != ":memory:" else None


def now_ms() -> int:
    return int(time.time() * 1000)


def clean_key(key: object) -> str:
    """A key MLflow accepts: allowed characters only, at most 250 characters."""
    text = _BAD_KEY_CHARS.sub("_", str(key)).strip() or "_"
    return text[:MAX_KEY]


def _truncate(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def flatten_params(params: dict, prefix: str = "") -> dict[str, str]:
    """Nested dicts become ``a.b`` keys; lists JSON; every value a string within MLflow's limits."""
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_params(value, f"{name}."))
            continue
        if isinstance(value, (list, tuple, dict)):
            text = json.dumps(value, default=str, sort_keys=True)
        elif isinstance(value, Path):
            text = str(value)
        else:
            text = str(value)
        out[clean_key(name)] = _truncate(text, MAX_PARAM_VALUE)
    return out


def clean_tags(tags: dict) -> dict[str, str]:
    return {clean_key(k): _truncate(str(v), MAX_TAG_VALUE) for k, v in (tags or {}).items() if v is not None}


def git_sha(cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path.cwd(),
            capture_output=True,
            text=True,
            timeout=5,
        )
        sha = proc.stdout.strip()
        if proc.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", sha):
            return sha
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("KFTUNE_GIT_SHA", "").strip() or "unknown"


def standard_tags() -> dict[str, str]:
    from kftune import __version__

    return {
        "kftune.git_sha": git_sha(),
        "kftune.image": os.environ.get("KFTUNE_IMAGE", "").strip() or "local",
        "kftune.host": socket.gethostname(),
        "kftune.version": __version__,
    }


def _is_locked_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text


def with_retries(fn: Callable[[], Any], *, attempts: int = 6, base: float = 0.05, cap: float = 2.0) -> Any:
    """Call ``fn``; on SQLite "database is locked" retry with exponential backoff and jitter."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts - 1 or not _is_locked_error(exc):
                raise
            time.sleep(min(cap, base * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing), for processes on one machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _atomic_write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------
# the spool


@dataclass
class Spool:
    """One invocation's append-only event log plus the state of its deliveries."""

    path: Path  # OUTPUT_DIR/tracking/run-<time>-<uid>.jsonl

    @property
    def state_path(self) -> Path:
        return self.path.with_name(self.path.name.removesuffix(".jsonl") + ".state.json")

    @property
    def output_dir(self) -> Path:
        return self.path.parent.parent

    @classmethod
    def create(cls, output_dir: Path, uid: str) -> Spool:
        directory = Path(output_dir).resolve() / SPOOL_DIR
        directory.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S")
        return cls(directory / f"run-{stamp}-{uid[:8]}.jsonl")

    def append(self, event: dict) -> None:
        line = json.dumps(event, default=str, allow_nan=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()

    def events(self) -> list[dict]:
        """Complete lines only (a writer may be appending): a torn last line is ignored."""
        out = []
        if not self.path.is_file():
            return out
        with open(self.path, encoding="utf-8") as fh:
            for raw in fh:
                if not raw.endswith("\n"):
                    break
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(raw))
        return out

    def state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {"targets": {}}

    def target(self, uri: str) -> dict:
        return self.state().get("targets", {}).get(uri_key(uri), {})

    def mark(self, uri: str, **fields: Any) -> None:
        state = self.state()
        entry = state.setdefault("targets", {}).setdefault(uri_key(uri), {})
        entry.update(fields, updated=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
        _atomic_write_json(self.state_path, state)


def find_spools(directory: Path) -> list[Spool]:
    """Spools of a trial output dir, or of every trial dir below ``directory``."""
    directory = Path(directory)
    found = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        if Path(root).name == SPOOL_DIR:
            found += [
                Spool(Path(root) / f) for f in sorted(files) if f.startswith("run-") and f.endswith(".jsonl")
            ]
    return found


# --------------------------------------------------------------------------------------------
# delivery to MLflow (shared by the live Tracker and `kftune track sync`)


class Store:
    """An ``MlflowClient`` for one tracking URI, with SQLite locking and retries."""

    def __init__(self, uri: str):
        self._own_timeout = "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        # MLflow prints "View run ... at: URL" on stdout when a run ends: stdout belongs to the
        # metric lines (docs/contracts.md), so never.
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        from mlflow import MlflowClient

        self.uri = uri
        db = sqlite_path(uri)
        self._lock_path = db.with_name(db.name + ".lock") if db else None
        if db:
            db.parent.mkdir(parents=True, exist_ok=True)
        with self._init_lock():
            self.client = MlflowClient(tracking_uri=uri)
            # the first store access creates/migrates the schema: do it under the lock
            with_retries(lambda: self.client.search_experiments(max_results=1))

    def _init_lock(self):
        return file_lock(self._lock_path) if self._lock_path else contextlib.nullcontext()

    @contextlib.contextmanager
    def upload_timeout(self) -> Iterator[None]:
        """A long per-request timeout for model uploads, unless the user chose one."""
        if not self._own_timeout:
            yield
            return
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = MODEL_UPLOAD_TIMEOUT
        try:
            yield
        finally:
            os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_TIMEOUT"]

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return with_retries(lambda: fn(*args, **kwargs))

    def experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        with self._init_lock():
            exp = self.call(self.client.get_experiment_by_name, name)
            if exp is None:
                try:
                    return self.call(self.client.create_experiment, name)
                except MlflowException:  # created by a process on another machine meanwhile
                    exp = self.call(self.client.get_experiment_by_name, name)
                    if exp is None:
                        raise
            if exp.lifecycle_stage == "deleted":
                self.call(self.client.restore_experiment, exp.experiment_id)
            return exp.experiment_id

    def run_exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            run = self.call(self.client.get_run, run_id)
        except MlflowException:
            return False
        return run.info.lifecycle_stage == "active"

    def find_run_by_spool(self, experiment: str, uid: str) -> str | None:
        exp = self.call(self.client.get_experiment_by_name, experiment)
        if exp is None:
            return None
        runs = self.call(
            self.client.search_runs,
            [exp.experiment_id],
            filter_string=f"tags.`kftune.spool` = '{uid}'",
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def has_model(self, run_id: str) -> bool:
        return any(a.path == "model" for a in self.call(self.client.list_artifacts, run_id))

    # -- events ------------------------------------------------------------------------------

    def start_run(self, event: dict) -> str:
        from mlflow.entities import Param

        exp_id = self.experiment_id(event["experiment"])
        tags = dict(event.get("tags", {}))
        run = self.call(
            self.client.create_run,
            exp_id,
            start_time=event.get("time"),
            tags=tags,
            run_name=event.get("run_name") or None,
        )
        run_id = run.info.run_id
        params = [Param(k, v) for k, v in event.get("params", {}).items()]
        for i in range(0, len(params), MAX_PARAMS_TAGS_PER_BATCH):
            self.call(self.client.log_batch, run_id, params=params[i : i + MAX_PARAMS_TAGS_PER_BATCH])
        return run_id

    def reachable(self, run_id: str) -> bool:
        try:
            self.call(self.client.get_run, run_id)
            return True
        except Exception:
            return False

    def apply_or_skip(self, run_id: str, event: dict, base: Path) -> str:
        """``apply``; an error that concerns only this event (a missing file, a model that does
        not load) while the store still answers is returned as a message (the event is skipped);
        any other error is raised (the store is down)."""
        try:
            self.apply(run_id, event, base)
            return ""
        except FileNotFoundError as exc:
            return str(exc)
        except Exception as exc:
            if event["event"] in ("artifact", "model") and self.reachable(run_id):
                return f"{event['event']} {event.get('path')} not logged ({type(exc).__name__}: {exc})"
            raise

    def apply(self, run_id: str, event: dict, base: Path) -> None:
        """Deliver one non-start event to ``run_id``. Idempotent."""
        kind = event["event"]
        if kind == "metrics":
            from mlflow.entities import Metric

            metrics = [
                Metric(k, float(v), int(event["time"]), int(event["step"]))
                for k, v in event["metrics"].items()
            ]
            for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
                self.call(self.client.log_batch, run_id, metrics=metrics[i : i + MAX_METRICS_PER_BATCH])
        elif kind == "artifact":
            path = resolve_path(event, base)
            if path is None:
                raise FileNotFoundError(f"artifact {event['path']} no longer exists")
            if path.is_dir():
                self.call(
                    self.client.log_artifacts, run_id, str(path), event.get("artifact_path") or path.name
                )
            else:
                self.call(self.client.log_artifact, run_id, str(path), event.get("artifact_path"))
        elif kind == "model":
            path = resolve_path(event, base)
            if path is None:
                raise FileNotFoundError(f"model directory {event['path']} no longer exists")
            flavor = log_hf_model(self, run_id, path, event["task"])
            self.call(self.client.set_tag, run_id, "kftune.model_flavor", flavor)
            self.call(self.client.set_tag, run_id, "kftune.model_uri", f"runs:/{run_id}/model")
        elif kind == "end":
            self.call(self.client.set_terminated, run_id, event["status"], end_time=event.get("time"))
        else:
            raise ValueError(f"unknown spool event {kind!r}")


def resolve_path(event: dict, base: Path) -> Path | None:
    """An artifact's path: relative to the output dir when recorded so (the dir may have moved)."""
    if event.get("rel"):
        candidate = base / event["rel"]
        if candidate.exists():
            return candidate
    candidate = Path(event["path"])
    return candidate if candidate.exists() else None


def _pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("mlflow", "torch", "transformers"):
        try:
            reqs.append(f"{pkg}=={version(pkg).split('+')[0]}")
        except PackageNotFoundError:
            reqs.append(pkg)
    return reqs


def log_hf_model(store: Store, run_id: str, model_dir: Path, task: str) -> str:
    """Save ``model_dir`` as an MLflow model under the run's ``model`` artifacts; returns the flavour."""
    if task not in PIPELINE_TASKS:
        raise ValueError(f"log_model: unknown task {task!r}: one of {', '.join(PIPELINE_TASKS)}")
    flavor = os.environ.get(ENV_FLAVOR, "transformers").strip().lower() or "transformers"
    with tempfile.TemporaryDirectory(prefix="kftune-model-") as tmp:
        target = Path(tmp) / "model"
        if flavor == "transformers":
            try:
                _save_transformers(model_dir, task, target)
            except Exception as exc:  # flavour/library mismatch: fall back to the plain directory
                print(
                    f"kftune: warning: mlflow transformers flavour failed ({type(exc).__name__}: "
                    f"{str(exc)[:200]}); logging {model_dir} as a pyfunc model instead",
                    file=sys.stderr,
                )
                flavor = "pyfunc"
                target = Path(tmp) / "model-pyfunc"
        if flavor != "transformers":
            flavor = "pyfunc"
            _save_pyfunc(model_dir, task, target)
        with store.upload_timeout():
            store.call(store.client.log_artifacts, run_id, str(target), "model")
    return flavor


def _save_transformers(model_dir: Path, task: str, target: Path) -> None:
    import mlflow.transformers
    import transformers

    pipe = transformers.pipeline(
        PIPELINE_TASKS[task], model=str(model_dir), tokenizer=str(model_dir), device="cpu"
    )
    mlflow.transformers.save_model(pipe, path=str(target), pip_requirements=_pip_requirements())


def _save_pyfunc(model_dir: Path, task: str, target: Path) -> None:
    import mlflow.pyfunc

    mlflow.pyfunc.save_model(
        path=str(target),
        loader_module="kftune.registry.tracking",
        data_path=str(model_dir),
        pip_requirements=_pip_requirements(),
        metadata={"kftune_task": task},
    )


class HFPipelinePredictor:
    """What ``mlflow.pyfunc.load_model`` returns for a pyfunc-flavoured kftune model."""

    def __init__(self, path: str, task: str):
        import transformers

        self.task = task
        self.pipeline = transformers.pipeline(PIPELINE_TASKS[task], model=path, tokenizer=path, device="cpu")

    def predict(self, model_input, params=None):
        if hasattr(model_input, "columns"):  # a DataFrame: the first column holds the texts
            texts = [str(x) for x in model_input[model_input.columns[0]]]
        elif isinstance(model_input, str):
            texts = [model_input]
        else:
            texts = [str(x) for x in model_input]
        out = self.pipeline(texts)
        if self.task == "seqcls":
            return [o["label"] for o in out]
        return out


def _load_pyfunc(data_path: str) -> HFPipelinePredictor:
    """The pyfunc loader (``loader_module``): ``data_path`` is the saved HF model directory."""
    mlmodel = Path(data_path).parent / "MLmodel"
    task = "seqcls"
    if mlmodel.is_file():
        import yaml

        meta = (yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}).get("metadata") or {}
        task = meta.get("kftune_task", task)
    return HFPipelinePredictor(data_path, task)


# --------------------------------------------------------------------------------------------
# the Tracker


@dataclass
class Tracker:
    """One tracked run; see the module docstring. Create it with ``Tracker.start``."""

    spool: Spool
    uid: str
    experiment: str
    tracking_uri: str | None  # None when tracking is off (spool only)
    run_id: str | None = None
    online: bool = False
    ended: bool = False
    _store: Store | None = field(default=None, repr=False)
    _seq: int = 0

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        output_dir: Path,
        *,
        experiment: str,
        run_name: str,
        tags: dict[str, str] | None = None,
        params: dict | None = None,
    ) -> Tracker:
        uid = uuid.uuid4().hex
        try:
            spool = Spool.create(Path(output_dir), uid)
        except OSError as exc:  # an unwritable output dir is the trainer's error to report, not ours
            spool = Spool.create(Path(tempfile.mkdtemp(prefix="kftune-tracking-")), uid)
            print(
                f"kftune: warning: cannot write {output_dir}/{SPOOL_DIR} ({exc}); spooling to {spool.path}",
                file=sys.stderr,
            )
        all_tags = {**standard_tags(), **clean_tags(tags or {}), "kftune.spool": uid}
        all_tags.setdefault("kftune.experiment", experiment)
        all_tags = clean_tags(all_tags)
        uri = None if tracking_disabled() else default_tracking_uri()
        tracker = cls(spool=spool, uid=uid, experiment=experiment or "Default", tracking_uri=uri)
        event = {
            "event": "start",
            "uid": uid,
            "experiment": tracker.experiment,
            "run_name": run_name,
            "tags": all_tags,
            "params": flatten_params(params or {}),
        }
        tracker._record(event, deliver=False)
        if uri is not None:
            try:
                with contextlib.redirect_stdout(sys.stderr):  # library chatter must not reach stdout
                    tracker._store = Store(uri)
                    tracker.run_id = tracker._store.start_run(event)
                tracker.online = True
                spool.mark(uri, run_id=tracker.run_id, seq=0)
            except Exception as exc:
                tracker._go_offline(exc)
        return tracker

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.end("FINISHED")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end("KILLED")
        else:
            self.end("FAILED")

    # -- logging ---------------------------------------------------------------------------------

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        clean = {}
        for key, value in (metrics or {}).items():
            try:
                clean[clean_key(key)] = float(value)
            except (TypeError, ValueError):
                continue
        if clean:
            self._record({"event": "metrics", "step": int(step), "metrics": clean})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._record({"event": "artifact", **self._path_fields(path), "artifact_path": artifact_path})

    def log_model(self, model_dir: Path, task: str) -> None:
        if task not in PIPELINE_TASKS:
            raise ValueError(f"log_model: unknown task {task!r}: one of {', '.join(PIPELINE_TASKS)}")
        self._record({"event": "model", **self._path_fields(model_dir), "task": task})

    def end(self, status: str = "FINISHED") -> None:
        if self.ended:
            return
        if status not in STATUSES:
            raise ValueError(f"end: status must be one of {', '.join(STATUSES)}, not {status!r}")
        self._record({"event": "end", "status": status})
        self.ended = True

    # -- internals ---------------------------------------------------------------------------

    def _path_fields(self, path: Path) -> dict:
        path = Path(path).resolve()
        fields: dict[str, Any] = {"path": str(path)}
        with contextlib.suppress(ValueError):
            fields["rel"] = str(path.relative_to(self.spool.output_dir.resolve()))
        return fields

    def _record(self, event: dict, deliver: bool = True) -> None:
        if self.ended:
            return
        event = {"seq": self._seq, "time": now_ms(), **event}
        self._seq += 1
        try:
            self.spool.append(event)
        except OSError as exc:  # a full disk must not kill training either
            print(f"kftune: warning: cannot write tracking spool {self.spool.path}: {exc}", file=sys.stderr)
        if not (deliver and self.online and self._store and self.run_id):
            return
        try:
            with contextlib.redirect_stdout(sys.stderr):  # library chatter must not reach stdout
                problem = self._store.apply_or_skip(self.run_id, event, self.spool.output_dir)
            if problem:
                print(f"kftune: warning: {' '.join(problem.split())[:400]}; skipped", file=sys.stderr)
            self.spool.mark(self.tracking_uri, run_id=self.run_id, seq=event["seq"])
        except Exception as exc:
            self._go_offline(exc)

    def _go_offline(self, exc: BaseException) -> None:
        self.online = False
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        print(
            f"kftune: warning: MLflow tracking at {uri_key(self.tracking_uri or '')} failed ({reason}); "
            f"tracking continues locally in {self.spool.path.parent} -- upload it later with "
            f"`kftune track sync {self.spool.output_dir}`",
            file=sys.stderr,
        )


# --------------------------------------------------------------------------------------------
# sync


@dataclass
class SyncResult:
    spool: Path
    run_id: str | None
    delivered: int  # events sent this time
    action: str  # "created", "updated", "up to date", "failed"
    error: str = ""


def sync_spool(spool: Spool, store: Store, *, unfinished: str | None = None) -> SyncResult:
    """Replay the events of ``spool`` not yet delivered to ``store``; idempotent.

    ``unfinished``: a status to end the run with when the spool has no end event (a killed
    process); ``None`` leaves such a run RUNNING.
    """
    lock = spool.path.with_name(spool.path.name.removesuffix(".jsonl") + ".lock")
    with file_lock(lock):
        events = spool.events()
        if not events or events[0].get("event") != "start":
            return SyncResult(spool.path, None, 0, "failed", "spool has no start event")
        start = events[0]
        target = spool.target(store.uri)
        run_id, done = target.get("run_id"), int(target.get("seq", -1))
        action = "updated"
        if run_id and not store.run_exists(run_id):
            run_id, done = None, -1
        if not run_id:  # lost state, or another server: look for the run by its spool uid
            run_id = store.find_run_by_spool(start["experiment"], start["uid"])
            done = 0 if run_id else -1
        if not run_id:
            run_id = store.start_run(start)
            done, action = 0, "created"
            spool.mark(store.uri, run_id=run_id, seq=0)
        pending = [e for e in events if e["seq"] > done]
        if unfinished and not any(e["event"] == "end" for e in events):
            pending.append({"seq": events[-1]["seq"], "time": now_ms(), "event": "end", "status": unfinished})
        delivered = 0
        for event in pending:
            if event["event"] == "model" and done <= 0 and store.has_model(run_id):
                pass  # state was lost but the model is already there: do not log it twice
            else:
                with contextlib.redirect_stdout(sys.stderr):
                    problem = store.apply_or_skip(run_id, event, spool.output_dir)
                if problem:
                    msg = " ".join(problem.split())[:400]
                    print(f"kftune track sync: warning: {spool.path}: {msg}; skipped", file=sys.stderr)
            delivered += 1
            spool.mark(store.uri, run_id=run_id, seq=event["seq"])
        if action != "created" and not delivered:
            action = "up to date"
        return SyncResult(spool.path, run_id, delivered, action)
