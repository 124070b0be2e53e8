"""``kftune katib serve``: kftune's Katib suggestion service (``asha``, ``bohb``, and the rest of
:mod:`kftune.hpo`) over Katib's v1beta1 ``Suggestion`` gRPC API.

Katib starts this service itself, one Deployment per Experiment, from the algorithm's entry in
``katib-config`` (the Helm chart registers ``asha`` and ``bohb``; README "Registering the
suggestion service"). It listens on port 6789 and answers:

- ``GetSuggestions``: **stateless**. Every call rebuilds the problem from the request's experiment
  (parameters, objective, algorithm settings, counts) and one :class:`~kftune.hpo.TrialRecord` per
  trial the controller sends: its assignments, its latest condition as the status, its
  observation's metrics (the controller has already reduced each metric by its strategy -
  min/max/latest - in ``convertTrialObservation``; values that are not numbers are dropped) and the
  trial's labels, where ``kftune.io/config``, ``kftune.io/rung``, ``kftune.io/parent-trial`` and
  ``kftune.io/bracket`` carry ASHA's and BOHB's state (docs/contracts.md). The reply holds the
  algorithm's assignments and labels; ``trial_name`` stays empty, so Katib names trials
  ``<experiment>-<random>`` as for its own algorithms (a name of ours that clashed with an existing
  trial would make the trial's creation fail on every retry). A pod reads its parent from the
  label (the downward API in katib/ner-asha.yaml). Nothing that could change an answer survives
  a call; the parsed experiment is memoised by its bytes (:func:`cached_problem`) so that the
  value-parsing caches of :mod:`kftune.hpo.space` stay warm from one request to the next, and each
  trial's record by its message's bytes (:func:`trial_records`).
- ``ValidateAlgorithmSettings``: the algorithm's own checks (``validate`` in :mod:`kftune.hpo`),
  then, for ``asha``/``bohb``, :func:`kftune.katib.service_rules.katib_errors`. Problems are
  returned as ``INVALID_ARGUMENT`` with the messages joined by ``; `` (as Katib's optuna and
  hyperopt services do); the controller marks the Suggestion Failed with ``Validation failed:
  ValidateAlgorithmSettings Error: <message>`` and the Experiment Failed ("Suggestion has failed").
- ``grpc.health.v1.Health``: SERVING for ``""``, ``manager.v1beta1.Suggestion`` (what Katib's pod
  probes ask for) and ``api.v1.beta1.Suggestion``; NOT_SERVING once shutdown starts.

**Exactly N.** Katib's controller fails the sync unless the reply has exactly
``current_request_number`` assignments (``suggestionclient.go``). When the algorithm can give
fewer right now, the service answers with an error and nothing, never a short reply:

- ``UNAVAILABLE`` ("kftune: waiting: ...") while trials are running: more becomes possible when
  they finish. The controller requeues the Suggestion with a backoff, and asks again as soon as a
  trial finishes, because the experiment controller then raises the Suggestion's
  ``spec.requests`` (``experiment_controller.go: ReconcileSuggestions``) and the suggestion
  controller watches Suggestions.
- ``FAILED_PRECONDITION`` ("kftune: search complete: ...") when the algorithm ``is_complete``.
  Katib has no end-of-search signal (``status_util.go`` passes ``getSuggestionDone = false``), so
  the Experiment stays Running; ``kftune katib submit --wait`` treats "no trial active and the
  Suggestion's latest event carries this marker" as the end of the search.
- ``FAILED_PRECONDITION`` ("kftune: search exhausted: ...") when fewer are possible and no trial is
  running: waiting cannot help, and the client ends the same way.

**End of the budget, the Katib way.** ``ValidateAlgorithmSettings`` accepts asha/bohb settings only
when the algorithm can always fill every request until ``maxTrialCount`` ends the experiment
(:mod:`kftune.katib.service_rules`: ``asha`` with ``num_configurations`` unset, or
``maxTrialCount <= num_configurations``; ``bohb`` with ``maxTrialCount`` at most the first-stage
trials of ``num_iterations`` iterations). Then no request is ever answered with an error, and the
experiment ends Succeeded (``ExperimentMaxTrialsReached``) like any Katib search. The error
answers above remain for experiments Katib does not re-validate (a restart with a larger
``maxTrialCount``) and for trials it hides from the service.

**Hidden trials.** The controller leaves out trials whose metrics are unavailable (and early-stopped
ones without an observation). ASHA/BOHB number new configurations ``max(seen) + 1``, which could
reuse the id of a hidden configuration; the service therefore relabels each new configuration with
its Katib sequence number (``total_request_number - current_request_number + i``: the number of
suggestions Katib had taken before, plus its place in the reply), which no earlier trial can hold.
A hidden promoted trial looks never-run to ASHA, which promotes its configuration again: a retry,
bounded by ``maxFailedTrialCount`` (Katib counts metrics-unavailable trials as failed).

Each request is logged on stderr (experiment, algorithm, trial counts, asked/replied, latency, or
the status and message); nothing is written to disk (the pod's root filesystem is read-only). SIGTERM
or SIGINT: health goes NOT_SERVING, in-flight calls get ``--grace`` seconds, exit 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import grpc

from kftune.errors import UserError
from kftune.hpo import LABEL_CONFIG, LABEL_PARENT, Problem, Suggestion, TrialRecord, get_algorithm
from kftune.hpo.space import remember
from kftune.katib import proto
from kftune.katib.service_rules import MARK_COMPLETE, MARK_EXHAUSTED, MARK_WAITING, katib_errors

log = logging.getLogger("kftune.katib.service")

DEFAULT_PORT = 6789
#: Algorithms whose new configurations carry ``kftune.io/config`` (renumbered, see module doc).
LADDER_ALGORITHMS = ("asha", "bohb", "hyperband")
#: Loaded at start-up so that the first request does not pay for imports.
PRELOAD = ("asha", "bohb")
MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # 1,000 trials are ~0.3 MB; grpc's default limit is 4 MB

# ----------------------------------------------------------------------------- request -> hpo

_PARAMETER_TYPES = {1: "double", 2: "int", 3: "discrete", 4: "categorical"}  # api.proto ParameterType
_DISTRIBUTIONS = {1: "uniform", 2: "logUniform", 3: "normal", 4: "logNormal"}  # api.proto Distribution
_OBJECTIVE_TYPES = {1: "minimize", 2: "maximize"}  # api.proto ObjectiveType
# api.proto TrialStatus.TrialConditionType. The controller sends UNKNOWN (7) for a condition it
# has no enum for, i.e. MetricsUnavailable, whose trials it skips anyway.
_CONDITIONS = {
    0: "Created",
    1: "Running",
    2: "Succeeded",
    3: "Killed",
    4: "Failed",
    5: "MetricsUnavailable",
    6: "EarlyStopped",
    7: "MetricsUnavailable",
}


def experiment_spec(experiment: Any) -> dict[str, Any]:
    """A request's ``Experiment`` message as the Experiment YAML's ``spec`` (what
    :meth:`kftune.hpo.Problem.from_katib` reads)."""
    spec = experiment.spec
    parameters = []
    for p in spec.parameter_specs.parameters:
        fs = p.feasible_space
        feasible: dict[str, Any] = {}
        for key in ("min", "max", "step"):
            if getattr(fs, key):
                feasible[key] = getattr(fs, key)
        if len(fs.list):
            feasible["list"] = list(fs.list)
        if fs.distribution in _DISTRIBUTIONS:
            feasible["distribution"] = _DISTRIBUTIONS[fs.distribution]
        parameters.append(
            {
                "name": p.name,
                "parameterType": _PARAMETER_TYPES.get(p.parameter_type, "unknown"),
                "feasibleSpace": feasible,
            }
        )
    out: dict[str, Any] = {
        "parameters": parameters,
        "objective": {
            "type": _OBJECTIVE_TYPES.get(spec.objective.type, "unknown"),
            "objectiveMetricName": spec.objective.objective_metric_name,
            "additionalMetricNames": list(spec.objective.additional_metric_names),
        },
        "algorithm": {
            "algorithmName": spec.algorithm.algorithm_name,
            "algorithmSettings": [
                {"name": s.name, "value": s.value} for s in spec.algorithm.algorithm_settings
            ],
        },
    }
    # proto3 int32: 0 means unset (Katib's webhook rejects 0 for both).
    if spec.parallel_trial_count > 0:
        out["parallelTrialCount"] = spec.parallel_trial_count
    if spec.max_trial_count > 0:
        out["maxTrialCount"] = spec.max_trial_count
    return out


def request_problem(experiment: Any) -> Problem:
    """The :class:`~kftune.hpo.Problem` of a request's experiment (UserError if unreadable)."""
    return Problem.from_katib(experiment_spec(experiment), where=f"experiment {experiment.name}: spec")


