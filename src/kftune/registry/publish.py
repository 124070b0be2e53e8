"""Publishing a run's best model to the MLflow Model Registry, with a model card and the champion rule.

    from kftune.registry import register
    result = register("runs/ner-hpo-1", name="ner-original-uncased", tracking_uri="http://mlflow:5000")
    result.version, result.alias, result.reason, result.model_uri

What :func:`register` does, in order:

1. Reads the run directory (never writes to it, except ``registry.json`` at the very end) and picks
   the seed to publish: the completed seed with the best *development* objective (seed 002's
   "cherry-picked model with the best evaluation results among the five runs", chosen on dev so
   that its test scores are not selected on).
2. Connects to the tracking server. If it does not answer: :class:`RegistryUnavailable` (exit 3
   through the CLI), naming the URI and the command that registers later; nothing was changed.
3. Looks up the registered model's ``champion`` alias and that version's per-seed scores (tag
   ``kftune.seed_scores``), and decides with :func:`kftune.registry.decision.decide`: champion only
   when significantly better (or when there is no champion yet), otherwise challenger + reason.
4. Creates one MLflow run (experiment = the run's pipeline, else ``kftune-registry``) holding
   params (best hyperparameters, retraining settings), metrics (the published seed's scores,
   mean/std over seeds, its evaluation matrix), artifacts ``README.md`` (the model card) and
   ``kftune/*.json`` (seed scores, evaluation matrices, comparisons, the published metrics.json,
   run.json, tune/best.json), and the model (``transformers`` flavour, through the same code as
   :meth:`kftune.registry.tracking.Tracker.log_model`: artifact ``model``).
5. Registers ``runs:/<run_id>/model`` as a new version with ``kftune.*`` tags and the short card as
   description, sets the alias, and (for a new champion) makes the short card the registered
   model's description and tags the previous champion ``kftune.superseded_by``.
6. Writes ``RUN_DIR/registry.json``. Registering a run again with the same name and server returns
   the recorded version (``already_registered``) unless ``force=True``.

Per-seed scores are stored as the version tag ``kftune.seed_scores`` =
``{"test_f1": {"1": 0.61, "2": 0.59}, "dev_f1": {...}, ...}`` (every score column) and as the run
artifact ``kftune/seed_scores.json``; the next registration compares with them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kftune.errors import UserError
from kftune.registry.decision import CHAMPION, Decision, decide
from kftune.registry.rundir import RunDir, higher_is_better, load_run_dir, read_comparisons

REGISTRY_JSON = "registry.json"
DEFAULT_EXPERIMENT = "kftune-registry"
SEED_SCORES_TAG = "kftune.seed_scores"
EXIT_UNAVAILABLE = 3


class RegistryUnavailable(UserError):
    """The MLflow tracking/registry server did not answer; nothing (more) was registered."""

    exit_code = EXIT_UNAVAILABLE


@dataclass
class RegistrationResult:
    name: str
    version: str
    alias: str  # "champion" or "challenger" (at registration time)
    reason: str
    model_uri: str  # models:/NAME/VERSION
    run_id: str
    tracking_uri: str  # without credentials
    seed: int  # the published seed
    metric: str  # what the champion decision compared, e.g. test_f1
    scores: dict[int, float] = field(default_factory=dict)
    already_registered: bool = False
    decision: Decision | None = None

    def to_dict(self) -> dict[str, Any]:
        """registry.json's content."""
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "reason": self.reason,
            "model_uri": self.model_uri,
            "alias_uri": f"models:/{self.name}@{self.alias}",
            "run_id": self.run_id,
            "tracking_uri": self.tracking_uri,
            "seed": self.seed,
            "metric": self.metric,
            "scores": {str(k): v for k, v in self.scores.items()},
            "registered": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }


@dataclass
class Plan:
    """What registering would do (``kftune registry compare``): no side effects."""

    run_dir: RunDir
    name: str
    tracking_uri: str
    seed: int
    decision: Decision
    champion_version: str | None
    comparisons: list = field(default_factory=list)  # NamedComparison: the champion's + comparison.json's


@dataclass
class VersionInfo:
    version: str
    aliases: list[str]
    tags: dict[str, str]
    run_id: str | None
    created: int | None  # ms

    @property
    def metric(self) -> str:
        return self.tags.get("kftune.metric", "")


