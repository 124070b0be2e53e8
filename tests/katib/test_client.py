"""`kftune katib submit` / `best` against a fake Kubernetes API server on 127.0.0.1.

The fake answers exactly the paths and verbs the client uses, with objects shaped like Katib's Go
types (pkg/apis/controller/experiments/v1beta1/experiment_types.go, common_types.go,
suggestions/v1beta1/suggestion_types.go) and Kubernetes' Status and Event objects; a kubeconfig
points the real `kubernetes` client at it.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from kftune.cli import main as kftune_main
from kftune.katib.experiment import load_experiment

pytestmark = pytest.mark.server
KATIB = Path(__file__).resolve().parents[2] / "katib"
TOKEN = "t0ken-for-the-fake"
EXP_PATH = re.compile(
    r"^/apis/kubeflow\.org/v1beta1/namespaces/([^/]+)/(experiments|suggestions)(?:/([^/]+))?$"
)
EVENTS_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/events$")
T0 = "2026-05-01T10:00:00Z"


def status_object(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def condition(ctype: str, reason: str, message: str, status: str = "True") -> dict:
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": T0,
        "lastTransitionTime": T0,
    }


CREATED = condition("Created", "ExperimentCreated", "Experiment is created")
RUNNING = condition("Running", "ExperimentRunning", "Experiment is running")
OPTIMAL = {
    "bestTrialName": "ner-asha-x4k2q9zt",
    "parameterAssignments": [
        {"name": "learning_rate", "value": "0.0000232607"},
        {"name": "weight_decay", "value": "0.141"},
        {"name": "batch_size", "value": "32"},
        {"name": "num_epochs", "value": "9"},
    ],
    "observation": {
        "metrics": [
            {"name": "eval_f1", "min": "0.8811", "max": "0.9123", "latest": "0.9101"},
            {"name": "eval_loss", "min": "0.0912", "max": "0.2207", "latest": "0.0934"},
        ]
    },
}


def katib_status(*conditions: dict, best: dict | None = None, **counts: int) -> dict:
    """An ExperimentStatus: conditions, trial counts (trials=..., trialsRunning=...), optimal trial."""
    st: dict = {"startTime": T0, "conditions": list(conditions), **counts}
    st["currentOptimalTrial"] = best or {"observation": {}}
    return st


def succeeded(**counts) -> dict:
    return katib_status(
        CREATED,
        {**RUNNING, "status": "False"},
        condition(
            "Succeeded",
            "ExperimentMaxTrialsReached",
            "Experiment has succeeded because max trial count has reached",
        ),
        best=OPTIMAL,
        **counts,
    )


class FakeKube:
    """In-memory experiments, suggestions and events; every request is recorded."""

    def __init__(self):
        self.requests: list[dict] = []
        self.experiments: dict[tuple[str, str], dict] = {}
        self.scripts: dict[tuple[str, str], list[dict]] = {}  # statuses served by successive GETs
        self.suggestions: dict[tuple[str, str], dict] = {}
        self.events: dict[tuple[str, str], list[dict]] = {}
        self.reject: tuple[int, str, str] | None = None  # (code, reason, message) for the next POST
        self.forbid_events = False

    def handle(
        self, method: str, path: str, query: dict, headers: dict, body: dict | None
    ) -> tuple[int, dict]:
        self.requests.append(
            {"method": method, "path": path, "query": query, "headers": headers, "body": body}
        )
        if headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, status_object(401, "Unauthorized", "Unauthorized")
        m = EXP_PATH.match(path)
        if m and method == "POST" and m.group(2) == "experiments" and not m.group(3):
            ns = m.group(1)
            name = body["metadata"]["name"]
            if self.reject:
                code, reason, message = self.reject
                return code, status_object(code, reason, message)
            if (ns, name) in self.experiments:
                return 409, status_object(
                    409, "AlreadyExists", f'experiments.kubeflow.org "{name}" already exists'
                )
            obj = copy.deepcopy(body)
            obj["metadata"].update(namespace=ns, uid="0b6f6a3e-1", creationTimestamp=T0, generation=1)
            self.experiments[(ns, name)] = obj
            return 201, obj
        if m and method == "GET" and m.group(3):
            ns, plural, name = m.groups()
            if plural == "suggestions":
                if (ns, name) not in self.suggestions:
                    return 404, status_object(404, "NotFound", f'suggestions.kubeflow.org "{name}" not found')
                return 200, self.suggestions[(ns, name)]
            if (ns, name) not in self.experiments:
                return 404, status_object(404, "NotFound", f'experiments.kubeflow.org "{name}" not found')
            obj = copy.deepcopy(self.experiments[(ns, name)])
            script = self.scripts.get((ns, name))
            if script:
                obj["status"] = script.pop(0) if len(script) > 1 else script[0]
            return 200, obj
        m = EVENTS_PATH.match(path)
        if m and method == "GET":
            if self.forbid_events:
                return 403, status_object(
                    403, "Forbidden", 'events is forbidden: User "x" cannot list resource "events"'
                )
            selector = dict(kv.split("=", 1) for kv in query.get("fieldSelector", [""])[0].split(",") if kv)
            items = [
                e
                for e in self.events.get((m.group(1), selector.get("involvedObject.name", "")), [])
                if e["involvedObject"]["kind"] == selector.get("involvedObject.kind")
            ]
            return 200, {"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": items}
        return 404, status_object(404, "NotFound", "the server could not find the requested resource")


def suggestion_event(name: str, message: str, stamp: str, ns: str = "kftune") -> dict:
    """An Event as Katib's suggestion controller records a failed reconcile."""
    return {
        "metadata": {"name": f"{name}.{stamp[-3:-1]}", "namespace": ns, "creationTimestamp": stamp},
        "involvedObject": {
            "kind": "Suggestion",
            "namespace": ns,
            "name": name,
            "apiVersion": "kubeflow.org/v1beta1",
        },
        "reason": "ReconcileError",
        "message": message,
        "source": {"component": "suggestion-controller"},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "type": "Warning",
    }


