"""``kftune katib run FILE --local``: run a Katib Experiment on this machine.

The loop is Katib's experiment and trial controllers, with trials as subprocesses:

1. **Suggest.** While fewer than ``parallelTrialCount`` trials are active and ``maxTrialCount`` is
   not reached, the experiment's algorithm (``kftune.hpo``, the same code as the suggestion
   service) gets every trial so far (assignments, status, observation, labels, reports) and
   proposes up to that many new ones; fewer means "wait" (ASHA waiting for a rung), and
   ``is_complete`` (or nothing proposed with nothing running) ends the search - locally; Katib
   itself only ends on the goal, ``maxFailedTrialCount`` or ``maxTrialCount``.
2. **Render.** Each proposal becomes a trial named ``<experiment>-<NNN>`` and is rendered as Katib
   renders it (``Experiment.render_trial``/``trial_command``): ``${trialParameters.*}``,
   ``${trialSpec.Name}``..., the suggestion's labels copied onto the pod and read by downward-API
   env vars (``kftune.io/parent-trial``), Kubernetes ``$(VAR)`` expansion; container paths mapped
   to local ones (:mod:`kftune.katib.runner_paths`); ``kftune ...`` run as ``python -m kftune``.
   The argv is a list, never a shell command.
3. **Run.** A subprocess per trial (:mod:`kftune.katib.runner_process`), its output copied to
   ``logs/<trial>.out|.err`` and parsed as it arrives with Katib's collector semantics
   (:mod:`kftune.katib.collector`); medianstop's rule (fixed when the trial is created, as Katib
   does) is applied to each objective report and a trial it stops gets SIGTERM -> EarlyStopped.
4. **Finish.** Exit 0 with the objective reported -> Succeeded (Katib's observation: min/max/latest
   per metric); exit 0 without it -> MetricsUnavailable; any other exit, or ``status=nan_loss`` on
   stdout -> Failed, with the last stderr lines kept. Then the experiment's conditions
   (:mod:`kftune.katib.runner_status`): goal reached, too many failures, max trials, algorithm done.
5. **Record.** Every event goes to ``WORK_DIR/experiment.db`` at once (:mod:`kftune.katib.store`).

**Resume** (``--resume``, after ``kill -9`` of the runner, a crash or Ctrl-C): finished trials are
kept as they are. Trials that were running are *resumed*: a survivor process (recognised by pid
and start time; normally the kernel already sent it SIGTERM when the runner died) is stopped, then
the trial is started again under the same name - from its own ``last/`` checkpoint when it is a
``kftune train`` trial (or has ``--resume-from``) and ``OUTPUT_DIR/last/`` exists, keeping the
metric reports it printed before; otherwise from scratch, dropping them. The algorithm never sees a
trial vanish, so ASHA's rungs stay consistent.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kftune.errors import UserError
from kftune.hpo import TrialRecord
from kftune.hpo.earlystop import EarlyStoppingRule, median_stop_rule, should_stop
from kftune.katib.collector import (
    CollectionError,
    MetricLog,
    observation,
    observation_available,
    parse_json_line,
)
from kftune.katib.experiment import TrialCommand, find_container, primary_pod_template
from kftune.katib.runner_paths import PathMap, metrics_file_rule
from kftune.katib.runner_plan import Plan, local_argv
from kftune.katib.runner_process import (
    TrialProcess,
    attempt_marker,
    lines_since_attempt,
    process_alive,
    stop_process_group,
)
from kftune.katib.runner_progress import Progress, TrialView, format_number, format_seconds
from kftune.katib.runner_status import (
    ACTIVE,
    RUNNING,
    Condition,
    counts,
    experiment_condition,
    objective_text,
    optimal_trial,
)
from kftune.katib.store import Store, TrialRow
from kftune.train.gpu_share import Placement
from kftune.train.metric_lines import NAN_STATUS_LINE
from kftune.train.watchdog import MARK as WATCHDOG_MARK

LABEL_EXPERIMENT = "katib.kubeflow.org/experiment"  # pkg/controller.v1beta1/consts
LABEL_TRIAL = "katib.kubeflow.org/trial"
STDERR_KEPT = 20
TICK_S = 0.2  # how often running trials' logs are read


# ----------------------------------------------------------------------------------- render


@dataclass
class LocalCommand:
    argv: list[str]
    env: dict[str, str]  # the container's env, resolved and mapped
    cwd: str | None
    metrics_file: Path | None  # the File collector's file, mapped


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render_command(
    plan: Plan, assignments: dict[str, str], name: str, labels: dict[str, str]
) -> LocalCommand:
    """The local argv/env/cwd of one trial (see the module doc, step 2)."""
    exp = plan.exp
    rendered = exp.render_trial(assignments, name, plan.namespace)
    if plan.trial_kind == "PyTorchJob":
        _inject_operator_env(plan, rendered)
    pod_labels = {**labels, LABEL_EXPERIMENT: exp.name, LABEL_TRIAL: name}
    cmd: TrialCommand = exp.trial_command(rendered, labels=pod_labels)
    pm: PathMap = plan.path_map
    metrics_file = None
    rule = metrics_file_rule(exp, plan.layout, name)
    if rule is not None:
        pm = pm.with_rule(rule[0], rule[1])
        metrics_file = Path(pm.map_path(exp.metrics_collector.path))
    argv = local_argv([pm.map_value(a) for a in cmd.argv])
    env = {k: pm.map_value(v) for k, v in cmd.env.items()}
    cwd = pm.map_path(cmd.working_dir) if cmd.working_dir else None
    return LocalCommand(argv, env, cwd, metrics_file)


def _inject_operator_env(plan: Plan, rendered: dict[str, Any]) -> None:
    """What the training operator sets on a PyTorchJob's pods, for one local node."""
    tt = plan.exp.trial_template
    pod = primary_pod_template(rendered, tt.primary_pod_labels)
    if pod is None:
        return
    container = find_container(pod[1], tt.primary_container_name)
    if container is None:
        return
    have = {e.get("name") for e in container.get("env") or [] if isinstance(e, dict)}
    extra = {
        "PET_NNODES": "1",
        "PET_NPROC_PER_NODE": "1",
        "PET_NODE_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "WORLD_SIZE": "1",
        "RANK": "0",
    }
    container["env"] = [{"name": k, "value": v} for k, v in extra.items() if k not in have] + list(
        container.get("env") or []
    )