# ----------------------------------------------------------------------------------------------
# Connecting


def resolve_uri(tracking_uri: str | None) -> str:
    from kftune.registry.tracking import default_tracking_uri

    return tracking_uri or default_tracking_uri()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow and transformers chatter goes to stderr: stdout carries the CLI's results."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _unavailable(uri: str, exc: BaseException, run_dir: Path | None, name: str | None, partial: str = ""):
    from kftune.registry.tracking import uri_key

    msg = f"MLflow server at {uri_key(uri)} is not reachable ({short_reason(exc)})"
    if run_dir is not None:
        run_dir = run_dir.resolve()
        msg += (
            f"; {partial or 'nothing was registered'}; {run_dir} is unchanged and its retrained models stay in "
            f"{run_dir / 'retrain'}; start the server (or fix the URI) and register later with "
            f"`kftune registry register {run_dir} --name {name} --tracking-uri {uri_key(uri)}`"
        )
    else:
        msg += "; start the server or pass the right --tracking-uri (or MLFLOW_TRACKING_URI)"
    return RegistryUnavailable(msg)


_CAUSES = (
    "Connection refused", "Name or service not known", "Temporary failure in name resolution",
    "No route to host", "Read timed out", "timed out", "Connection reset", "Remote end closed connection",
    "unable to open database file", "could not connect to server", "Connection aborted",
)  # fmt: skip


def short_reason(exc: BaseException) -> str:
    """The root cause of a failed request in a few words ("Connection refused"), else the start of it."""
    text = " ".join(str(exc).split())
    for cause in _CAUSES:
        if cause.lower() in text.lower():
            return cause
    status = re.search(r"\b(?:status code|HTTP) (\d{3})\b", text)
    if status:
        return f"HTTP {status.group(1)}"
    return f"{type(exc).__name__}: {text[:160]}"


def connect(uri: str, *, run_dir: Path | None = None, name: str | None = None):
    """A :class:`kftune.registry.tracking.Store` whose server answered; RegistryUnavailable otherwise."""
    from kftune.registry.tracking import Store

    try:
        with _quiet():
            store = Store(uri)
            store.call(store.client.search_registered_models, max_results=1)
        return store
    except Exception as exc:
        raise _unavailable(uri, exc, run_dir, name) from None


def _reachable(store) -> bool:
    try:
        with _quiet():
            store.client.search_registered_models(max_results=1)
        return True
    except Exception:
        return False


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", "") or "")


def _registered_model(store, name: str):
    """The RegisteredModel, or None when there is none by that name."""
    from mlflow.exceptions import MlflowException

    try:
        with _quiet():
            return store.call(store.client.get_registered_model, name)
    except MlflowException as exc:
        if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _aliases(rm) -> dict[str, str]:
    raw = getattr(rm, "aliases", None) or {}
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    return {str(a.alias): str(a.version) for a in raw}


# ----------------------------------------------------------------------------------------------
# Planning (the champion decision)


def _champion(store, name: str, rd: RunDir) -> tuple[str | None, dict[int, float] | None]:
    """(version, its per-seed scores on rd.compare_metric) of the champion, (None, None) if none."""
    rm = _registered_model(store, name)
    if rm is None:
        return None, None
    version = _aliases(rm).get(CHAMPION)
    if version is None:
        return None, None
    with _quiet():
        mv = store.call(store.client.get_model_version, name, version)
    tags = dict(mv.tags or {})
    task = tags.get("kftune.task")
    if task and rd.task and task != rd.task:
        raise UserError(
            f"registered model {name!r} holds {task} models (champion v{version}) but {rd.path} is a "
            f"{rd.task} run: register it under another --name"
        )
    try:
        table = json.loads(tags.get(SEED_SCORES_TAG) or "{}")
        scores = {int(k): float(v) for k, v in (table.get(rd.compare_metric) or {}).items()}
    except (ValueError, TypeError, AttributeError):
        scores = {}
    return version, scores


