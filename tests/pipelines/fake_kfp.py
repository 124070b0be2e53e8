"""A tiny stand-in for the Kubeflow Pipelines API server (v2beta1 REST), enough for kfp.Client 2.17's
calls behind ``kftune pipeline submit``: healthz, list/upload pipelines and versions, list/create
experiments, create/get runs, create recurring runs. Every request is recorded."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

API = "/apis/v2beta1"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeKFP:
    final_state: str = "SUCCEEDED"
    error_message: str = ""
    requests: list[Request] = field(default_factory=list)
    pipelines: dict[str, dict] = field(default_factory=dict)  # id -> pipeline
    versions: dict[str, list[dict]] = field(default_factory=dict)  # pipeline id -> versions
    uploads: list[bytes] = field(default_factory=list)  # uploaded packages (multipart bodies)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    recurring: dict[str, dict] = field(default_factory=dict)
    gets: int = 0
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]

    # ------------------------------------------------------------------ handling
    def handle(self, method: str, path: str, query: dict, body: bytes, headers=None) -> tuple[int, dict]:
        self.requests.append(Request(method, path, query, body, dict(headers or {})))
        if path == f"{API}/healthz":
            return 200, {"multi_user": False}
        if method == "GET" and path == f"{API}/pipelines":
            name = _filter_value(query)
            found = [p for p in self.pipelines.values() if p["display_name"] == name]
            return 200, ({"pipelines": found, "total_size": len(found)} if found else {})
        if method == "POST" and path == f"{API}/pipelines/upload":
            pid = f"pipeline-{len(self.pipelines) + 1}"
            name = query.get("name", ["?"])[0]
            self.pipelines[pid] = {"pipeline_id": pid, "display_name": name}
            self.versions[pid] = [
                {"pipeline_id": pid, "pipeline_version_id": f"{pid}-v0", "display_name": name}
            ]
            self.uploads.append(body)
            return 200, self.pipelines[pid]
        if method == "POST" and path == f"{API}/pipelines/upload_version":
            pid = query.get("pipelineid", [""])[0]
            name = query.get("name", ["?"])[0]
            if pid not in self.pipelines:
                return 404, {"message": f"pipeline {pid} not found"}
            if any(v["display_name"] == name for v in self.versions[pid]):
                return 409, {"message": f"version {name} already exists", "code": 6}
            v = {
                "pipeline_id": pid,
                "pipeline_version_id": f"{pid}-v{len(self.versions[pid])}",
                "display_name": name,
            }
            self.versions[pid].append(v)
            self.uploads.append(body)
            return 200, v
        m = re.fullmatch(rf"{API}/pipelines/([^/]+)/versions", path)
        if method == "GET" and m:
            return 200, {"pipeline_versions": self.versions.get(m.group(1), [])}
        if method == "GET" and path == f"{API}/experiments":
            name = _filter_value(query)
            found = [e for e in self.experiments.values() if e["display_name"] == name]
            return 200, ({"experiments": found, "total_size": len(found)} if found else {})
        if method == "POST" and path == f"{API}/experiments":
            data = json.loads(body or b"{}")
            eid = f"experiment-{len(self.experiments) + 1}"
            self.experiments[eid] = {"experiment_id": eid, "display_name": data.get("display_name")}
            return 200, self.experiments[eid]
        if method == "POST" and path == f"{API}/runs":
            data = json.loads(body or b"{}")
            rid = f"run-{len(self.runs) + 1}"
            self.runs[rid] = {"run_id": rid, "display_name": data.get("display_name"), "state": "PENDING",
                              "request": data}  # fmt: skip
            return 200, {"run_id": rid, "display_name": data.get("display_name"), "state": "PENDING"}
        m = re.fullmatch(rf"{API}/runs/([^/:]+)", path)
        if method == "GET" and m:
            run = self.runs.get(m.group(1))
            if run is None:
                return 404, {"message": "run not found"}
            self.gets += 1
            state = "RUNNING" if self.gets < 2 else self.final_state
            out = {"run_id": run["run_id"], "display_name": run["display_name"], "state": state}
            if state == "FAILED" and self.error_message:
                out["error"] = {"code": 2, "message": self.error_message}
            return 200, out
        if method == "POST" and path == f"{API}/recurringruns":
            data = json.loads(body or b"{}")
            rid = f"recurring-{len(self.recurring) + 1}"
            self.recurring[rid] = data
            return 200, {"recurring_run_id": rid, "display_name": data.get("display_name")}
        return 404, {"message": f"fake KFP: no route {method} {path}"}

    # ------------------------------------------------------------------ server
    def start(self) -> FakeKFP:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _do(self, method: str) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                code, data = fake.handle(
                    method,
                    url.path,
                    parse_qs(url.query),
                    body,
                    {k.lower(): v for k, v in self.headers.items()},
                )
                payload = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):  # noqa: N802
                self._do("GET")

            def do_POST(self):  # noqa: N802
                self._do("POST")

            def do_DELETE(self):  # noqa: N802
                self._do("DELETE")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _filter_value(query: dict) -> str | None:
    raw = query.get("filter", [""])[0]
    if not raw:
        return None
    preds = json.loads(raw).get("predicates") or []
    for p in preds:
        if p.get("key") in ("display_name", "name"):
            return p.get("stringValue") or p.get("string_value")
    return None
