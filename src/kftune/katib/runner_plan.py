"""Everything ``kftune katib run --local`` decides before the first trial starts.

:func:`prepare` reads the Experiment file, validates it (``kftune katib validate``'s rules: any
error stops here, nothing runs), applies the override flags and validates the result again,
checks that this machine can run it (trial kind, metrics collector, early stopping, the algorithm's
own settings, the trial command), renders a probe trial, maps container paths to local ones, and
opens (or, with ``--resume``, reopens) the experiment's SQLite record in the work dir.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kftune import __version__
from kftune.errors import UserError
from kftune.hpo import Problem, get_algorithm
from kftune.hpo.base import Algorithm
from kftune.hpo.earlystop import MedianStopSettings
from kftune.hpo.space import format_value
from kftune.katib.collector import TextFilter
from kftune.katib.experiment import Experiment, is_experiment, load_documents
from kftune.katib.kubeyaml import Document
from kftune.katib.runner_gpu import GpuScheduler, GpuSettings, build_scheduler
from kftune.katib.runner_overrides import MUTABLE_COUNTS, Overrides
from kftune.katib.runner_paths import LocalLayout, PathMap, build_path_map
from kftune.katib.store import Store, db_path

LOCAL_TRIAL_KINDS = ("Job", "PyTorchJob")
LOCAL_COLLECTORS = ("StdOut", "File")


@dataclass
class RunOptions:
    file: Path
    work_dir: Path | None = None
    resume: bool = False
    overrides: Overrides = field(default_factory=Overrides)
    volumes: dict[str, str] = field(default_factory=dict)
    progress: str = "auto"
    grace_s: float = 30.0
    threads_per_trial: int | None = None  # None: CPUs / parallel trials; 0: leave alone
    dry_run: bool = False  # prepare and render a probe trial; record and run nothing
    gpu: GpuSettings = field(default_factory=GpuSettings)  # GPU placement (kftune.katib.runner_gpu)


@dataclass
class Plan:
    file: Path
    exp: Experiment  # effective (overrides applied)
    problem: Problem
    algorithm: Algorithm
    early_stopping: MedianStopSettings | None
    text_filter: TextFilter
    strategies: dict[str, str]  # objective first, then additional metrics
    layout: LocalLayout
    path_map: PathMap
    namespace: str
    parameter_order: list[str]
    threads_per_trial: int
    notes: list[str] = field(default_factory=list)
    probe: Any = None  # the probe trial's LocalCommand (rendered with mid-range values)
    gpu: GpuScheduler | None = None  # None: no GPU placement (no GPU, or --gpus none)

    @property
    def objective_metric(self) -> str:
        return self.exp.objective.objective_metric_name

    @property
    def collector_kind(self) -> str:
        return self.exp.metrics_collector.kind

    @property
    def trial_kind(self) -> str:
        return self.exp.trial_template.kind


def default_work_dir(name: str) -> Path:
    return Path("runs") / f"katib-{name}"


# ----------------------------------------------------------------------------------- file


def read_experiment_file(file: Path) -> tuple[Document, dict[str, dict[str, Any]]]:
    """The file's one Experiment document, and the ConfigMaps beside it (name -> data)."""
    docs = load_documents(file)
    if file.is_dir():
        raise UserError(f"{file}: is a directory; pass one Experiment YAML file to run")
    exps = [d for d in docs if is_experiment(d)]
    if not exps:
        raise UserError(f"{file}: no kind: Experiment document to run")
    if len(exps) > 1:
        names = ", ".join(str((d.data.get("metadata") or {}).get("name")) for d in exps)
        raise UserError(f"{file}: holds {len(exps)} Experiments ({names}); pass a file with one")
    config_maps = {}
    for d in docs:
        data = d.data
        if isinstance(data, dict) and data.get("kind") == "ConfigMap":
            name = (data.get("metadata") or {}).get("name")
            if isinstance(name, str) and isinstance(data.get("data"), dict):
                config_maps[name] = data["data"]
    return exps[0], config_maps


def validate_file(file: Path, say: Callable[[str], None]) -> None:
    """``kftune katib validate FILE``: print warnings; raise on any error."""
    from kftune.katib.validator import validate_paths

    report = validate_paths([file])
    shown = [f for f in report.findings if f.severity in ("error", "warning")]
    for finding in shown:
        say(finding.format())
    if report.errors:
        raise UserError(
            f"{file}: {report.errors} error(s) from `kftune katib validate` (listed above); "
            "nothing was run. Fix them first"
        )


def validate_effective(doc: Document, raw: dict[str, Any], say: Callable[[str], None]) -> None:
    """Validate the Experiment after the overrides (line numbers are the file's)."""
    from kftune.katib.findings import Options
    from kftune.katib.katib_config import KatibConfig
    from kftune.katib.validator import Report, validate_document

    copy_doc = Document(
        path=doc.path, index=doc.index, start_line=doc.start_line, data=raw, lines=dict(doc.lines)
    )
    report = Report()
    validate_document(copy_doc, Options(KatibConfig()), report)
    errors = [f for f in report.findings if f.severity == "error"]
    for finding in errors:
        say("after the overrides: " + finding.format())
    if errors:
        raise UserError(
            f"{doc.path}: the overrides make the Experiment invalid ({len(errors)} error(s), listed above); "
            "nothing was run. Change the override flags"
        )