def _plan(store, rd: RunDir, name: str, uri: str, alpha: float) -> Plan:
    from kftune.report.tables import NamedComparison

    published = rd.select_seed()
    scores = rd.seed_scores()
    if not scores:
        raise UserError(
            f"{rd.path}: the completed seeds have no {rd.compare_metric} score in metrics.json: nothing to "
            "compare a champion on; rerun the retrain step"
        )
    version, champ_scores = _champion(store, name, rd)
    decision = decide(scores, champ_scores, metric=rd.compare_metric, alpha=alpha, champion_version=version)
    comparisons = [c for c in read_comparisons(rd) if not c.against.lower().startswith("champion")]
    if decision.comparison is not None:
        comparisons.insert(0, NamedComparison(decision.metric, f"champion v{version}", decision.comparison))
    return Plan(rd, name, uri, published.seed, decision, version, comparisons)


def plan_registration(
    run_dir: str | Path, *, name: str, tracking_uri: str | None = None, alpha: float = 0.05
) -> Plan:
    """What :func:`register` would do (which seed, champion or challenger and why), registering nothing."""
    rd = load_run_dir(run_dir)
    rd.select_seed()  # no completed seed: a clear error before any network traffic
    uri = resolve_uri(tracking_uri)
    store = connect(uri, run_dir=None, name=name)
    try:
        return _plan(store, rd, name, uri, alpha)
    except UserError:
        raise
    except Exception as exc:
        if not _reachable(store):
            raise _unavailable(uri, exc, None, name) from None
        raise


# ----------------------------------------------------------------------------------------------
# Registering


def _version_tags(plan: Plan, flavor: str) -> dict[str, str]:
    rd, d = plan.run_dir, plan.decision
    published = next(r for r in rd.completed if r.seed == plan.seed)
    columns = rd.score_columns()
    if d.metric not in columns:
        columns.append(d.metric)
    table = {c: {str(s): v for s, v in rd.seed_scores(c).items()} for c in columns}
    values = list(d.scores.values())
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else None
    matrix = {s: rd.matrix(s, seeds=[plan.seed]) for s in ("dev", "test")}
    c = d.comparison
    tags = {
        "kftune.task": rd.task,
        "kftune.data": rd.data,
        "kftune.base_model": rd.base_model,
        "kftune.tag_family": rd.tag_family,
        "kftune.train_variant": rd.train_variant,
        "kftune.hpo_algorithm": rd.hpo_algorithm,
        "kftune.pipeline": rd.pipeline,
        "kftune.git_sha": rd.git_sha or _git_sha(),
        "kftune.seeds": ",".join(str(s) for s in sorted(d.scores)),
        "kftune.published_seed": str(plan.seed),
        "kftune.selection": f"best dev_{rd.objective} of the completed seeds",
        "kftune.metric": d.metric,
        "kftune.metric_direction": "maximize" if higher_is_better(d.metric) else "minimize",
        "kftune.metric_mean": repr(mean),
        "kftune.metric_std": "" if std is None else repr(std),
        "kftune.metric_value": repr(d.scores.get(plan.seed, float("nan"))),
        SEED_SCORES_TAG: json.dumps(table, sort_keys=True),
        "kftune.eval_matrix": json.dumps({"metric": rd.objective, **matrix}, sort_keys=True),
        "kftune.decision": d.alias,
        "kftune.reason": d.reason[:4000],
        "kftune.compared_with": f"v{plan.champion_version}" if plan.champion_version else "",
        "kftune.test_used": c.chosen_label if c is not None else "none (no champion to compare with)",
        "kftune.p_value": "" if c is None or c.p_value is None else repr(c.p_value),
        "kftune.model_flavor": flavor,
        "kftune.run_dir": str(rd.path.resolve()),
    }
    for key, value in published.scores().items():  # the published model's own scores
        tags[f"kftune.{key}"] = repr(value)
    return {k: v for k, v in tags.items() if v != ""}


def _git_sha() -> str:
    from kftune.registry.tracking import git_sha

    return git_sha()


