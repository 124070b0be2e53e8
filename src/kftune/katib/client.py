"""``kftune katib submit`` and ``kftune katib best``: Katib Experiments on a cluster, with the
``kubernetes`` client (``CustomObjectsApi``, ``kubeflow.org/v1beta1``).

``submit FILE [--namespace NS] [--wait] [--timeout S]``

1. Validates FILE offline (``kftune katib validate``'s rules, plus the settings kftune's suggestion
   service would refuse for ``asha``/``bohb``: :mod:`kftune.katib.service_rules`); any error: the
   findings on stderr, nothing created, exit 1.
2. Creates the Experiment exactly as written (the YAML typed the way kubectl types it) in
   ``--namespace``, else ``metadata.namespace``, else the kubeconfig context's namespace, else
   ``default``; a ``metadata.namespace`` different from ``--namespace`` is refused, as kubectl does.
   An existing Experiment of that name: exit 2 with how to proceed.
3. ``--wait`` (implied by ``--timeout``): polls the Experiment and prints one line per change of
   its condition or trial counts. Exit 0 when Katib marks it Succeeded; exit 1 when Failed, with
   Katib's reason and message (and the Suggestion's, when the suggestion service refused the
   settings); exit 3 when ``--timeout`` seconds pass (the Experiment keeps running).
   Katib has no end-of-search signal, so an ``asha``/``bohb`` search that ran out of trials to
   propose stays Running: when no trial is active and the Suggestion's latest event carries the
   suggestion service's end marker ("kftune: search complete" / "kftune: search exhausted",
   recorded by Katib's controller as a ``ReconcileError`` event), that is the end of the search:
   exit 0. (kftune's service accepts only settings where this cannot happen; see
   :mod:`kftune.katib.service`.)

``best NAME [--namespace NS] [--json]`` prints ``status.currentOptimalTrial`` (bestTrialName,
parameterAssignments, observation metrics) as ``kubectl get experiment -o yaml`` shows it, or as
JSON. No optimal trial yet: exit 1.

Kube config: in a pod (``KUBERNETES_SERVICE_HOST`` set, no ``--kubeconfig``/``--context``) the
ServiceAccount's; otherwise ``--kubeconfig``, ``$KUBECONFIG`` or ``~/.kube/config``. An unreachable
API server, a missing config or a refused credential: one line, exit 2.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from kftune.errors import UserError

GROUP, VERSION = "kubeflow.org", "v1beta1"
EXPERIMENTS, TRIALS, SUGGESTIONS = "experiments", "trials", "suggestions"
SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
TIMEOUT = (5, 60)  # (connect, read) seconds per API call
EXIT_FAILED, EXIT_TIMEOUT = 1, 3


# ----------------------------------------------------------------------------- connection


@dataclass
class Cluster:
    """API clients for one kube config, and the namespace its context names (if any)."""

    custom: Any
    core: Any
    host: str
    namespace: str | None

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args)`` with transport failures and rejected credentials (401) turned into
        one-line UserErrors; other API errors (``ApiException``: 403, 404, 409...) are the caller's."""
        import urllib3
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(*args, _request_timeout=TIMEOUT, **kwargs)
        except ApiException as exc:
            if exc.status == 401:
                raise UserError(
                    f"the Kubernetes API server at {self.host} did not accept the credentials: "
                    f"{api_message(exc)}; check the kubeconfig's user (kubectl auth whoami)"
                ) from None
            raise
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise UserError(
                f"cannot reach the Kubernetes API server at {self.host}: {transport_reason(exc)}; "
                "check the cluster and context of your kubeconfig (kubectl cluster-info)"
            ) from None


def transport_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    if (
        "object at 0x" in text and ">: " in text
    ):  # "<urllib3.connection.HTTPConnection object at 0x..>: Failed ..."
        text = text.split(">: ", 1)[1]
    return " ".join(text.split())