@lru_cache(maxsize=16)
def _problem_of(data: bytes) -> Problem:
    return request_problem(proto.pb2().Experiment.FromString(data))


def cached_problem(experiment: Any) -> Problem:
    """:func:`request_problem`, memoised on the message's bytes. A Problem is immutable and a
    function of those bytes, so this changes no answer; it keeps the per-parameter parse caches of
    :mod:`kftune.hpo.space` warm across requests (a fresh Problem per call re-parses every trial's
    values: ~9 ms of ~29 ms with 1,000 trials)."""
    return _problem_of(experiment.SerializeToString(deterministic=True))


def trial_record(t: Any) -> TrialRecord:
    """One ``Trial`` message as a :class:`~kftune.hpo.TrialRecord`."""
    metrics: dict[str, float] = {}
    for m in t.status.observation.metrics:
        try:
            metrics[m.name] = float(m.value)
        except ValueError:  # "unavailable", "" (no strategy), or a string metric
            continue
    return TrialRecord(
        t.name,
        {a.name: a.value for a in t.spec.parameter_assignments.assignments},
        _CONDITIONS.get(t.status.condition, "MetricsUnavailable"),
        metrics,
        dict(t.spec.labels),
    )


# Trial message bytes -> its TrialRecord. Katib sends every trial of the experiment on every call
# and a finished trial's message never changes, so from one request to the next almost all are
# hits: serialising a Trial (deterministically: Go sends map entries in random order) costs ~3 us
# in upb's C code, reading its fields from Python ~15 us.
# Equal bytes are an equal message, so a hit is exactly the record a conversion would build; the
# cache changes no answer. Records are shared between calls: kftune.hpo treats them as read-only.
_RECORD_CACHE: dict[bytes, TrialRecord] = {}
_RECORD_CACHE_LIMIT = 100_000