def _run_payload(plan: Plan) -> tuple[dict[str, str], dict[str, float]]:
    from kftune.registry.modelcard import RETRAIN_SETTINGS
    from kftune.registry.tracking import flatten_params

    rd = plan.run_dir
    published = next(r for r in rd.completed if r.seed == plan.seed)
    params = {f"hp.{k}": v for k, v in rd.best_hyperparameters().items()}
    args = published.args
    params.update({k: args[k] for k in RETRAIN_SETTINGS if args.get(k) is not None})
    params.update({"seed": plan.seed, "seeds": ",".join(map(str, plan.decision.scores)), "task": rd.task,
                   "data": rd.data, "model": rd.base_model, "tag_family": rd.tag_family,
                   "train_variant": rd.train_variant})  # fmt: skip
    metrics: dict[str, float] = dict(published.scores())
    for column in rd.score_columns():
        values = list(rd.seed_scores(column).values())
        if values:
            mean = sum(values) / len(values)
            metrics[f"{column}_mean"] = mean
            if len(values) > 1:
                metrics[f"{column}_std"] = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    for split in ("dev", "test"):
        for variant, value in rd.matrix(split, seeds=[plan.seed]).items():
            metrics[f"matrix_{split}_{variant}"] = value
    return flatten_params(params), metrics


def _write_artifacts(directory: Path, plan: Plan, card: str) -> None:
    from kftune.registry.rundir import comparisons_to_json

    rd = plan.run_dir
    (directory / "README.md").write_text(card, encoding="utf-8")
    sub = directory / "kftune"
    sub.mkdir()
    columns = sorted(set(rd.score_columns()) | {plan.decision.metric})
    files: dict[str, Any] = {
        "seed_scores.json": {c: {str(s): v for s, v in rd.seed_scores(c).items()} for c in columns},
        "eval_matrix.json": {
            "metric": rd.objective,
            "published_seed": plan.seed,
            "published": {s: rd.matrix(s, seeds=[plan.seed]) for s in ("dev", "test")},
            "mean": {s: rd.matrix(s) for s in ("dev", "test")},
            "per_seed": {str(r.seed): r.evaluation for r in rd.completed if r.evaluation},
        },
        "comparison.json": comparisons_to_json(plan.comparisons),
        "decision.json": plan.decision.to_dict(),
        "run.json": rd.info,
    }
    if rd.best:
        files["tune_best.json"] = rd.best
    published = next(r for r in rd.completed if r.seed == plan.seed)
    files["metrics.json"] = published.metrics
    for fname, content in files.items():
        (sub / fname).write_text(
            json.dumps(content, indent=1, default=str, allow_nan=True) + "\n", encoding="utf-8"
        )


def _read_registry_json(rd: RunDir) -> dict | None:
    return rd.registry if isinstance(rd.registry, dict) else None


def _existing(store, rd: RunDir, name: str, uri: str) -> RegistrationResult | None:
    """The registration recorded in registry.json, if it is for this name and server and still exists."""
    from mlflow.exceptions import MlflowException

    from kftune.registry.tracking import uri_key

    rec = _read_registry_json(rd)
    if not rec or rec.get("name") != name or rec.get("tracking_uri") != uri_key(uri):
        return None
    try:
        with _quiet():
            mv = store.call(store.client.get_model_version, name, str(rec.get("version")))
    except MlflowException:
        return None
    return RegistrationResult(
        name=name, version=str(mv.version), alias=str(rec.get("alias")), reason=str(rec.get("reason")),
        model_uri=f"models:/{name}/{mv.version}", run_id=str(mv.run_id), tracking_uri=uri_key(uri),
        seed=int(rec.get("seed", 0)), metric=str(rec.get("metric", "")),
        scores={int(k): float(v) for k, v in (rec.get("scores") or {}).items()}, already_registered=True,
    )  # fmt: skip