@pytest.fixture
def fake():
    kube = FakeKube()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            headers = {k.lower(): v for k, v in self.headers.items()}  # HTTP header names: any case
            code, obj = kube.handle(method, url.path, parse_qs(url.query), headers, body)
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            self._serve("GET")

        def do_POST(self):  # noqa: N802
            self._serve("POST")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    kube.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield kube
    server.shutdown()
    server.server_close()


def write_kubeconfig(path: Path, server: str, namespace: str | None = "kftune") -> Path:
    context = {"cluster": "fake", "user": "me"}
    if namespace:
        context["namespace"] = namespace
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server}}],
                "users": [{"name": "me", "user": {"token": TOKEN}}],
                "contexts": [{"name": "fake", "context": context}],
                "current-context": "fake",
            }
        )
    )
    return path


@pytest.fixture
def kubeconfig(fake, tmp_path):
    return str(write_kubeconfig(tmp_path / "kubeconfig", fake.url))


def kftune(capsys, *argv: str) -> tuple[int, str, str]:
    rc = kftune_main(["katib", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def posts(fake: FakeKube) -> list[dict]:
    return [r for r in fake.requests if r["method"] == "POST"]


# ----------------------------------------------------------------------------- submit


def test_submit_creates_the_experiment_as_written(fake, kubeconfig, capsys):
    rc, out, err = kftune(capsys, "submit", str(KATIB / "ner-asha.yaml"), "--kubeconfig", kubeconfig)
    assert (rc, err) == (0, "")
    assert out == "experiment.kubeflow.org/ner-asha created in namespace kftune\n"
    (post,) = posts(fake)
    assert post["path"] == "/apis/kubeflow.org/v1beta1/namespaces/kftune/experiments"
    assert post["headers"]["content-type"] == "application/json"
    assert post["headers"]["authorization"] == f"Bearer {TOKEN}"
    # the body is the YAML typed as kubectl types it (quoted numbers stay strings, counts are ints)
    assert post["body"] == load_experiment(KATIB / "ner-asha.yaml").raw
    assert post["body"]["spec"]["maxTrialCount"] == 110
    assert post["body"]["spec"]["parameters"][0]["feasibleSpace"]["min"] == "6e-6"
    assert len(fake.requests) == 1  # no --wait: nothing else


def test_submit_namespace_flag_context_and_mismatch(fake, kubeconfig, tmp_path, capsys):
    raw = load_experiment(KATIB / "ner-bohb.yaml").raw
    del raw["metadata"]["namespace"]
    no_ns = tmp_path / "bohb.yaml"
    no_ns.write_text(json.dumps(raw))  # JSON keeps "6e-6" a string
    assert kftune(capsys, "submit", str(no_ns), "--kubeconfig", kubeconfig)[0] == 0  # the context's namespace
    assert kftune(capsys, "submit", str(no_ns), "-n", "team-a", "--kubeconfig", kubeconfig)[0] == 0
    assert [p["path"].split("/")[5] for p in posts(fake)] == ["kftune", "team-a"]
    other = write_kubeconfig(tmp_path / "nons", fake.url, namespace=None)
    assert kftune(capsys, "submit", str(no_ns), "--kubeconfig", str(other))[0] == 0
    assert posts(fake)[-1]["path"].split("/")[5] == "default"
    rc, out, err = kftune(
        capsys, "submit", str(KATIB / "ner-asha.yaml"), "-n", "team-a", "--kubeconfig", kubeconfig
    )
    assert rc == 2 and "metadata.namespace is 'kftune' but --namespace is 'team-a'" in err
    assert len(posts(fake)) == 3


def test_submit_already_exists(fake, kubeconfig, capsys):
    assert kftune(capsys, "submit", str(KATIB / "ner-asha.yaml"), "--kubeconfig", kubeconfig)[0] == 0
    rc, out, err = kftune(capsys, "submit", str(KATIB / "ner-asha.yaml"), "--kubeconfig", kubeconfig)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1
    assert "kftune katib: error: experiment kftune/ner-asha already exists" in err
    assert (
        "kftune katib best ner-asha -n kftune" in err
        and "kubectl -n kftune delete experiment ner-asha" in err
    )


def test_submit_reports_the_admission_webhooks_denial(fake, kubeconfig, capsys):
    fake.reject = (
        400,
        "BadRequest",
        'admission webhook "validator.experiment.katib.kubeflow.org" denied the request: unable to get Suggestion '
        "config data for algorithm asha: failed to find suggestion config for algorithm: asha in ConfigMap: katib-config",
    )
    rc, _, err = kftune(capsys, "submit", str(KATIB / "ner-asha.yaml"), "--kubeconfig", kubeconfig)
    assert rc == 2
    assert "the API server rejected experiment kftune/ner-asha: admission webhook" in err
    assert "failed to find suggestion config for algorithm: asha" in err


def test_submit_refuses_a_file_with_errors_and_creates_nothing(fake, kubeconfig, tmp_path, capsys):
    exp = load_experiment(KATIB / "ner-asha.yaml")
    raw = copy.deepcopy(exp.raw)
    raw["spec"]["parallelTrialCount"] = 200  # > maxTrialCount: Katib's webhook refuses it
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps(raw))  # JSON keeps "6e-6" a string
    rc, out, err = kftune(capsys, "submit", str(bad), "--kubeconfig", kubeconfig)
    assert rc == 1 and out == ""
    assert "spec.parallelTrialCount" in err and "error(s) (above)" in err and "nothing was created" in err
    # kftune's suggestion service would refuse this one (num_configurations cap, Katib would stall)
    raw = copy.deepcopy(exp.raw)
    raw["spec"]["algorithm"]["algorithmSettings"].append({"name": "num_configurations", "value": "50"})
    capped = tmp_path / "capped.yaml"
    capped.write_text(json.dumps(raw))  # JSON keeps "6e-6" a string
    rc, out, err = kftune(capsys, "submit", str(capped), "--kubeconfig", kubeconfig)
    assert rc == 1 and "maxTrialCount (110) must be set and at most num_configurations (50)" in err
    assert "[suggestion.settings]" in err
    assert posts(fake) == [] and fake.requests == []


def test_submit_wait_prints_a_line_per_change_and_succeeds(fake, kubeconfig, capsys):
    fake.scripts[("kftune", "ner-asha")] = [
        {},
        katib_status(CREATED),
        katib_status(CREATED, RUNNING, trials=4, trialsRunning=4),
        katib_status(CREATED, RUNNING, trials=4, trialsRunning=4),  # no change: no line
        katib_status(
            CREATED, RUNNING, best=OPTIMAL, trials=6, trialsRunning=4, trialsSucceeded=1, trialsFailed=1
        ),
        succeeded(trials=110, trialsSucceeded=108, trialsFailed=2),
    ]
    rc, out, err = kftune(
        capsys, "submit", str(KATIB / "ner-asha.yaml"), "--wait", "--poll", "0.01", "--kubeconfig", kubeconfig
    )
    assert (rc, err) == (0, "")
    lines = [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", line) for line in out.splitlines()]
    assert lines == [
        "experiment.kubeflow.org/ner-asha created in namespace kftune",
        "ner-asha: Pending  trials 0",
        "ner-asha: Created  trials 0",
        "ner-asha: Running  trials 4 (running 4)",
        "ner-asha: Running  trials 6 (running 4, succeeded 1, failed 1)  best eval_f1=0.9123 (ner-asha-x4k2q9zt)",
        "ner-asha: Succeeded  trials 110 (succeeded 108, failed 2)  best eval_f1=0.9123 (ner-asha-x4k2q9zt)",
        "ner-asha: Succeeded (ExperimentMaxTrialsReached): Experiment has succeeded because max trial count has "
        "reached. Result: kftune katib best ner-asha -n kftune",
    ]
    gets = [r for r in fake.requests if r["method"] == "GET"]
    assert {r["path"] for r in gets} == {"/apis/kubeflow.org/v1beta1/namespaces/kftune/experiments/ner-asha"}
    assert len(gets) == 6


def test_submit_wait_reports_katibs_failure_reason(fake, kubeconfig, capsys):
    fake.scripts[("kftune", "ner-asha")] = [
        katib_status(CREATED),
        katib_status(
            CREATED,
            {**RUNNING, "status": "False"},
            condition("Failed", "ExperimentFailed", "Suggestion has failed"),
        ),
    ]
    fake.suggestions[("kftune", "ner-asha")] = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Suggestion",
        "metadata": {"name": "ner-asha", "namespace": "kftune"},
        "status": {
            "conditions": [
                condition("Created", "SuggestionCreated", "Suggestion is created"),
                condition(
                    "Failed",
                    "SuggestionFailed",
                    "Validation failed: ValidateAlgorithmSettings Error: asha: algorithm setting 'reduction_factor' "
                    "must be an integer > 1, got '1'",
                ),
            ]
        },
    }
    rc, out, err = kftune(
        capsys, "submit", str(KATIB / "ner-asha.yaml"), "--wait", "--poll", "0.01", "--kubeconfig", kubeconfig
    )
    assert rc == 1
    assert err == (
        "ner-asha: Failed (ExperimentFailed): Suggestion has failed; suggestion: Validation failed: "
        "ValidateAlgorithmSettings Error: asha: algorithm setting 'reduction_factor' must be an integer > 1, got '1'\n"
    )
    assert fake.requests[-1]["path"] == "/apis/kubeflow.org/v1beta1/namespaces/kftune/suggestions/ner-asha"


def test_submit_wait_ends_a_finished_search_that_katib_keeps_running(fake, kubeconfig, capsys):
    """All trials finished and the Suggestion's latest event is the service's end marker: done."""
    key = ("kftune", "ner-asha")
    waiting = (
        "rpc error: code = Unavailable desc = kftune: waiting: asha can propose 0 of the 1 trials Katib asks for "
        "now; the rest depend on the results of 1 running trial(s) (ner-asha-a). Katib asks again when one finishes"
    )
    complete = (
        "rpc error: code = FailedPrecondition desc = kftune: search complete: asha has proposed every trial its "
        "settings allow for experiment ner-asha (18 trials) and will propose none of the 4 asked for."
    )
    fake.events[key] = [suggestion_event("ner-asha", waiting, "2026-05-01T10:05:00Z")]
    fake.scripts[key] = [
        katib_status(CREATED, RUNNING, best=OPTIMAL, trials=18, trialsRunning=1, trialsSucceeded=17),
        katib_status(CREATED, RUNNING, best=OPTIMAL, trials=18, trialsSucceeded=18),
    ]
    # the latest event says "waiting": not the end; --timeout ends the wait with exit 3
    rc, out, err = kftune(
        capsys,
        "submit",
        str(KATIB / "ner-asha.yaml"),
        "--timeout",
        "0.3",
        "--poll",
        "0.01",
        "--kubeconfig",
        kubeconfig,
    )
    assert rc == 3 and "ner-asha: still Running after 0.3 s" in err
    fake.experiments.clear()
    start = len(fake.requests)
    fake.events[key].append(suggestion_event("ner-asha", complete, "2026-05-01T10:09:00Z"))
    fake.events[key].append(  # another object's event is not the Suggestion's
        {
            **suggestion_event("ner-asha", waiting, "2026-05-01T10:10:00Z"),
            "involvedObject": {"kind": "Experiment", "name": "ner-asha", "namespace": "kftune"},
        }
    )
    fake.scripts[key] = [
        katib_status(CREATED, RUNNING, best=OPTIMAL, trials=18, trialsRunning=1, trialsSucceeded=17),
        katib_status(CREATED, RUNNING, best=OPTIMAL, trials=18, trialsSucceeded=18),
    ]
    rc, out, err = kftune(
        capsys, "submit", str(KATIB / "ner-asha.yaml"), "--wait", "--poll", "0.01", "--kubeconfig", kubeconfig
    )
    assert (rc, err) == (0, "")
    last = out.splitlines()[-1]
    assert last.startswith(
        "ner-asha: the search ended with every trial finished; the suggestion service says: kftune: search complete:"
    )
    assert "keeps the Experiment Running" in last and "kubectl -n kftune delete experiment ner-asha" in last
    # events are read only once no trial is active: create, poll (1 running), poll (0 active), events
    assert [r["path"].rsplit("/", 1)[-1] for r in fake.requests[start:]] == [
        "experiments",
        "ner-asha",
        "ner-asha",
        "events",
    ]
    assert fake.requests[-1]["query"]["fieldSelector"] == [
        "involvedObject.kind=Suggestion,involvedObject.name=ner-asha"
    ]


def test_submit_wait_without_access_to_events_says_so_once(fake, kubeconfig, capsys):
    fake.forbid_events = True
    fake.scripts[("kftune", "ner-asha")] = [katib_status(CREATED, RUNNING, trials=3, trialsSucceeded=3)]
    rc, out, err = kftune(
        capsys,
        "submit",
        str(KATIB / "ner-asha.yaml"),
        "--timeout",
        "0.2",
        "--poll",
        "0.01",
        "--kubeconfig",
        kubeconfig,
    )
    assert rc == 3
    assert err.count("cannot read events in kftune (events is forbidden") == 1
    assert sum(r["path"].endswith("/events") for r in fake.requests) == 1


# ----------------------------------------------------------------------------- best


def test_best_prints_the_current_optimal_trial(fake, kubeconfig, capsys):
    fake.experiments[("kftune", "ner-asha")] = {
        **load_experiment(KATIB / "ner-asha.yaml").raw,
        "status": succeeded(trials=110),
    }
    rc, out, err = kftune(capsys, "best", "ner-asha", "--kubeconfig", kubeconfig)
    assert (rc, err) == (0, "")
    assert (
        out.splitlines()[0]
        == "# experiment kftune/ner-asha: Succeeded (ExperimentMaxTrialsReached), 110 trials"
    )
    assert yaml.safe_load(out) == {"currentOptimalTrial": OPTIMAL}
    assert (
        "  bestTrialName: ner-asha-x4k2q9zt\n" in out and "    value: '0.0000232607'\n" in out
    )  # strings stay strings
    rc, out, err = kftune(capsys, "best", "ner-asha", "--json", "-n", "kftune", "--kubeconfig", kubeconfig)
    assert rc == 0 and json.loads(out) == OPTIMAL


def test_best_without_a_result_or_experiment(fake, kubeconfig, capsys):
    fake.experiments[("kftune", "ner-asha")] = {
        **load_experiment(KATIB / "ner-asha.yaml").raw,
        "status": katib_status(CREATED, RUNNING, trials=4, trialsRunning=4),
    }
    rc, out, err = kftune(capsys, "best", "ner-asha", "--kubeconfig", kubeconfig)
    assert rc == 1 and out == ""
    assert "experiment kftune/ner-asha has no optimal trial yet (Running, 0 trial(s) succeeded)" in err
    rc, out, err = kftune(capsys, "best", "nope", "--kubeconfig", kubeconfig)
    assert rc == 2 and "no experiment 'nope' in namespace kftune" in err


# ----------------------------------------------------------------------------- connection problems


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_api_server_is_one_line_exit_2(tmp_path, kftune_cli):
    port = closed_port()
    kc = write_kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{port}")
    r = kftune_cli("katib", "submit", str(KATIB / "ner-asha.yaml"), "--kubeconfig", str(kc), timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith(
        f"kftune katib: error: cannot reach the Kubernetes API server at http://127.0.0.1:{port}:"
    )
    assert "Connection refused" in r.stderr
    r = kftune_cli("katib", "best", "ner-asha", "--kubeconfig", str(kc), timeout=120)
    assert r.returncode == 2 and "cannot reach the Kubernetes API server" in r.stderr


def test_missing_kubeconfig_and_bad_credentials(fake, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    rc, _, err = kftune(capsys, "best", "x", "--kubeconfig", str(tmp_path / "missing"))
    assert (
        rc == 2
        and err.startswith("kftune katib: error: no usable Kubernetes configuration")
        and err.count("\n") == 1
    )
    kc = write_kubeconfig(tmp_path / "kc", fake.url)
    kc.write_text(kc.read_text().replace(TOKEN, "wrong"))
    rc, _, err = kftune(capsys, "best", "x", "--kubeconfig", str(kc))
    assert rc == 2 and "did not accept the credentials: Unauthorized" in err