# ----------------------------------------------------------------------------------- checks


def local_support_errors(exp: Experiment) -> list[str]:
    """What in this Experiment the local runner cannot do (each a sentence with a fix)."""
    errors: list[str] = []
    tt = exp.trial_template
    if tt.trial_spec is None:
        errors.append(
            "spec.trialTemplate uses a configMap template, which only the cluster can read; "
            "inline it as spec.trialTemplate.trialSpec to run locally"
        )
    elif tt.kind not in LOCAL_TRIAL_KINDS:
        errors.append(
            f"trial kind {tt.kind or '?'} cannot run locally (the local runner runs {', '.join(LOCAL_TRIAL_KINDS)}); "
            "run it on the cluster with kubectl apply / kftune katib submit"
        )
    mc = exp.metrics_collector
    if mc.kind not in LOCAL_COLLECTORS:
        errors.append(
            f"metrics collector {mc.kind} cannot run locally (supported: {', '.join(LOCAL_COLLECTORS)}); "
            "print metric lines and use the StdOut collector"
        )
    elif mc.kind == "File" and mc.file_format not in ("TEXT", "JSON"):
        errors.append(f"File collector format {mc.file_format!r} is not TEXT or JSON")
    es = exp.early_stopping
    if es is not None and es.name != "medianstop":
        errors.append(f"early stopping {es.name!r} is not available locally (only medianstop)")
    if exp.spec.get("nasConfig") is not None:
        errors.append("spec.nasConfig (neural architecture search) cannot run locally")
    return errors


def _probe_assignments(problem: Problem) -> dict[str, str]:
    return {p.name: format_value(p, p.from_quantile(0.5)) for p in problem.space}


def local_argv(argv: list[str]) -> list[str]:
    """Run the container's command with this machine's Python: ``kftune ...`` -> ``python -m kftune``."""
    if not argv:
        return argv
    head = argv[0]
    if head == "kftune":
        return [sys.executable, "-m", "kftune", *argv[1:]]
    if head in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    if head == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", *argv[1:]]
    return list(argv)


def check_command(argv: list[str], env: Mapping[str, str]) -> None:
    if not argv:
        raise UserError("the primary container has no command or args: nothing to run")
    head = argv[0]
    if os.path.isabs(head) or os.sep in head:
        return
    if shutil.which(head, path=env.get("PATH")) is None:
        raise UserError(
            f"the trial command {head!r} is not on PATH here; install it, or override the container "
            "command in a copy of the file (kftune, python, python3 and torchrun map to this Python)"
        )


# ----------------------------------------------------------------------------------- store


def spec_digest(raw: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _strip_counts(raw: dict[str, Any]) -> dict[str, Any]:
    spec = {k: v for k, v in (raw.get("spec") or {}).items() if k not in MUTABLE_COUNTS}
    return {**raw, "spec": spec}


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            d = first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path} (length {len(b)} -> {len(a)})"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path} ({b!r} -> {a!r})"


# ----------------------------------------------------------------------------------- prepare