def _wait_ready(store, name: str, version: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        mv = store.call(store.client.get_model_version, name, version)
        status = str(getattr(mv, "status", "READY"))
        if status == "READY":
            return
        if status == "FAILED_REGISTRATION":
            raise RuntimeError(f"model version {name}/{version} failed to register: {mv.status_message}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"model version {name}/{version} not READY after {timeout:.0f} s ({status})")
        time.sleep(0.5)


def register(
    run_dir: str | Path,
    *,
    name: str,
    tracking_uri: str | None = None,
    alpha: float = 0.05,
    force: bool = False,
    experiment: str | None = None,
) -> RegistrationResult:
    """Publish the run's best seed as a new version of registered model ``name``; see the module
    docstring. Raises UserError for a bad run directory, RegistryUnavailable when the server is down."""
    from kftune.registry.modelcard import card_description, model_card
    from kftune.registry.tracking import clean_tags, log_hf_model, uri_key

    run_dir = Path(run_dir)
    rd = load_run_dir(run_dir)
    published = rd.select_seed()
    _check_name(name)
    uri = resolve_uri(tracking_uri)
    store = connect(uri, run_dir=run_dir, name=name)
    if not force:
        existing = _existing(store, rd, name, uri)
        if existing is not None:
            return existing
    run_id = None
    stage = "nothing was registered"
    try:
        plan = _plan(store, rd, name, uri, alpha)
        d = plan.decision
        params, metrics = _run_payload(plan)
        exp_name = experiment or rd.info.get("pipeline") or DEFAULT_EXPERIMENT
        with _quiet():
            exp_id = store.experiment_id(exp_name)
            run_tags = clean_tags({
                "mlflow.runName": f"register {name} seed {plan.seed}",
                "kftune.registered_model": name, "kftune.task": rd.task, "kftune.git_sha": rd.git_sha or _git_sha(),
                "kftune.pipeline": rd.pipeline, "kftune.seed": str(plan.seed), "kftune.run_dir": str(run_dir.resolve()),
            })  # fmt: skip
            run = store.call(
                store.client.create_run, exp_id, tags=run_tags, run_name=run_tags["mlflow.runName"]
            )
            run_id = run.info.run_id
            stage = f"MLflow run {run_id} holds a partial upload and no model version was created"
            _log_params_metrics(store, run_id, params, metrics)
            flavor = log_hf_model(store, run_id, published.model_dir, rd.task)
            store.call(store.client.set_tag, run_id, "kftune.model_flavor", flavor)
            store.call(store.client.set_tag, run_id, "kftune.model_uri", f"runs:/{run_id}/model")
            short = card_description(rd, name=name, published_seed=plan.seed, decision=d,
                                     comparisons=plan.comparisons, run_id=run_id)  # fmt: skip
            if _registered_model(store, name) is None:
                _create_registered_model(store, name, rd.task, short)
            mv = store.call(
                store.client.create_model_version, name, f"runs:/{run_id}/model", run_id,
                tags=_version_tags(plan, flavor), description=short,
            )  # fmt: skip
            version = str(mv.version)
            stage = f"version {version} of {name} exists but its alias and card may be missing"
            _wait_ready(store, name, version)
            card = model_card(rd, name=name, published_seed=plan.seed, decision=d, comparisons=plan.comparisons,
                              version=version, run_id=run_id)  # fmt: skip
            short = card_description(rd, name=name, published_seed=plan.seed, decision=d,
                                     comparisons=plan.comparisons, version=version, run_id=run_id)  # fmt: skip
            with tempfile.TemporaryDirectory(prefix="kftune-card-") as tmp:
                _write_artifacts(Path(tmp), plan, card)
                store.call(store.client.log_artifacts, run_id, tmp)
            store.call(store.client.update_model_version, name, version, description=short)
            store.call(store.client.set_registered_model_alias, name, d.alias, version)
            if d.alias == CHAMPION:
                store.call(store.client.update_registered_model, name, description=short)
                if plan.champion_version:
                    store.call(store.client.set_model_version_tag, name, plan.champion_version,
                               "kftune.superseded_by", version)  # fmt: skip
            store.call(store.client.set_terminated, run_id, "FINISHED")
    except UserError:
        _end_run(store, run_id)
        raise
    except Exception as exc:
        if not _reachable(store):
            raise _unavailable(uri, exc, run_dir, name, partial=stage) from None
        _end_run(store, run_id)
        raise
    result = RegistrationResult(
        name=name, version=version, alias=d.alias, reason=d.reason, model_uri=f"models:/{name}/{version}",
        run_id=run_id, tracking_uri=uri_key(uri), seed=plan.seed, metric=d.metric, scores=dict(d.scores),
        decision=d,
    )  # fmt: skip
    _write_registry_json(run_dir, result)
    return result


def _check_name(name: str) -> None:
    if not name or not name.strip() or "/" in name or "@" in name or ":" in name:
        raise UserError(
            f"--name {name!r}: a registered model name must be non-empty without '/', '@' or ':' "
            "(models:/NAME@alias URIs use them), e.g. ner-original-uncased"
        )


def _create_registered_model(store, name: str, task: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        store.call(
            store.client.create_registered_model, name, tags={"kftune.task": task}, description=description
        )
    except MlflowException as exc:  # created concurrently
        if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
            raise


def _log_params_metrics(store, run_id: str, params: dict[str, str], metrics: dict[str, float]) -> None:
    from mlflow.entities import Metric, Param

    from kftune.registry.tracking import MAX_PARAMS_TAGS_PER_BATCH, clean_key, now_ms

    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
        store.call(store.client.log_batch, run_id, params=items[i : i + MAX_PARAMS_TAGS_PER_BATCH])
    stamp = now_ms()
    ms = [Metric(clean_key(k), float(v), stamp, 0) for k, v in metrics.items()]
    if ms:
        store.call(store.client.log_batch, run_id, metrics=ms)


def _end_run(store, run_id: str | None) -> None:
    if run_id is None:
        return
    with contextlib.suppress(Exception), _quiet():
        store.client.set_terminated(run_id, "FAILED")


def _write_registry_json(run_dir: Path, result: RegistrationResult) -> None:
    path = run_dir / REGISTRY_JSON
    tmp = path.with_name(f".{REGISTRY_JSON}.tmp")
    tmp.write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# Reading the registry


def list_versions(name: str, *, tracking_uri: str | None = None) -> list[VersionInfo]:
    """Every version of ``name`` (newest first) with aliases and tags; UserError if there is none."""
    uri = resolve_uri(tracking_uri)
    store = connect(uri)
    rm = _registered_model(store, name)
    if rm is None:
        raise UserError(
            f"no registered model named {name!r} at {_key(uri)}: `kftune registry register RUN_DIR --name {name}` creates it"
        )
    aliases = _aliases(rm)
    by_version: dict[str, list[str]] = {}
    for alias, v in aliases.items():
        by_version.setdefault(v, []).append(alias)
    with _quiet():
        found = store.call(store.client.search_model_versions, f"name = '{name}'")
    out = [
        VersionInfo(
            str(mv.version),
            sorted(by_version.get(str(mv.version), [])),
            dict(mv.tags or {}),
            mv.run_id,
            getattr(mv, "creation_timestamp", None),
        )  # fmt: skip
        for mv in found
    ]
    return sorted(out, key=lambda v: int(v.version), reverse=True)


def _key(uri: str) -> str:
    from kftune.registry.tracking import uri_key

    return uri_key(uri)


def _num(text: str | None, digits: int = 4) -> str:
    try:
        return f"{float(text):.{digits}f}"
    except (TypeError, ValueError):
        return "-"


def format_versions(name: str, versions: list[VersionInfo]) -> str:
    """A plain-text table for ``kftune registry show``."""
    champion = next((v.version for v in versions if CHAMPION in v.aliases), None)
    lines = [f"{name}: {len(versions)} version{'s' if len(versions) != 1 else ''}"
             + (f", champion v{champion}" if champion else ", no champion")]  # fmt: skip
    header = ("version", "aliases", "metric", "mean ± std", "seeds", "published", "value", "p", "created")
    rows = []
    for v in versions:
        t = v.tags
        std = _num(t.get("kftune.metric_std"))
        mean = _num(t.get("kftune.metric_mean"))
        created = (
            _dt.datetime.fromtimestamp(v.created / 1000, _dt.UTC).strftime("%Y-%m-%d %H:%M")
            if v.created
            else "-"
        )
        rows.append((
            v.version, ",".join(v.aliases) or "-", t.get("kftune.metric", "-"),
            mean if std == "-" else f"{mean} ± {std}", t.get("kftune.seeds", "-"),
            t.get("kftune.published_seed", "-"), _num(t.get("kftune.metric_value")), _num(t.get("kftune.p_value")),
            created,
        ))  # fmt: skip
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for v in versions:
        if v.tags.get("kftune.reason"):
            lines.append(f"v{v.version} {v.tags.get('kftune.decision', '?')}: {v.tags['kftune.reason']}")
    return "\n".join(lines)