def trial_records(trials: Sequence[Any]) -> list[TrialRecord]:
    """The request's trials as :class:`~kftune.hpo.TrialRecord` s (memoised per trial message)."""
    cache = _RECORD_CACHE
    out = []
    for t in trials:
        data = t.SerializeToString(deterministic=True)  # map (labels) order is not stable otherwise
        record = cache.get(data)
        if record is None:
            record = remember(cache, data, trial_record(t), _RECORD_CACHE_LIMIT)
        out.append(record)
    return out


def experiment_message(name: str, spec: dict[str, Any]) -> Any:
    """The inverse of :func:`experiment_spec`: an Experiment ``spec`` dict (the YAML's, with
    ``metricStrategies`` ignored) as the ``Experiment`` message Katib's controller sends
    (``suggestionclient.go: ConvertExperiment``). For tests, benchmarks and other callers."""
    api = proto.pb2()
    types = {v: k for k, v in _PARAMETER_TYPES.items()}
    dists = {v: k for k, v in _DISTRIBUTIONS.items()}
    objective = spec.get("objective") or {}
    algorithm = spec.get("algorithm") or {}
    msg = api.Experiment(name=name)
    msg.spec.objective.type = {"minimize": 1, "maximize": 2}.get(str(objective.get("type", "")).lower(), 0)
    msg.spec.objective.objective_metric_name = str(objective.get("objectiveMetricName", ""))
    msg.spec.objective.additional_metric_names.extend(
        str(m) for m in objective.get("additionalMetricNames") or []
    )
    if objective.get("goal") is not None:
        msg.spec.objective.goal = float(objective["goal"])
    msg.spec.algorithm.algorithm_name = str(algorithm.get("algorithmName", ""))
    for s in algorithm.get("algorithmSettings") or []:
        msg.spec.algorithm.algorithm_settings.add(name=str(s["name"]), value=str(s.get("value", "")))
    for p in spec.get("parameters") or []:
        fs = p.get("feasibleSpace") or {}
        msg.spec.parameter_specs.parameters.add(
            name=str(p["name"]),
            parameter_type=types.get(str(p.get("parameterType")), 0),
            feasible_space=api.FeasibleSpace(
                min=str(fs.get("min", "")),
                max=str(fs.get("max", "")),
                step=str(fs.get("step", "")),
                list=[str(v) for v in fs.get("list") or []],
                distribution=dists.get(str(fs.get("distribution", "")), 0),
            ),
        )
    for key, field in (("parallelTrialCount", "parallel_trial_count"), ("maxTrialCount", "max_trial_count")):
        if spec.get(key) is not None:
            setattr(msg.spec, field, int(spec[key]))
    return msg