def prepare(options: RunOptions, say: Callable[[str], None]) -> tuple[Plan, Store]:
    file = Path(options.file)
    doc, config_maps = read_experiment_file(file)
    validate_file(file, say)
    name = str((doc.data.get("metadata") or {}).get("name") or "experiment")
    work_dir = Path(options.work_dir or default_work_dir(name))
    layout = LocalLayout(work_dir.resolve())
    dbfile = db_path(work_dir)
    overrides = options.overrides
    stored: dict[str, Any] | None = None
    if dbfile.exists():
        store = Store.open(dbfile)
        if not options.resume and not options.dry_run:
            n, held = len(store.trials()), store.get_meta("experiment")
            store.close()
            raise UserError(
                f"{work_dir} already holds a local run of experiment {held!r} ({n} trial(s)): "
                "pass --resume to continue it, or choose another --work-dir"
            )
        stored = {
            "overrides": store.get_meta("overrides") or {},
            "spec": store.get_meta("spec"),
            "volumes": store.get_meta("volumes") or {},
        }
        if store.get_meta("experiment") != name:
            raise UserError(
                f"{work_dir} holds experiment {store.get_meta('experiment')!r}, not {name!r} from {file}; "
                "pass the same file, or another --work-dir"
            )
        if overrides.without_counts().is_empty():
            base = Overrides.from_dict(stored["overrides"])
            overrides = Overrides(
                base.set_args,
                base.drop_args,
                base.set_env,
                base.params,
                base.algorithm_settings,
                base.early_stopping_settings,
                *(
                    new if new is not None else old
                    for new, old in (
                        (overrides.max_trial_count, base.max_trial_count),
                        (overrides.parallel, base.parallel),
                        (overrides.max_failed_trial_count, base.max_failed_trial_count),
                    )
                ),
                base.goal,
            )
        options.volumes = options.volumes or stored["volumes"]
    elif options.resume and not options.dry_run:
        raise UserError(f"--resume: {work_dir} holds no local run ({dbfile.name} not found); drop --resume")
    else:
        store = None  # type: ignore[assignment]

    raw, notes = overrides.apply(doc.data)
    if notes:
        say("overrides:\n" + "\n".join(f"  {n}" for n in notes))
        validate_effective(doc, raw, say)
    if stored is not None and stored["spec"] is not None:
        diff = first_difference(_strip_counts(raw), _strip_counts(stored["spec"]))
        if diff:
            raise UserError(
                f"{file}: the experiment differs from the one being resumed in {work_dir} at {diff}; "
                "resume with the same file and overrides (or none: the stored ones are reused), or use another --work-dir"
            )

    exp = Experiment(raw, doc)
    errors = local_support_errors(exp)
    problem = Problem.from_katib(exp.spec)
    algorithm = get_algorithm(problem.algorithm_name)
    errors += [f"algorithm {algorithm.name}: {e}" for e in algorithm.validate(problem)]
    early = None
    if exp.early_stopping is not None and exp.early_stopping.name == "medianstop":
        early, es_errors = MedianStopSettings.read(exp.early_stopping.settings)
        errors += [f"medianstop: {e}" for e in es_errors]
    if errors:
        raise UserError(f"{file}: cannot run locally: " + "; ".join(errors))
    plan_notes = list(algorithm.notes(problem))
    if exp.trial_template.kind == "PyTorchJob":
        plan_notes.append(
            "PyTorchJob: only the primary (Master) replica runs, as a single node on this machine "
            "(PET_NNODES=1, PET_NPROC_PER_NODE=1, a free MASTER_PORT per trial)"
        )
    if exp.resume_policy != "Never":
        plan_notes.append(f"resumePolicy {exp.resume_policy}: locally, --resume continues any run")

    parallel = max(problem.parallel_trial_count, 1)
    threads = options.threads_per_trial
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // parallel)
        plan_notes.append(
            f"each trial gets OMP_NUM_THREADS={threads} ({os.cpu_count()} CPUs / {parallel} parallel trials) "
            "unless set; --threads-per-trial changes it"
        )

    layout.work_dir.mkdir(parents=True, exist_ok=True)
    path_map = build_path_map(exp, layout, options.volumes, config_maps)
    obj = exp.objective
    strategies = {m: obj.metric_strategies.get(m, "latest") for m in obj.metric_names}
    mc = exp.metrics_collector
    plan = Plan(
        file=file,
        exp=exp,
        problem=problem,
        algorithm=algorithm,
        early_stopping=early,
        text_filter=TextFilter(obj.metric_names, mc.metrics_format),
        strategies=strategies,
        layout=layout,
        path_map=path_map,
        namespace=exp.namespace or "default",
        parameter_order=exp.parameter_names,
        threads_per_trial=threads,
        notes=plan_notes,
    )
    # a probe trial: rendering problems and a missing command show up now, not mid-search
    from kftune.katib.runner import render_command

    probe = render_command(plan, _probe_assignments(problem), f"{exp.name}-probe", {})
    check_command(probe.argv, probe.env)
    plan.probe = probe
    gpu_settings = options.gpu
    if options.dry_run and gpu_settings.mps:  # start no daemon for a dry run
        gpu_settings = GpuSettings(**{**gpu_settings.to_dict(), "mps": False})
    plan.gpu = build_scheduler(gpu_settings, layout.work_dir, say)
    if plan.gpu is not None:
        try:
            trial = plan.gpu.check(f"{exp.name}-probe", probe.argv, probe.cwd)
        except UserError:
            plan.gpu.close()
            raise
        plan.notes.append(f"GPU placement: {plan.gpu.describe()}")
        plan.notes.append(
            f"a probe trial books ~{trial.allocator_mib} MiB ({trial.source}) before the margin"
        )
        if plan.gpu.capacity < parallel:
            plan.notes.append(
                f"parallelTrialCount {parallel} > {plan.gpu.capacity} GPU slots: the other trials wait for a "
                "slot (as Katib's trial pods wait for a GPU); --trials-per-gpu raises the slots"
            )
    if options.dry_run:
        if store is not None:
            store.close()
        return plan, None  # type: ignore[return-value]

    if store is None:
        store = Store.open(dbfile, create=True)
        store.set_meta("experiment", exp.name)
        store.set_meta("file", str(file.resolve()))
        store.set_meta("created", time.time())
        store.set_meta("kftune_version", __version__)
    store.set_meta("spec", raw)
    store.set_meta("overrides", overrides.to_dict())
    store.set_meta("volumes", options.volumes)
    store.set_meta("work_dir", str(layout.work_dir))
    store.set_meta("paths", path_map.to_dict())
    store.event(None, "resumed" if stored is not None else "started", {"notes": notes, "pid": os.getpid()})
    return plan, store
