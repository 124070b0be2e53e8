"""The ``tune`` step: run a Katib Experiment and record its trials and best trial in the run dir.

Two modes, chosen by the pipeline parameter ``mode``:

``local``    ``kftune katib run FILE --local`` in a subprocess (the local runner: same suggestion
             code, trials as subprocesses), its work dir under ``RUN_DIR/tune/katib``; trials are
             read back with the runner's export (:mod:`kftune.katib.runner_export`).
``cluster``  create the Experiment with ``kubernetes.client.CustomObjectsApi`` (the pipeline pod's
             ServiceAccount ``kftune-pipeline`` may), poll its conditions, read
             ``status.currentOptimalTrial`` and the Trials, and each trial's per-epoch objective
             values (its learning curve) from Katib's DB manager
             (:mod:`kftune.katib.dbmanager`; unreachable: a warning, no curves); the pipeline
             deletes it in an exit handler (:func:`delete_experiment`).

Both take the Experiment as YAML text (the pipelines embed ``katib/*.yaml`` at compile time, so a
pipeline version carries the exact search it ran) with the same overrides, given as the local
runner's flags (``--set-arg --model=tiny``, ``--max-trial-count 4``, ...; see
:mod:`kftune.katib.runner_overrides`), applied to the object before it is created or run.

Writes ``tune/experiment.given.yaml`` (as given), ``tune/experiment.yaml`` (as run: overrides
applied), ``tune/trials.json`` and ``tune/best.json``
(docs/contracts.md). A Failed experiment raises :class:`TuneFailed` with Katib's reason and
message, after recording them in ``run.json``: the pipeline step fails with that reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kftune.errors import UserError
from kftune.hpo.base import LABEL_PARENT
from kftune.katib.dbmanager import DEFAULT_ADDRESS, ObservationLogError, observation_logs
from kftune.steps.rundir import RunDir, now_iso, slug, write_json
from kftune.train.watchdog import STALL_ENV, stall_timeout

MODES = ("local", "cluster")
GIVEN = "experiment.given.yaml"
GROUP, VERSION = "kubeflow.org", "v1beta1"
LABEL_EXPERIMENT = "katib.kubeflow.org/experiment"


class TuneFailed(UserError):
    """The experiment ended Failed (or could not run): the step, and so the pipeline, fails."""

    exit_code = 1


@dataclass
class TuneSettings:
    mode: str = "local"
    experiment: str = ""  # YAML text, or a path to a katib/*.yaml file
    name: str = ""  # cluster: the Experiment's name (default <file's name>-<job id>)
    namespace: str = ""  # cluster: default the file's, else kftune
    model: str = ""  # --set-arg --model=...
    data: str = ""  # --set-arg --data=...
    tag_family: str = ""  # --set-arg --tag-family=...
    train_variant: str = ""  # --set-arg --train-variant=... and --eval-variant (tuned on that dev set)
    max_trial_count: int = 0  # 0: as in the file
    parallel_trial_count: int = 0
    max_failed_trial_count: int = -1  # -1: as in the file
    overrides: list[str] = field(default_factory=list)  # more runner-style override flags
    timeout_s: float = 0.0  # cluster: give up after this long (0: no limit)
    poll_s: float = 10.0
    # cluster: Katib's DB manager, for each trial's per-epoch objective values (its learning
    # curve); "" skips them. Unreachable: the curves stay empty, with a warning, and the step goes on.
    db_manager: str = DEFAULT_ADDRESS


def experiment_text(experiment: str) -> str:
    """The Experiment YAML (or JSON): ``experiment`` itself when it holds one, else the file it names."""
    if "\n" in experiment or experiment.lstrip().startswith(("apiVersion", "kind", "{")):
        return experiment
    path = Path(experiment)
    if not path.is_file():
        raise UserError(
            f"tune: experiment {experiment!r} is neither YAML text nor a file; pass a katib/*.yaml path"
        )
    return path.read_text(encoding="utf-8")


def override_args(s: TuneSettings) -> list[str]:
    """The settings as ``kftune katib run`` override flags (one list for both modes)."""
    out: list[str] = []
    if s.model:
        out += ["--set-arg", f"--model={s.model}"]
    if s.data:
        out += ["--set-arg", f"--data={s.data}"]
    if s.tag_family:
        out += ["--set-arg", f"--tag-family={s.tag_family}"]
    if s.train_variant:
        out += [
            "--set-arg",
            f"--train-variant={s.train_variant}",
            "--set-arg",
            f"--eval-variant={s.train_variant}",
        ]
    if s.max_trial_count > 0:
        out += ["--max-trial-count", str(s.max_trial_count)]
    if s.parallel_trial_count > 0:
        out += ["--parallel", str(s.parallel_trial_count)]
    if s.max_failed_trial_count >= 0:
        out += ["--max-failed-trial-count", str(s.max_failed_trial_count)]
    if os.environ.get(STALL_ENV, "").strip():
        # the install's stallTimeoutSeconds (settings ConfigMap) applies to the search's trials too
        stall = stall_timeout(default=0.0)
        out += ["--set-env", f"{STALL_ENV}={int(stall) if stall.is_integer() else stall}"]
    return out + [str(a) for a in s.overrides]


def config_tag(tag_family: str = "", train_variant: str = "") -> str:
    """A short tag of the configuration (``ner-matrix`` runs six searches in one pipeline run)."""
    return "-".join(p for p in (tag_family[:4], train_variant) if p)


def cluster_name(base: str, job_id: str, tag: str = "") -> str:
    """``<base>[-<tag>]-<job id prefix>``: a DNS label of <= 40 characters (Katib's limit), the
    same in the tune step and in the exit handler (which may only see pipeline parameters)."""
    suffix = slug(job_id, 63).replace("-", "")[:8] or "run"
    head = f"{base}-{tag}" if tag else base
    return f"{slug(head, 40 - len(suffix) - 1)}-{suffix}"


def _objective(raw: dict[str, Any]) -> dict[str, str]:
    obj = (raw.get("spec") or {}).get("objective") or {}
    return {"type": str(obj.get("type") or "maximize"), "metric": str(obj.get("objectiveMetricName") or "")}


def _float(x: Any) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _metric_values(observation: dict[str, Any] | None, objective: dict[str, str]) -> dict[str, float]:
    """{name: value}: the objective by its strategy (max/min), other metrics' latest value."""
    out: dict[str, float] = {}
    for m in (observation or {}).get("metrics") or []:
        name = str(m.get("name"))
        if name == objective["metric"]:
            key = "max" if objective["type"] == "maximize" else "min"
            value = _float(m.get(key))
            value = value if value is not None else _float(m.get("latest"))
        else:
            value = _float(m.get("latest"))
        if value is not None:
            out[name] = value
    return out


def _assignments(items: list[dict[str, Any]] | None) -> dict[str, str]:
    return {str(p.get("name")): str(p.get("value")) for p in items or []}


def _budget(assignments: dict[str, str]) -> int | None:
    """The epochs a trial trains up to (its num_epochs-like assignment), if it has one."""
    for key in ("num_epochs", "epochs", "num_train_epochs"):
        if key in assignments and (v := _float(assignments[key])) is not None:
            return int(v)
    return None


def _epochs(assignments: dict[str, str], curve: list[list[float]], start: int = 0) -> int | None:
    """Epochs the trial trained itself (as in local mode): a promotion that resumed its parent's
    checkpoint at epoch ``start`` counts only the epochs after it."""
    if curve:
        return len(curve)
    budget = _budget(assignments)
    return None if budget is None else max(0, budget - start)


def _cluster_curves(s: TuneSettings, names: list[str], metric: str) -> dict[str, list[float]]:
    """Each trial's objective values from Katib's DB manager ({} when off or unreachable)."""
    if not s.db_manager or not names:
        return {}
    try:
        return observation_logs(s.db_manager, names, metric)
    except ObservationLogError as exc:
        print(f"tune: warning: no learning curves: {exc}", file=sys.stderr, flush=True)
        return {}


# ----------------------------------------------------------------------------- entry point


def _cap_failed(text: str, s: TuneSettings) -> TuneSettings:
    """A smaller ``max_trial_count`` without ``max_failed_trial_count`` caps the file's
    maxFailedTrialCount too (Katib refuses maxFailedTrialCount > maxTrialCount)."""
    import dataclasses

    import yaml

    if s.max_trial_count <= 0 or s.max_failed_trial_count >= 0:
        return s
    spec = (yaml.safe_load(text) or {}).get("spec") or {}
    failed = spec.get("maxFailedTrialCount")
    if isinstance(failed, int) and failed > s.max_trial_count:
        print(
            f"tune: maxFailedTrialCount {failed} -> {s.max_trial_count} (capped by max_trial_count)",
            file=sys.stderr,
        )
        return dataclasses.replace(s, max_failed_trial_count=s.max_trial_count)
    return s


def tune(run_dir: str | Path, settings: TuneSettings, job_id: str = "", api: Any = None) -> dict[str, Any]:
    """Run the search; write tune/{experiment.yaml,trials.json,best.json}; return best.json.
    ``api``: a ``CustomObjectsApi`` for cluster mode (default: from the pod's or the kube config)."""
    if settings.mode not in MODES:
        raise UserError(f"tune: mode {settings.mode!r}: choose local or cluster")
    rd = RunDir.at(run_dir)
    text = experiment_text(settings.experiment)
    settings = _cap_failed(text, settings)
    rd.tune.mkdir(parents=True, exist_ok=True)
    (rd.tune / GIVEN).write_text(text, encoding="utf-8")
    rd.update_info(tune_started=now_iso(), tune_mode=settings.mode)
    try:
        best = (
            _tune_local(rd, settings)
            if settings.mode == "local"
            else _tune_cluster(rd, settings, job_id, api)
        )
    except TuneFailed as exc:
        rd.fail("tune", str(exc))
        raise
    rd.update_info(tune_finished=now_iso(), best_trial=best.get("bestTrialName"))
    return best


# ----------------------------------------------------------------------------- local


def _write_yaml(path: Path, raw: dict[str, Any]) -> None:
    import yaml

    path.write_text(yaml.safe_dump(raw, sort_keys=False, default_flow_style=False), encoding="utf-8")


def _local_trials(work: Path) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """tune/trials.json rows (the runner's export, docs/contracts.md) and each trial's command."""
    from kftune.katib.runner_export import tune_trials
    from kftune.katib.store import Store, db_path

    trials = tune_trials(work)
    store = Store.open(db_path(work))
    try:
        argv_of = {row.name: list(row.argv) for row in store.trials()}
        reasons = {row.name: row.reason or "" for row in store.trials()}
    finally:
        store.close()
    for t in trials:
        t.setdefault("reason", reasons.get(t["name"], ""))
    return trials, argv_of


def _effective_spec(work: Path) -> dict[str, Any] | None:
    """The Experiment as the local runner ran it (overrides applied), from its record."""
    try:
        from kftune.katib.store import Store, db_path
    except ImportError:
        return None
    path = db_path(work)
    if not path.is_file():
        return None
    store = Store.open(path)
    try:
        spec = store.get_meta("spec")
    finally:
        store.close()
    return spec if isinstance(spec, dict) and spec.get("spec") else None


def _run_logged(argv: list[str], stdout_path: Path, keep: int = 20) -> tuple[int, list[str]]:
    """Run ``argv``; stdout to a file, stderr echoed to ours (the step's log) and its tail kept."""
    tail: deque[str] = deque(maxlen=keep)
    with open(stdout_path, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, text=True, errors="replace")
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            if line.strip():
                tail.append(line.rstrip("\n"))
        sys.stderr.flush()
        return proc.wait(), list(tail)


def _tune_local(rd: RunDir, s: TuneSettings) -> dict[str, Any]:
    import yaml

    work = rd.tune / "katib"
    argv = [sys.executable, "-m", "kftune", "katib", "run", str(rd.tune / GIVEN), "--local"]
    argv += ["--work-dir", str(work), "--progress", "plain"]
    if (work / "experiment.db").exists():
        argv.append("--resume")  # a retried step continues the search it started
    argv += override_args(s)
    print("tune: " + " ".join(argv[1:]), file=sys.stderr, flush=True)
    code, tail = _run_logged(argv, rd.tune / "runner.out")
    result_file = work / "result.json"
    result = json.loads(result_file.read_text(encoding="utf-8")) if result_file.is_file() else None
    if result is None:
        errors = [line.strip() for line in tail if ": error:" in line]
        detail = " | ".join(errors[:3]) or (tail[-1].strip() if tail else "no output")
        raise TuneFailed(f"tune: the local Katib run could not start (exit {code}): {detail}")
    raw = _effective_spec(work) or yaml.safe_load((rd.tune / GIVEN).read_text(encoding="utf-8")) or {}
    _write_yaml(rd.tune / "experiment.yaml", raw)
    objective = _objective(raw)
    trials, argv_of = _local_trials(work)
    write_json(rd.trials_json, trials)
    condition = result.get("condition") or {}
    return _finish(rd, result.get("experiment") or "", condition, result.get("currentOptimalTrial"),
                   objective, argv_of)  # fmt: skip


def _finish(
    rd: RunDir,
    name: str,
    condition: dict[str, Any],
    optimal: dict[str, Any] | None,
    objective: dict[str, str],
    argv_of: dict[str, list[str]],
) -> dict[str, Any]:
    ctype = str(condition.get("type") or "")
    if ctype == "Failed":
        raise TuneFailed(
            f"tune: experiment {name} Failed ({condition.get('reason') or 'no reason'}): "
            f"{condition.get('message') or ''}".rstrip(": ")
        )
    if not optimal or not optimal.get("bestTrialName"):
        raise TuneFailed(
            f"tune: experiment {name} ended {ctype or 'without a condition'} "
            f"({condition.get('reason') or '-'}) with no optimal trial: no trial reported {objective['metric']}"
        )
    best = dict(optimal)
    best["objective"] = objective
    best["experiment"] = name
    best["condition"] = condition
    best["argv"] = argv_of.get(str(best["bestTrialName"]), [])
    write_json(rd.best_json, best)
    return best


# ----------------------------------------------------------------------------- cluster


def _apply_overrides(raw: dict[str, Any], args: list[str]) -> dict[str, Any]:
    """The runner's override flags applied to the Experiment object (same code as ``--local``)."""
    if not args:
        return raw
    from kftune.katib.runner_cli import parse
    from kftune.katib.runner_overrides import Overrides

    ns = parse(["experiment.yaml", "--local", *args])
    overrides = Overrides(
        set_args=ns.set_arg,
        drop_args=ns.drop_arg,
        set_env=ns.set_env,
        params=ns.param,
        algorithm_settings=ns.algorithm_setting,
        early_stopping_settings=ns.early_stopping_setting,
        max_trial_count=ns.max_trial_count,
        parallel=ns.parallel,
        max_failed_trial_count=ns.max_failed_trial_count,
        goal=ns.goal,
    )
    changed, notes = overrides.apply(raw)
    for note in notes:
        print(f"tune: override {note}", file=sys.stderr, flush=True)
    return changed


def cluster_experiment(text: str, s: TuneSettings, job_id: str) -> dict[str, Any]:
    """The Experiment object the cluster mode creates: YAML typed as kubectl types it,
    overrides applied, a per-run name and the namespace set."""
    import tempfile

    from kftune.katib.experiment import load_experiment

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "experiment.yaml"
        path.write_text(text, encoding="utf-8")
        raw = load_experiment(path).raw
    raw = _apply_overrides(raw, override_args(s))
    meta = raw.setdefault("metadata", {})
    tag = config_tag(s.tag_family, s.train_variant)
    meta["name"] = s.name or cluster_name(str(meta.get("name") or "experiment"), job_id, tag)
    meta["namespace"] = s.namespace or str(meta.get("namespace") or "kftune")
    meta.setdefault("labels", {})["kftune.io/pipeline-run"] = slug(job_id or "none", 63)
    return raw


def _api(api: Any = None) -> Any:
    if api is not None:
        return api
    from kubernetes import client, config

    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
        else:
            config.load_kube_config()
    except Exception as exc:  # noqa: BLE001 - any config problem is the user's to fix
        raise UserError(f"tune: no Kubernetes configuration ({exc}); run in a pod or set KUBECONFIG") from exc
    return client.CustomObjectsApi()


def _condition(status: dict[str, Any]) -> dict[str, Any]:
    """Katib's current condition: the last one whose status is "True"."""
    current: dict[str, Any] = {}
    for c in status.get("conditions") or []:
        if str(c.get("status")) == "True":
            current = c
    return current


def _trial_argv(trial: dict[str, Any]) -> list[str]:
    """The primary container's command + args of a Trial's runSpec (Job or PyTorchJob)."""
    run_spec = (trial.get("spec") or {}).get("runSpec") or {}
    primary = (trial.get("spec") or {}).get("primaryContainerName") or ""
    stack = [run_spec]
    while stack:
        obj = stack.pop()
        if isinstance(obj, dict):
            for c in obj.get("containers") or []:
                if isinstance(c, dict) and (not primary or c.get("name") == primary):
                    return [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
            stack.extend(v for v in obj.values() if isinstance(v, dict | list))
        elif isinstance(obj, list):
            stack.extend(v for v in obj if isinstance(v, dict | list))
    return []


def _tune_cluster(rd: RunDir, s: TuneSettings, job_id: str, api: Any = None) -> dict[str, Any]:
    raw = cluster_experiment(rd.tune.joinpath(GIVEN).read_text(encoding="utf-8"), s, job_id)
    _write_yaml(rd.tune / "experiment.yaml", raw)
    name, ns = raw["metadata"]["name"], raw["metadata"]["namespace"]
    write_json(rd.tune / "experiment.json", raw)
    objective = _objective(raw)
    api = _api(api)
    from kubernetes.client.exceptions import ApiException

    try:
        api.create_namespaced_custom_object(GROUP, VERSION, ns, "experiments", raw)
        print(f"tune: created experiment {ns}/{name}", file=sys.stderr, flush=True)
    except ApiException as exc:
        if exc.status != 409:  # 409: a retried step finds the one it created
            raise TuneFailed(
                f"tune: cannot create experiment {ns}/{name}: {exc.status} {exc.reason}"
            ) from exc
    t0, last = time.monotonic(), ""
    while True:
        exp = api.get_namespaced_custom_object(GROUP, VERSION, ns, "experiments", name)
        status = exp.get("status") or {}
        cond = _condition(status)
        line = f"{cond.get('type', 'Created')}: {status.get('trialsSucceeded', 0)} succeeded, " \
               f"{status.get('trialsRunning', 0)} running, {status.get('trialsFailed', 0)} failed"  # fmt: skip
        if line != last:
            print(f"tune: {name} {line}", file=sys.stderr, flush=True)
            last = line
        if cond.get("type") in ("Succeeded", "Failed"):
            break
        if s.timeout_s and time.monotonic() - t0 > s.timeout_s:
            raise TuneFailed(
                f"tune: experiment {ns}/{name} still {cond.get('type', 'Created')} after {s.timeout_s:.0f} s"
            )
        time.sleep(s.poll_s)
    listing = api.list_namespaced_custom_object(
        GROUP, VERSION, ns, "trials", label_selector=f"{LABEL_EXPERIMENT}={name}"
    )
    items = [t for t in listing.get("items") or [] if isinstance(t, dict)]
    names = [str((t.get("metadata") or {}).get("name")) for t in items]
    assignments_of = {
        n: _assignments((t.get("spec") or {}).get("parameterAssignments"))
        for n, t in zip(names, items, strict=True)
    }
    # Katib keeps the per-epoch values in its database, not in the Trial
    values_of = _cluster_curves(s, names, objective["metric"])
    trials, argv_of = [], {}
    for tname, t in zip(names, items, strict=True):
        tstatus = t.get("status") or {}
        labels = (t.get("metadata") or {}).get("labels") or {}
        assignments = assignments_of[tname]
        parent = str(labels.get(LABEL_PARENT) or "")
        start = (_budget(assignments_of[parent]) or 0) if parent in assignments_of else 0
        # one value per epoch (the trainer's epoch lines); a promotion goes on from its parent's epochs
        curve = [[start + i + 1, v] for i, v in enumerate(values_of.get(tname) or [])]
        trials.append(
            {
                "name": tname,
                "status": _condition(tstatus).get("type", "Created"),
                "assignments": assignments,
                "labels": labels,
                "metrics": _metric_values(tstatus.get("observation"), objective),
                "curve": curve,
                "epochs": _epochs(assignments, curve, start),
                "reason": _condition(tstatus).get("reason", ""),
            }
        )
        argv_of[tname] = _trial_argv(t)
    write_json(rd.trials_json, trials)
    return _finish(rd, name, _condition(status), status.get("currentOptimalTrial"), objective, argv_of)


def delete_experiment(mode: str, name: str, namespace: str, api: Any = None) -> str:
    """Exit handler: delete the run's Experiment (its Trials go with it). Local mode: nothing."""
    if mode != "cluster":
        return "local mode: nothing to delete"
    api = _api(api)
    from kubernetes.client.exceptions import ApiException

    try:
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, "experiments", name)
    except ApiException as exc:
        if exc.status == 404:
            return f"experiment {namespace}/{name} not found (never created, or already deleted)"
        raise
    return f"deleted experiment {namespace}/{name}"