def trial_message(trial: TrialRecord, objective: Any = None) -> Any:
    """A :class:`~kftune.hpo.TrialRecord` as the ``Trial`` message Katib's controller sends
    (``ConvertTrials``: latest condition, metrics already reduced by their strategies)."""
    api = proto.pb2()
    conditions = {v: k for k, v in _CONDITIONS.items() if k != 7}
    msg = api.Trial(name=trial.name)
    if objective is not None:
        msg.spec.objective.CopyFrom(objective)
    msg.spec.parameter_assignments.assignments.extend(
        api.ParameterAssignment(name=k, value=v) for k, v in trial.assignments.items()
    )
    msg.spec.labels.update(trial.labels)
    msg.status.condition = conditions[trial.status]
    msg.status.observation.metrics.extend(
        api.Metric(name=k, value=repr(float(v))) for k, v in trial.metrics.items()
    )
    return msg


def renumber_new_configs(
    algorithm: str, suggestions: Sequence[Suggestion], trials: Sequence[TrialRecord], first_index: int
) -> None:
    """Give each new configuration (parent label empty) the id ``first_index + i`` (its Katib
    sequence number), skipping ids a visible trial holds. In place; see the module docstring."""
    if algorithm not in LADDER_ALGORITHMS or first_index < 0:
        return
    taken = {t.labels.get(LABEL_CONFIG) for t in trials}
    for i, s in enumerate(suggestions):
        if s.labels.get(LABEL_PARENT) != "" or LABEL_CONFIG not in s.labels:
            continue
        candidate = first_index + i
        while str(candidate) in taken:
            candidate += 1
        s.labels[LABEL_CONFIG] = str(candidate)
        taken.add(str(candidate))


# ----------------------------------------------------------------------------- the servicer


@dataclass
class Outcome:
    """What one call ends with: a reply, or a gRPC status code and message."""

    reply: Any = None
    code: grpc.StatusCode | None = None
    message: str = ""
    log: str = ""


def _names(trials: Sequence[TrialRecord], limit: int = 5) -> str:
    names = [t.name for t in trials[:limit]]
    return ", ".join(names) + (f", ... ({len(trials) - limit} more)" if len(trials) > limit else "")