def api_message(exc: Any) -> str:
    """The ``message`` of a Kubernetes ``Status`` body, else the HTTP reason."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return " ".join(str(message or f"{exc.status} {exc.reason}").split())


def connect(kubeconfig: str | None = None, context: str | None = None) -> Cluster:
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = client.Configuration()
    namespace = None
    try:
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=cfg)
            try:
                namespace = Path(SA_NAMESPACE_FILE).read_text().strip() or None
            except OSError:
                namespace = None
        else:
            path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
            config.load_kube_config(config_file=path, context=context, client_configuration=cfg)
            contexts, active = config.list_kube_config_contexts(config_file=path)
            chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
            namespace = ((chosen or {}).get("context") or {}).get("namespace")
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise UserError(
            f"no usable Kubernetes configuration ({where}): {' '.join(str(exc).split())}; point --kubeconfig "
            "or KUBECONFIG at a kubeconfig, or run in a pod with a ServiceAccount"
        ) from None
    cfg.retries = 1
    api = client.ApiClient(cfg)
    return Cluster(client.CustomObjectsApi(api), client.CoreV1Api(api), cfg.host, namespace)


# ----------------------------------------------------------------------------- reading Katib's status


def condition(status: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    """The condition of that type if its status is "True" (Katib's ``hasCondition``)."""
    for c in status.get("conditions") or []:
        if c.get("type") == ctype and c.get("status") == "True":
            return c
    return None


def current_condition(status: dict[str, Any]) -> dict[str, Any]:
    """The last condition whose status is "True" (Created -> Running -> Succeeded/Failed)."""
    true = [c for c in status.get("conditions") or [] if c.get("status") == "True"]
    return true[-1] if true else {"type": "Pending", "reason": "", "message": "no condition yet"}


COUNTS = (
    ("trialsRunning", "running"),
    ("trialsPending", "pending"),
    ("trialsSucceeded", "succeeded"),
    ("trialsFailed", "failed"),
    ("trialsKilled", "killed"),
    ("trialsEarlyStopped", "early-stopped"),
    ("trialMetricsUnavailable", "metrics-unavailable"),
)


def objective_value(experiment: dict[str, Any], metrics: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(name, value) of the objective metric in an observation, by its metric strategy."""
    objective = (experiment.get("spec") or {}).get("objective") or {}
    name = objective.get("objectiveMetricName")
    strategy = next(
        (s.get("value") for s in objective.get("metricStrategies") or [] if s.get("name") == name),
        {"minimize": "min", "maximize": "max"}.get(str(objective.get("type")), "latest"),
    )
    for m in metrics:
        if m.get("name") == name:
            value = m.get(strategy)
            if value in (None, "", "unavailable"):
                value = m.get("latest")
            return name, str(value)
    return None


def progress_line(experiment: dict[str, Any]) -> str:
    status = experiment.get("status") or {}
    name = (experiment.get("metadata") or {}).get("name", "?")
    cond = current_condition(status)
    counts = ", ".join(f"{word} {status[key]}" for key, word in COUNTS if status.get(key))
    line = f"{name}: {cond.get('type')}  trials {status.get('trials', 0)}" + (
        f" ({counts})" if counts else ""
    )
    best = status.get("currentOptimalTrial") or {}
    found = objective_value(experiment, (best.get("observation") or {}).get("metrics") or [])
    if best.get("bestTrialName") and found:
        line += f"  best {found[0]}={found[1]} ({best['bestTrialName']})"
    return line


def active_trials(status: dict[str, Any]) -> int:
    return int(status.get("trialsRunning") or 0) + int(status.get("trialsPending") or 0)


# ----------------------------------------------------------------------------- submit


def _not_found_hint(exc: Any) -> str:
    return (
        f"the API server has no {EXPERIMENTS}.{GROUP}/{VERSION} ({api_message(exc)}): install Katib "
        "(docs/deploy.md) or check the context"
    )


def offline_errors(path: str) -> tuple[str, int]:
    """(findings text, number of errors) of the offline validator (which includes kftune's
    suggestion-service rules for asha/bohb budgets)."""
    from kftune.katib.validator import format_text, validate_paths

    report = validate_paths([path])
    return format_text(report), report.errors


def submit(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from kftune.katib.experiment import load_experiment

    out, err = out or sys.stdout, err or sys.stderr
    text, errors = offline_errors(args.file)
    if errors:
        print(text, file=err)
        raise UserError(
            f"{args.file}: {errors} error(s) (above); fix them before submitting - nothing was created",
            exit_code=1,
        )
    exp = load_experiment(args.file)
    if exp.namespace and args.namespace and exp.namespace != args.namespace:
        raise UserError(
            f"{args.file}: metadata.namespace is {exp.namespace!r} but --namespace is {args.namespace!r}; "
            f"pass --namespace {exp.namespace} or change the file"
        )
    cluster = connect(args.kubeconfig, args.context)
    namespace = args.namespace or exp.namespace or cluster.namespace or "default"
    from kubernetes.client.exceptions import ApiException

    try:
        cluster.call(
            cluster.custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            EXPERIMENTS,
            copy.deepcopy(exp.raw),
        )
    except ApiException as exc:
        if exc.status == 409:
            raise UserError(
                f"experiment {namespace}/{exp.name} already exists: read its result with `kftune katib best "
                f"{exp.name} -n {namespace}`, or delete it first (kubectl -n {namespace} delete experiment "
                f"{exp.name}; its trials go with it), or change metadata.name"
            ) from None
        if exc.status == 404:
            raise UserError(_not_found_hint(exc)) from None
        raise UserError(
            f"the API server rejected experiment {namespace}/{exp.name}: {api_message(exc)}"
        ) from None
    print(f"experiment.kubeflow.org/{exp.name} created in namespace {namespace}", file=out, flush=True)
    if not (args.wait or args.timeout is not None):
        return 0
    return follow(cluster, namespace, exp.name, args.timeout, args.poll, out, err)


def follow(
    cluster: Cluster,
    namespace: str,
    name: str,
    timeout: float | None,
    poll: float,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Poll until Succeeded (0), Failed (1), the end of an asha/bohb search (0) or ``timeout`` (3)."""
    out, err = out or sys.stdout, err or sys.stderr
    from kubernetes.client.exceptions import ApiException

    start = time.monotonic()
    last = None
    events_readable = True
    while True:
        try:
            exp = cluster.call(
                cluster.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, EXPERIMENTS, name
            )
        except ApiException as exc:
            if exc.status == 404:
                raise UserError(f"experiment {namespace}/{name} was deleted while waiting") from None
            raise UserError(f"cannot read experiment {namespace}/{name}: {api_message(exc)}") from None
        status = exp.get("status") or {}
        line = progress_line(exp)
        if line != last:
            print(f"[{_clock(time.monotonic() - start)}] {line}", file=out, flush=True)
            last = line
        done = condition(status, "Succeeded")
        if done:
            print(
                f"{name}: Succeeded ({done.get('reason', '')}): {done.get('message', '')}. "
                f"Result: kftune katib best {name} -n {namespace}",
                file=out,
                flush=True,
            )
            return 0
        failed = condition(status, "Failed")
        if failed:
            detail = (
                suggestion_failure(cluster, namespace, name)
                if "Suggestion" in str(failed.get("message"))
                else ""
            )
            print(
                f"{name}: Failed ({failed.get('reason', '')}): {failed.get('message', '')}"
                + (f"; suggestion: {detail}" if detail else ""),
                file=err,
                flush=True,
            )
            return EXIT_FAILED
        if events_readable and int(status.get("trials") or 0) > 0 and active_trials(status) == 0:
            try:
                ended = search_end(cluster, namespace, name)
            except ApiException as exc:
                events_readable = False
                print(
                    f"{name}: cannot read events in {namespace} ({api_message(exc)}): the end of an asha/bohb "
                    "search that Katib keeps Running will not be noticed",
                    file=err,
                    flush=True,
                )
                ended = None
            if ended:
                print(
                    f"{name}: the search ended with every trial finished; the suggestion service says: {ended}. "
                    f"Katib has no end-of-search signal and keeps the Experiment Running. Result: kftune katib "
                    f"best {name} -n {namespace}; delete it when done (kubectl -n {namespace} delete experiment {name})",
                    file=out,
                    flush=True,
                )
                return 0
        if timeout is not None and time.monotonic() - start >= timeout:
            print(
                f"{name}: still {current_condition(status).get('type')} after {timeout:g} s; it keeps running on "
                f"the cluster (kftune katib best {name} -n {namespace})",
                file=err,
                flush=True,
            )
            return EXIT_TIMEOUT
        time.sleep(poll)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def suggestion_failure(cluster: Cluster, namespace: str, name: str) -> str:
    """The Suggestion's Failed condition message (e.g. "Validation failed: ..."), or ""."""
    from kubernetes.client.exceptions import ApiException

    try:
        sug = cluster.call(
            cluster.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, SUGGESTIONS, name
        )
    except (ApiException, UserError):
        return ""
    cond = condition(sug.get("status") or {}, "Failed")
    return " ".join(str(cond.get("message", "")).split()) if cond else ""


def _event_time(e: Any) -> str:
    stamp = e.last_timestamp or e.event_time or (e.metadata.creation_timestamp if e.metadata else None)
    return stamp.isoformat() if stamp is not None else ""


def search_end(cluster: Cluster, namespace: str, name: str) -> str | None:
    """The end-of-search message of the Suggestion's latest event, if it carries one."""
    from kftune.katib.service_rules import END_MARKERS

    events = cluster.call(
        cluster.core.list_namespaced_event,
        namespace,
        field_selector=f"involvedObject.kind=Suggestion,involvedObject.name={name}",
    )
    items = sorted(events.items or [], key=_event_time)
    if not items:
        return None
    message = " ".join(str(items[-1].message or "").split())
    for marker in END_MARKERS:
        if marker in message:
            return message[message.index(marker) :]
    return None


# ----------------------------------------------------------------------------- best


def best(args: argparse.Namespace, out: TextIO | None = None) -> int:
    import yaml
    from kubernetes.client.exceptions import ApiException

    cluster = connect(args.kubeconfig, args.context)
    namespace = args.namespace or cluster.namespace or "default"
    try:
        exp = cluster.call(
            cluster.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, EXPERIMENTS, args.name
        )
    except ApiException as exc:
        if exc.status == 404:
            raise UserError(
                f"no experiment {args.name!r} in namespace {namespace} ({api_message(exc)}); list them with "
                f"kubectl -n {namespace} get experiments"
            ) from None
        raise UserError(f"cannot read experiment {namespace}/{args.name}: {api_message(exc)}") from None
    out = out or sys.stdout
    status = exp.get("status") or {}
    optimal = status.get("currentOptimalTrial") or {}
    if not optimal.get("bestTrialName"):
        raise UserError(
            f"experiment {namespace}/{args.name} has no optimal trial yet ({current_condition(status).get('type')}, "
            f"{status.get('trialsSucceeded', 0)} trial(s) succeeded)",
            exit_code=1,
        )
    if args.json:
        json.dump(optimal, out, indent=2, sort_keys=True)
        out.write("\n")
        return 0
    cond = current_condition(status)
    out.write(
        f"# experiment {namespace}/{args.name}: {cond.get('type')}"
        + (f" ({cond.get('reason')})" if cond.get("reason") else "")
        + f", {status.get('trials', 0)} trials\n"
    )
    out.write(yaml.safe_dump({"currentOptimalTrial": optimal}, sort_keys=True, default_flow_style=False))
    return 0


# ----------------------------------------------------------------------------- CLI


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kubeconfig", metavar="FILE", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
    )
    p.add_argument("--context", help="kubeconfig context (default: the current one)")


def submit_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kftune katib submit",
        description="Validate a Katib Experiment file offline, create it on the cluster, and optionally follow it.",
    )
    p.add_argument("file", metavar="FILE", help="an Experiment YAML file (one Experiment)")
    p.add_argument(
        "-n", "--namespace", help="namespace (default: metadata.namespace, the context's, default)"
    )
    p.add_argument("--wait", action="store_true", help="follow the Experiment until it ends (exit 0 / 1)")
    p.add_argument(
        "--timeout", type=float, metavar="S", help="with --wait (implied): give up after S seconds (exit 3)"
    )
    p.add_argument("--poll", type=float, default=10.0, metavar="S", help="seconds between polls (default 10)")
    _common(p)
    return p


def best_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kftune katib best",
        description="Print an Experiment's status.currentOptimalTrial (as kubectl -o yaml shows it).",
    )
    p.add_argument("name", metavar="NAME", help="the Experiment's name")
    p.add_argument("-n", "--namespace", help="namespace (default: the context's, default)")
    p.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    _common(p)
    return p


def submit_main(argv: list[str]) -> int:
    args = submit_parser().parse_args(argv)
    if (args.timeout is not None and args.timeout < 0) or args.poll <= 0:
        raise UserError("--timeout must be >= 0 and --poll > 0")
    return submit(args)


def best_main(argv: list[str]) -> int:
    return best(best_parser().parse_args(argv))


__all__ = ["Cluster", "best", "best_main", "connect", "follow", "progress_line", "submit", "submit_main"]