def flag_value(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.partition("=")[2]
    return None


def set_flag(argv: list[str], flag: str, value: str) -> list[str]:
    out = list(argv)
    for i, a in enumerate(out):
        if a == flag and i + 1 < len(out) and not out[i + 1].startswith("--"):
            out[i + 1] = value
            return out
        if a == flag or a.startswith(flag + "="):
            out[i] = f"{flag}={value}"
            return out
    return [*out, f"{flag}={value}"]


def is_kftune_train(argv: list[str]) -> bool:
    return argv[1:4] == ["-m", "kftune", "train"]


# ----------------------------------------------------------------------------------- state


@dataclass
class TrialState:
    row: TrialRow
    logs: list[MetricLog] = field(default_factory=list)  # the observation log so far
    rule: EarlyStoppingRule | None = None
    proc: TrialProcess | None = None
    metrics_file: Path | None = None
    metrics_offset: int = 0
    metrics_partial: bytes = b""
    nan: bool = False
    collection_error: str | None = None

    def objective_reports(self, metric: str) -> list[tuple[int, float]]:
        out = []
        for log in self.logs:
            if log.name == metric and (v := log.number) is not None:
                out.append((len(out) + 1, v))
        return out


@dataclass
class RunResult:
    condition: Condition
    optimal: dict[str, Any] | None
    counts: dict[str, int]
    work_dir: Path
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.condition.type == "Failed" else 0

    def to_dict(self, experiment: str, file: str) -> dict[str, Any]:
        return {
            "experiment": experiment,
            "file": file,
            "workDir": str(self.work_dir),
            "condition": self.condition.to_dict(),
            "trials": self.counts,
            "currentOptimalTrial": self.optimal,
        }


class Interrupted(Exception):
    pass


# ----------------------------------------------------------------------------------- runner


class LocalRunner:
    def __init__(self, plan: Plan, store: Store, progress: Progress, grace_s: float = 30.0):
        self.plan = plan
        self.store = store
        self.progress = progress
        self.grace_s = grace_s
        self.states: dict[str, TrialState] = {}
        self.queue: list[TrialState] = []  # to (re)start when a slot frees
        self.placements: dict[str, Placement] = {}  # trial -> its GPU booking (while it runs)
        self.selector = selectors.DefaultSelector()
        self.suggestion_done = False
        self.done_message = ""
        self.dirty = True  # trials changed since the algorithm last proposed fewer than asked
        self.condition: Condition = RUNNING
        self.interrupts = 0
        self._wake_r: int | None = None
        self._old_handlers: dict[int, Any] = {}
        self._old_wakeup: int | None = None
        self._load()

    # ------------------------------------------------------------------ records
    def _load(self) -> None:
        for row in self.store.trials():
            st = TrialState(row)
            st.logs = self.store.metric_logs(row.name, row.metrics_from_attempt)
            if row.stop_rule:
                st.rule = EarlyStoppingRule(**row.stop_rule)
            self.states[row.name] = st

    @property
    def rows(self) -> list[TrialRow]:
        return [st.row for st in self.states.values()]

    def _running(self) -> list[TrialState]:
        return [st for st in self.states.values() if st.proc is not None]

    def _active_count(self) -> int:
        return sum(1 for st in self.states.values() if st.row.status in ACTIVE)

    def _record(self, st: TrialState) -> TrialRecord:
        row = st.row
        metrics: dict[str, float] = {}
        if row.observation is not None and row.status in ("Succeeded", "EarlyStopped"):
            for m in row.metrics:
                with contextlib.suppress(ValueError):
                    metrics[m.name] = float(m.value(self.plan.strategies.get(m.name, "latest")))
        return TrialRecord(
            name=row.name,
            assignments=dict(row.assignments),
            status=row.status,
            metrics=metrics,
            labels=dict(row.labels),
            intermediate=st.objective_reports(self.plan.objective_metric),
        )

    def records(self) -> list[TrialRecord]:
        return [self._record(st) for st in self.states.values()]

    def _update(self, st: TrialState, kind: str, data: Any = None, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(st.row, key, value)
        self.store.update_trial(st.row.name, kind, data, **changes)

    # ------------------------------------------------------------------ main loop
    def run(self) -> RunResult:
        self._install_signals()
        interrupted = False
        try:
            self._recover()
            self._refresh()
            while True:
                if self.interrupts:
                    raise Interrupted
                self._start_queued()
                if not self.condition.completed:
                    self._create_trials()
                self._refresh()
                if not self._running() and not self.queue:
                    if self.condition.completed:
                        break
                    if not self.suggestion_done:
                        self.suggestion_done = True
                        self.done_message = "the algorithm proposed nothing more and no trial is running"
                        self._refresh()
                        continue
                    break  # pragma: no cover - the condition above is completed then
                self._wait(0.5)
        except Interrupted:
            interrupted = True
            self._stop_all("interrupt")
        except BaseException:  # a bug or an unexpected error: leave no trial running behind
            with contextlib.suppress(Exception):
                self._stop_all("interrupt")
            raise
        finally:
            self._restore_signals()
            self.progress.close()
        rows = self.rows
        best = optimal_trial(rows, self.plan.exp)
        result = RunResult(
            condition=self.condition,
            optimal=best.to_katib(self.plan.parameter_order) if best else None,
            counts=counts(rows),
            work_dir=self.plan.layout.work_dir,
            interrupted=interrupted,
        )
        if not interrupted:
            self.store.set_meta("condition", self.condition.to_dict())
            self.store.event(None, "finished", self.condition.to_dict())
        else:
            self.store.event(None, "interrupted", {"running": [st.row.name for st in self.queue]})
        return result

    def _refresh(self) -> None:
        cond = experiment_condition(self.rows, self.plan.exp, self.suggestion_done, self.done_message)
        if cond.completed and not self.condition.completed:
            self.store.set_meta("condition", cond.to_dict())
            self.store.event(None, "condition", cond.to_dict())
            running = len(self._running())
            self.progress.say(
                f"experiment {self.plan.exp.name}: {cond.type} ({cond.reason}): {cond.message}"
                + (f"; waiting for {running} running trial(s)" if running else "")
            )
        self.condition = cond if cond.completed or not self.condition.completed else self.condition
        self._draw()

    # ------------------------------------------------------------------ creating trials
    def _create_trials(self) -> None:
        if self.suggestion_done:
            return
        exp = self.plan.exp
        slots = self.plan.problem.parallel_trial_count - self._active_count()
        if exp.max_trial_count is not None:
            slots = min(slots, exp.max_trial_count - len(self.states))
        if slots <= 0 or not self.dirty:
            return
        records = self.records()
        t0 = time.perf_counter()
        try:
            suggestions = self.plan.algorithm.suggest(self.plan.problem, records, slots)
        except UserError as exc:
            self.suggestion_done = True
            self.done_message = f"the algorithm failed: {exc}"
            self.progress.say(f"suggestion failed: {exc}")
            return
        suggest_s = time.perf_counter() - t0
        for s in suggestions:
            try:
                self._new_trial(s.assignments, s.labels, s.trial_name, suggest_s)
            except UserError as exc:  # Katib would fail to create the trial: no more trials
                self.suggestion_done = True
                self.done_message = f"a trial could not be rendered: {exc}"
                self.progress.say(f"cannot create a trial for {s.assignments}: {exc}")
                return
        if len(suggestions) < slots:
            self.dirty = False
            if self.plan.algorithm.is_complete(self.plan.problem, self.records()):
                self.suggestion_done = True
                self.done_message = f"{self.plan.algorithm.name} has nothing more to propose"

    def _new_trial(
        self, assignments: dict[str, str], labels: dict[str, str], name: str | None, suggest_s: float
    ) -> None:
        exp = self.plan.exp
        seq = max((st.row.seq for st in self.states.values()), default=0) + 1
        name = name or f"{exp.name}-{seq:03d}"
        while name in self.states:
            seq += 1
            name = f"{exp.name}-{seq:03d}"
        labels = {LABEL_EXPERIMENT: exp.name, **{k: str(v) for k, v in labels.items()}}
        cmd = render_command(self.plan, dict(assignments), name, labels)
        rule = None
        if self.plan.early_stopping is not None:
            rule = median_stop_rule(self.plan.problem.objective, self.records(), self.plan.early_stopping)
        layout = self.plan.layout
        out_dir = flag_value(cmd.argv, "--output-dir")
        row = TrialRow(
            name=name,
            seq=seq,
            assignments={k: str(v) for k, v in assignments.items()},
            labels=labels,
            argv=cmd.argv,
            cwd=cmd.cwd,
            env=cmd.env,
            output_dir=str(Path(cmd.cwd or ".", out_dir)) if out_dir else None,
            status="Created",
            created=time.time(),
            stop_rule=asdict(rule) if rule else None,
            log_out=str(layout.logs / f"{name}.out"),
            log_err=str(layout.logs / f"{name}.err"),
        )
        self.store.add_trial(
            row,
            {
                "assignments": row.assignments,
                "labels": labels,
                "argv": row.argv,
                "cwd": row.cwd,
                "stop_rule": row.stop_rule,
                "suggest_seconds": round(suggest_s, 4),
            },
        )
        st = TrialState(row, rule=rule, metrics_file=cmd.metrics_file)
        self.states[name] = st
        self.dirty = True
        if self.plan.gpu is None:
            self._start(st)
        else:  # it starts when a GPU has a slot and the memory for it
            self.queue.append(st)
            self._start_queued()

    # ------------------------------------------------------------------ starting
    def _process_env(self, container_env: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        threads = self.plan.threads_per_trial
        if threads and "OMP_NUM_THREADS" not in os.environ and "OMP_NUM_THREADS" not in container_env:
            env["OMP_NUM_THREADS"] = str(threads)
        env.update(container_env)
        return env

    def _start(self, st: TrialState, append: bool = False, marker: str | None = None) -> None:
        row = st.row
        if row.cwd:
            Path(row.cwd).mkdir(parents=True, exist_ok=True)
        if st.metrics_file is None:
            st.metrics_file = self._metrics_file(row.name)
        if st.metrics_file is not None:
            st.metrics_file.parent.mkdir(parents=True, exist_ok=True)
            st.metrics_offset = st.metrics_file.stat().st_size if st.metrics_file.exists() else 0
            st.metrics_partial = b""
        env = self._process_env(row.env)
        placement = self.placements.get(row.name)
        if placement is not None:
            env.update(placement.env())
        proc = TrialProcess(
            row.name,
            row.argv,
            env,
            row.cwd,
            Path(row.log_out or self.plan.layout.logs / f"{row.name}.out"),
            Path(row.log_err or self.plan.layout.logs / f"{row.name}.err"),
            append=append,
        )
        if marker:
            proc.write_marker(marker)
        st.nan = False
        st.collection_error = None
        try:
            proc.start()
        except OSError as exc:
            self._release_gpu(st)
            self._fail_unstarted(st, f"could not start {row.argv[0]!r}: {exc}", exc, attempt=row.attempt + 1)
            return
        st.proc = proc
        self._update(
            st,
            "started",
            {"pid": proc.pid, "attempt": row.attempt + 1},
            status="Running",
            pid=proc.pid,
            pid_start=proc.pid_start,
            started=row.started or proc.started,
            attempt=row.attempt + 1,
        )
        self.progress.event(
            row.name, f"Running   {_params_text(row.assignments)}{_rung_text(row.labels)} (pid {proc.pid})"
        )

    def _fail_unstarted(self, st: TrialState, message: str, exc: Exception, **changes: Any) -> None:
        """A trial whose process never ran: Failed with the reason."""
        self._update(
            st,
            "finished",
            {"status": "Failed", "error": str(exc)},
            status="Failed",
            reason="TrialFailed",
            message=message,
            finished=time.time(),
            **changes,
        )
        self.dirty = True
        self.progress.say(f"{st.row.name} Failed: {message}")

    # ------------------------------------------------------------------ resume
    def _recover(self) -> None:
        """Trials left active by an earlier runner: stop survivors, queue them to run again."""
        for st in self.states.values():
            row = st.row
            if row.status not in ACTIVE:
                continue
            if row.pid and process_alive(row.pid, row.pid_start):
                outcome = stop_process_group(row.pid, row.pid_start, self.grace_s)
                self.store.event(row.name, "orphan-stopped", {"pid": row.pid, "outcome": outcome})
                self.progress.say(
                    f"{row.name}: stopped the process left by the previous runner (pid {row.pid})"
                )
            if row.attempt:
                self._reread_logs(st)
            self.queue.append(st)
        if self.queue:
            self.progress.say(
                f"resuming: {len(self.queue)} trial(s) were running: "
                + ", ".join(st.row.name for st in self.queue)
            )

    def _reread_logs(self, st: TrialState) -> None:
        """Rebuild an interrupted trial's observation log from its log files (the dead runner may
        not have recorded the last reports)."""
        row = st.row
        before = len(st.logs)
        if self.plan.collector_kind == "StdOut":
            logs: list[MetricLog] = []
            for path in (row.log_out, row.log_err):
                if path:
                    for line in lines_since_attempt(Path(path), row.metrics_from_attempt):
                        logs += self.plan.text_filter.parse(line)
            st.logs = logs
        else:
            st.metrics_file = self._metrics_file(row.name)
            st.metrics_offset, st.metrics_partial, st.logs = 0, b"", []
            self._tail_metrics_file(st, final=True, record=False)
        self.store.replace_metric_logs(row.name, row.metrics_from_attempt, row.attempt, st.logs)
        self.store.event(row.name, "logs-reread", {"metric_logs": len(st.logs), "recorded": before})

    def _metrics_file(self, name: str) -> Path | None:
        rule = metrics_file_rule(self.plan.exp, self.plan.layout, name)
        if rule is None:
            return None
        return Path(self.plan.path_map.with_rule(*rule).map_path(self.plan.exp.metrics_collector.path))

    def _start_queued(self) -> None:
        while self.queue and len(self._running()) < self.plan.problem.parallel_trial_count:
            st = self.queue[0]
            if self.plan.gpu is not None:
                placed = self._place(st)
                if placed is None:
                    continue  # refused and taken off the queue: try the next one
                if not placed:
                    break  # first in, first out: the trials behind it wait too
            self.queue.pop(0)
            self._restart(st)

    def _place(self, st: TrialState) -> bool | None:
        """Book a GPU for the queue's head: True when booked, False when it must wait, None when it
        fits on no GPU even alone (then it is a Failed trial with the reason, off the queue)."""
        gpu = self.plan.gpu
        assert gpu is not None
        row = st.row
        was_waiting = row.name in gpu.waiting
        try:
            placement = gpu.place(row.name, row.argv, row.cwd)
        except UserError as exc:
            self.queue.pop(0)
            self._fail_unstarted(st, f"not started: {exc}", exc)
            self._refresh()
            return None
        if placement is None:
            if not was_waiting:
                self.progress.event(row.name, "Waiting   for a GPU slot with enough free memory")
                self.store.event(row.name, "waiting-for-gpu", None)
            return False
        self.placements[row.name] = placement
        self.store.event(
            row.name,
            "gpu-placed",
            {
                "gpu": placement.gpu.index,
                "booked_mib": placement.need_mib,
                "cap_mib": placement.cap_mib,
                "source": placement.trial.source,
                "env": placement.env(),
            },
        )
        return True

    def _release_gpu(self, st: TrialState) -> None:
        if self.plan.gpu is None or self.placements.pop(st.row.name, None) is None:
            return
        peak = self.plan.gpu.release(st.row.name, st.row.output_dir)
        if peak is not None:
            self.store.event(st.row.name, "gpu-peak", {"peak_mib": peak})

    def _restart(self, st: TrialState) -> None:
        row = st.row
        if row.attempt == 0:  # created, never started
            self._start(st)
            return
        argv = list(row.argv)
        out_dir = row.output_dir
        resumable = is_kftune_train(argv) or flag_value(argv, "--resume-from") is not None
        checkpoint = Path(out_dir) / "last" if out_dir else None
        if resumable and checkpoint is not None and checkpoint.is_dir():
            argv = set_flag(argv, "--resume-from", str(Path(out_dir).resolve()))  # type: ignore[arg-type]
            how = f"resumed from {checkpoint}"
            keep_from = row.metrics_from_attempt
        else:
            how = "started over (no checkpoint to resume from)"
            keep_from = row.attempt + 1
            st.logs = []
            metrics_file = st.metrics_file or self._metrics_file(row.name)
            if metrics_file is not None and metrics_file.exists():
                metrics_file.unlink()  # a fresh pod starts with an empty metrics directory
        self._update(
            st,
            "restarted",
            {"attempt": row.attempt + 1, "how": how, "argv": argv},
            argv=argv,
            metrics_from_attempt=keep_from,
            status="Created",
        )
        self.progress.say(f"{row.name}: attempt {row.attempt + 1}, {how}")
        self._start(st, append=True, marker=attempt_marker(row.attempt + 1, how))

    # ------------------------------------------------------------------ waiting and reading
    def _wait(self, timeout: float) -> None:
        """Sleep until a signal (a trial exited, Ctrl-C) or ``timeout``; then read the trials' logs."""
        if self._running() or self.queue:
            timeout = min(timeout, TICK_S)
        for key, _ in self.selector.select(timeout):
            with contextlib.suppress(OSError):
                os.read(key.fd, 512)
        for st in self._running():
            proc = st.proc
            assert proc is not None
            exited = proc.poll() is not None
            for stream in ("out", "err"):
                self._lines(st, stream, proc.read(stream, final=exited))
            self._tail_metrics_file(st, final=exited)
            proc.kill_if_overdue(self.grace_s)
            if exited:
                self._finish(st)
        self._draw()

    def _lines(self, st: TrialState, stream: str, lines: list[str]) -> None:
        if not lines:
            return
        if stream == "out" and any(NAN_STATUS_LINE in line.split() for line in lines):
            st.nan = True
        if stream == "err":
            for line in lines:
                if line.startswith(WATCHDOG_MARK):  # the trial's own watchdog stopped a stalled run
                    message = line[len(WATCHDOG_MARK) :].strip()
                    self.store.event(st.row.name, "stalled", {"message": message, "attempt": st.row.attempt})
                    self.progress.event(st.row.name, f"stalled   {message}")
        if self.plan.collector_kind != "StdOut":
            return
        for line in lines:
            self._add_logs(st, self.plan.text_filter.parse(line))

    def _add_logs(self, st: TrialState, logs: list[MetricLog]) -> None:
        if not logs:
            return
        st.logs.extend(logs)
        self.store.add_metric_logs(st.row.name, st.row.attempt, logs)
        metric = self.plan.objective_metric
        reported = [log for log in logs if log.name == metric]
        if reported:
            self.progress.event(
                st.row.name, "report    " + " ".join(f"{log.name}={format_number(log.value)}" for log in logs)
            )
            self._check_early_stop(st)

    def _tail_metrics_file(self, st: TrialState, final: bool = False, record: bool = True) -> None:
        path = st.metrics_file
        if path is None or st.collection_error or not path.exists():
            return
        with open(path, "rb") as fh:
            fh.seek(st.metrics_offset)
            data = fh.read()
        st.metrics_offset += len(data)
        buf = st.metrics_partial + data
        *complete, rest = buf.split(b"\n")
        if final and rest:
            complete.append(rest)
            rest = b""
        st.metrics_partial = rest
        names = self.plan.exp.objective.metric_names
        logs: list[MetricLog] = []
        for raw in complete:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if self.plan.exp.metrics_collector.file_format == "JSON":
                try:
                    logs += parse_json_line(line, names)
                except CollectionError as exc:
                    st.collection_error = str(exc)
                    break
            else:
                logs += self.plan.text_filter.parse(line)
        if record:
            self._add_logs(st, logs)
        else:
            st.logs.extend(logs)

    def _check_early_stop(self, st: TrialState) -> None:
        if st.rule is None or st.proc is None or st.proc.stop_reason:
            return
        reports = st.objective_reports(self.plan.objective_metric)
        if should_stop(st.rule, reports, self.plan.problem.objective):
            st.proc.terminate("early")
            best = (
                max(v for _, v in reports)
                if self.plan.problem.objective.maximize
                else min(v for _, v in reports)
            )
            self.store.event(
                st.row.name,
                "early-stopping",
                {"rule": asdict(st.rule), "reports": len(reports), "best": best},
            )
            self.progress.event(
                st.row.name,
                f"stopping  medianstop: best {st.rule.metric}={best:g} {st.rule.comparison} {st.rule.value:g} "
                f"after {len(reports)} reports",
            )

    # ------------------------------------------------------------------ finishing
    def _finish(self, st: TrialState) -> None:
        proc = st.proc
        assert proc is not None and proc.proc is not None
        code = proc.proc.wait()
        for stream in ("out", "err"):
            self._lines(st, stream, proc.read(stream, final=True))
        self._tail_metrics_file(st, final=True)
        st.proc = None
        self._release_gpu(st)
        row = st.row
        tail = list(proc.stderr_tail)[-STDERR_KEPT:]
        obs = observation(st.logs, self.plan.strategies)
        observed = None
        if proc.stop_reason == "interrupt":
            self.store.event(row.name, "interrupted", {"exit_code": code, "attempt": row.attempt})
            self.queue.append(st)  # run again on --resume
            return
        if proc.stop_reason == "early":
            status, reason, message = (
                "EarlyStopped",
                "TrialEarlyStopped",
                "Trial is early stopped by medianstop",
            )
            observed = obs
        elif proc.stop_reason == "kill":
            status, reason, message = "Killed", "TrialKilled", "Trial was killed"
        elif st.collection_error:
            status, reason, message = "Failed", "MetricsCollectionFailed", st.collection_error
        elif st.nan:
            status, reason = "Failed", "NanLoss"
            message = f"the trial printed {NAN_STATUS_LINE} and exited {code}"
        elif code != 0:
            status, reason = "Failed", "TrialFailed"
            message = f"exited {code}" if code > 0 else f"killed by signal {-code}"
        elif observation_available(obs, self.plan.objective_metric):
            status, reason, message = "Succeeded", "TrialSucceeded", "Trial has succeeded"
            observed = obs
        else:
            status, reason = "MetricsUnavailable", "TrialMetricsUnavailable"
            message = f"Metrics are not available: objective {self.plan.objective_metric} was never reported"
        if status == "Failed" and tail:
            message += "\n" + "\n".join(tail)
        self._update(
            st,
            "finished",
            {"status": status, "reason": reason, "exit_code": code},
            status=status,
            reason=reason,
            message=message,
            exit_code=code,
            finished=time.time(),
            observation=[m.to_dict() for m in observed] if observed is not None else None,
        )
        self.dirty = True
        elapsed = format_seconds(time.time() - (row.started or time.time()))
        value = self._objective_display(st)
        self.progress.event(
            row.name, f"{status:<9} {self.plan.objective_metric}={value or '-'} in {elapsed} (exit {code})"
        )
        if status == "Failed":
            shown = "\n".join("    " + line for line in tail[-5:])
            self.progress.say(
                f"{row.name} Failed ({reason}, exit {code}); last stderr lines ({row.log_err}):\n{shown}"
                if shown
                else f"{row.name} Failed ({reason}, exit {code}); stderr was empty ({row.log_err})"
            )
        self._refresh()

    def _stop_all(self, reason: str) -> None:
        running = self._running()
        for st in running:
            st.proc.terminate(reason)  # type: ignore[union-attr]
        deadline = time.monotonic() + self.grace_s + 5
        while self._running() and time.monotonic() < deadline:
            self._wait(0.2)
            if self.interrupts > 1:  # a second Ctrl-C: no more waiting
                for st in self._running():
                    st.proc.signal_group(signal.SIGKILL)  # type: ignore[union-attr]
        for st in self._running():  # pragma: no cover - ignored SIGKILL?
            st.proc.signal_group(signal.SIGKILL)  # type: ignore[union-attr]
            self._finish(st)
        if running:
            self.progress.say(
                f"interrupted: stopped {len(running)} running trial(s); "
                "continue with the same command and --resume"
            )

    # ------------------------------------------------------------------ display
    def _objective_display(self, st: TrialState) -> str:
        metric = self.plan.objective_metric
        if st.row.observation is not None:
            text = objective_text(st.row, metric, self.plan.strategies.get(metric, "latest"))
            return format_number(text) if text != "unavailable" else ""
        reports = [log.value for log in st.logs if log.name == metric]
        return format_number(reports[-1]) if reports else ""

    def _draw(self) -> None:
        if self.progress.mode != "table":
            return
        views = [
            TrialView(
                st.row.name,
                st.row.status,
                st.row.assignments,
                st.row.labels,
                self._objective_display(st),
                st.row.started,
                st.row.finished,
            )
            for st in self.states.values()
        ]
        self.progress.update(views, self.summary())

    def summary(self) -> str:
        c = counts(self.rows)
        parts = [f"{k.lower()} {v}" for k, v in c.items() if v]
        best = optimal_trial(self.rows, self.plan.exp)
        best_text = (
            f"; best {best.trial.name} {self.plan.objective_metric}={best.value:g}"
            if best is not None
            else ""
        )
        return (
            f"{self.plan.exp.name} ({self.plan.algorithm.name}): {len(self.rows)} trial(s): "
            + ", ".join(parts)
            + best_text
            + f" elapsed {format_seconds(time.time() - self.progress.t0)}"
        )

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum: int, frame: Any) -> None:
        self.interrupts += 1

    def _install_signals(self) -> None:
        try:
            r, w = os.pipe()
            os.set_blocking(r, False)
            os.set_blocking(w, False)
            self._old_wakeup = signal.set_wakeup_fd(w)
            self._wake_r, self._wake_w = r, w
            self.selector.register(r, selectors.EVENT_READ, None)
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
            # a trial's exit wakes the loop at once (the handler does nothing; the wake-up fd does)
            self._old_handlers[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _ignore)
        except ValueError:  # not the main thread: no signal handling
            pass

    def _restore_signals(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
        if self._wake_r is not None:
            with contextlib.suppress(ValueError):
                signal.set_wakeup_fd(self._old_wakeup if self._old_wakeup is not None else -1)
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(self._wake_r)
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._wake_r = None


def _ignore(signum: int, frame: Any) -> None:
    pass


def _params_text(assignments: dict[str, str]) -> str:
    return " ".join(f"{k}={format_number(v)}" for k, v in assignments.items())


def _rung_text(labels: dict[str, str]) -> str:
    from kftune.hpo.base import LABEL_PARENT, LABEL_RUNG

    rung = labels.get(LABEL_RUNG)
    if rung is None:
        return ""
    parent = labels.get(LABEL_PARENT)
    return f" rung {rung}" + (f" (promoted from {parent})" if parent else "")


# ----------------------------------------------------------------------------------- entry


@dataclass
class LocalRun:
    plan: Plan
    result: RunResult

    @property
    def result_file(self) -> Path:
        return self.plan.layout.work_dir / "result.json"


def run_local(options: Any, progress: Progress) -> LocalRun:
    """Prepare (validate, override, check), run to the end, write ``result.json`` (not when
    interrupted). ``options`` is a :class:`kftune.katib.runner_plan.RunOptions`."""
    from kftune.katib.runner_plan import prepare

    plan, store = prepare(options, progress.say)
    progress.metric = plan.objective_metric
    try:
        for note in plan.path_map.notes:
            progress.say(f"path {note}")
        for note in plan.notes:
            progress.say(f"note: {note}")
        exp = plan.exp
        progress.say(
            f"experiment {exp.name}: algorithm {plan.algorithm.name}, {plan.problem.parallel_trial_count} "
            f"parallel, max {exp.max_trial_count or 'unlimited'} trials; work dir {plan.layout.work_dir}"
        )
        result = LocalRunner(plan, store, progress, grace_s=options.grace_s).run()
    finally:
        store.close()
        if plan.gpu is not None:
            plan.gpu.close()  # stops the run's MPS daemon, if it started one
    run = LocalRun(plan, result)
    if not result.interrupted:
        write_result(run.result_file, result.to_dict(plan.exp.name, str(plan.file)))
        c = result.condition
        progress.say(
            f"experiment {plan.exp.name} {c.type} ({c.reason}): "
            + ", ".join(f"{k} {v}" for k, v in result.counts.items() if v)
            + f"; result in {run.result_file}"
        )
    return run


# ----------------------------------------------------------------------------------- output


def optimal_yaml(optimal: dict[str, Any] | None) -> str:
    import yaml

    return yaml.safe_dump({"currentOptimalTrial": optimal or {}}, sort_keys=False, default_flow_style=False)


def write_result(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


__all__ = [
    "LocalRun",
    "LocalRunner",
    "RunResult",
    "optimal_yaml",
    "render_command",
    "run_local",
    "write_result",
]