def shortfall(
    experiment: str, problem: Problem, algo: Any, trials: Sequence[TrialRecord], got: int, asked: int
) -> tuple[grpc.StatusCode, str]:
    """The status and message for a request the algorithm cannot fill (``got < asked``)."""
    name = problem.algorithm_name
    if algo.is_complete(problem, trials):
        return grpc.StatusCode.FAILED_PRECONDITION, (
            f"{MARK_COMPLETE}: {name} has proposed every trial its settings allow for experiment "
            f"{experiment} ({len(trials)} trials) and will propose none of the {asked} asked for. Katib "
            "has no end-of-search signal, so the Experiment stays Running once its last trials finish: "
            "its result is status.currentOptimalTrial (kftune katib best); delete the Experiment when done"
        )
    running = [t for t in trials if t.pending]
    if running:
        return grpc.StatusCode.UNAVAILABLE, (
            f"{MARK_WAITING}: {name} can propose {got} of the {asked} trials Katib asks for now; the rest "
            f"depend on the results of {len(running)} running trial(s) ({_names(running)}). Katib asks "
            "again when one of them finishes"
        )
    return grpc.StatusCode.FAILED_PRECONDITION, (
        f"{MARK_EXHAUSTED}: {name} can propose only {got} of the {asked} trials Katib asks for and no "
        f"trial of experiment {experiment} is running, so no new result can make more possible; Katib "
        "accepts only a reply with exactly the number it asks for. Lower parallelTrialCount or "
        "maxTrialCount to what the search can still use (see kftune.katib.service_rules)"
    )


class SuggestionService:
    """Katib's ``Suggestion`` service backed by :mod:`kftune.hpo` (stateless, see the module doc)."""

    def GetSuggestions(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC method name)
        t0 = time.perf_counter()
        try:
            outcome = self._get_suggestions(request)
        except Exception as exc:  # a bug, not a user error: keep the service up, tell Katib
            log.exception("GetSuggestions failed")
            outcome = Outcome(code=grpc.StatusCode.INTERNAL, message=f"kftune: internal error: {exc!r}")
        ms = (time.perf_counter() - t0) * 1e3
        head = (
            f"GetSuggestions experiment={request.experiment.name or '?'} "
            f"algorithm={request.experiment.spec.algorithm.algorithm_name or '?'} {outcome.log}"
        )
        if outcome.code is not None:
            log.info("%s status=%s latency_ms=%.1f message=%r", head, outcome.code.name, ms, outcome.message)
            context.abort(outcome.code, outcome.message)
        log.info("%s latency_ms=%.1f", head, ms)
        return outcome.reply

    def _get_suggestions(self, request: Any) -> Outcome:
        api = proto.pb2()
        asked = request.current_request_number
        try:
            problem = cached_problem(request.experiment)
            algo = get_algorithm(problem.algorithm_name)
            errors = algo.validate(problem)
            if errors:
                raise UserError("; ".join(errors))
        except UserError as exc:
            return Outcome(code=grpc.StatusCode.INVALID_ARGUMENT, message=str(exc))
        trials = trial_records(request.trials)
        states = Counter(t.status for t in trials)
        counts = f"trials={len(trials)} running={states['Running'] + states['Created']} asked={asked}"
        if asked <= 0:
            return Outcome(reply=api.GetSuggestionsReply(), log=f"{counts} replied=0")
        suggestions = algo.suggest(problem, trials, asked)[:asked]
        if len(suggestions) < asked:
            code, message = shortfall(request.experiment.name, problem, algo, trials, len(suggestions), asked)
            return Outcome(code=code, message=message, log=f"{counts} possible={len(suggestions)}")
        renumber_new_configs(
            problem.algorithm_name, suggestions, trials, request.total_request_number - asked
        )
        reply = api.GetSuggestionsReply(
            parameter_assignments=[
                api.GetSuggestionsReply.ParameterAssignments(
                    assignments=[api.ParameterAssignment(name=k, value=v) for k, v in s.assignments.items()],
                    trial_name=s.trial_name or "",
                    labels=s.labels,
                )
                for s in suggestions
            ]
        )
        return Outcome(reply=reply, log=f"{counts} replied={len(suggestions)}")

    def ValidateAlgorithmSettings(self, request: Any, context: Any) -> Any:  # noqa: N802
        t0 = time.perf_counter()
        name = request.experiment.spec.algorithm.algorithm_name
        try:
            problem = request_problem(request.experiment)
            messages = get_algorithm(problem.algorithm_name).validate(problem)
            if not messages:
                messages = katib_errors(problem)
        except UserError as exc:
            messages = [str(exc)]
        except Exception as exc:  # a bug: Katib treats UNKNOWN as a validation error too
            log.exception("ValidateAlgorithmSettings failed")
            messages = [f"kftune: internal error: {exc!r}"]
        ms = (time.perf_counter() - t0) * 1e3
        head = (
            f"ValidateAlgorithmSettings experiment={request.experiment.name or '?'} algorithm={name or '?'}"
        )
        if messages:
            message = f"{name}: " + "; ".join(messages)
            log.info("%s status=INVALID_ARGUMENT latency_ms=%.1f message=%r", head, ms, message)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
        log.info("%s valid latency_ms=%.1f", head, ms)
        return proto.pb2().ValidateAlgorithmSettingsReply()


# ----------------------------------------------------------------------------- the server


@dataclass
class RunningServer:
    server: Any
    health: Any
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, grace: float = 5.0) -> None:
        """Health NOT_SERVING first, then let in-flight calls finish for ``grace`` seconds."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


def _bind_address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6
    return f"{host}:{port}"


def start_server(host: str = "0.0.0.0", port: int = DEFAULT_PORT, max_workers: int = 4) -> RunningServer:
    """Start the suggestion and health services on ``host:port`` (port 0: a free one)."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="suggestion"),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),  # a port already in use is an error, not a shared listener
        ],
    )
    proto.add_suggestion_servicer(SuggestionService(), server)
    health_servicer = health.HealthServicer()
    for name in ("", proto.KATIB_HEALTH_SERVICE, proto.SUGGESTION_SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        bound = server.add_insecure_port(_bind_address(host, port))
    except RuntimeError as exc:
        bound, why = 0, str(exc)
    else:
        why = "the address is in use or not available"
    if not bound:
        server.stop(0)
        raise UserError(
            f"cannot listen on {_bind_address(host, port)}: {why}; choose another --port or --host"
        )
    server.start()
    return RunningServer(server, health_servicer, host, bound)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kftune katib serve",
        description="Serve Katib's v1beta1 Suggestion gRPC API (GetSuggestions, ValidateAlgorithmSettings) "
        "for kftune's algorithms (asha, bohb, and every algorithm in kftune.hpo), plus gRPC health. "
        "Katib starts it from its katib-config entry; see README 'Registering the suggestion service'.",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}, Katib's)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument(
        "--grace", type=float, default=5.0, help="seconds in-flight calls get on SIGTERM (default 5)"
    )
    p.add_argument("--workers", type=int, default=4, help="request threads (default 4)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: must be between 0 and 65535")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(args.log_level)
    log.propagate = False
    for name in PRELOAD:
        get_algorithm(name)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s: shutting down (grace %.1f s)", signal.Signals(signum).name, args.grace)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    running = start_server(args.host, args.port, args.workers)
    log.info(
        "serving Katib Suggestion (%s) and gRPC health on %s",
        proto.SUGGESTION_SERVICE,
        _bind_address(args.host, running.port),
    )
    while not stop.wait(3600):
        pass
    running.stop(args.grace)
    log.info("stopped")
    return 0


__all__ = [
    "DEFAULT_PORT",
    "RunningServer",
    "SuggestionService",
    "experiment_spec",
    "main",
    "renumber_new_configs",
    "request_problem",
    "shortfall",
    "start_server",
    "trial_records",
]
