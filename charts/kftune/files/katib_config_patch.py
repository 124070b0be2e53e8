"""Register kftune's suggestion algorithms in Katib's katib-config ConfigMap, and take them out again.

Run by the chart's hook Jobs (post-install/post-upgrade: ``register``; pre-delete: ``unregister``)
with the Job's ServiceAccount token; needs only Python and PyYAML.

- ``register`` adds our ``runtime.suggestions[]`` entries to ``katib-config.yaml`` or replaces
  entries of the same ``algorithmName``; every other entry and every other key is left as it is.
  Running it again with the same entries changes nothing (no write). Entries this release
  registered before and no longer lists are removed.
- ``unregister`` removes our entries and puts back any entry ours replaced, at its old position.
  When nobody else changed katib-config in between, the original text comes back byte for byte.

What was there before is kept in the ConfigMap's annotation ``kftune.io/katib-registration``
(JSON: owner release, registered algorithms, replaced entries, original text). One release owns
the registration; a second release asking to register is refused with a message naming the first.

The pure functions (``register_text``/``unregister_text``, ``register_configmap``/
``unregister_configmap``) are what tests exercise; ``main`` adds the Kubernetes API round trip
(GET, then PUT with the read resourceVersion, retried on 409 Conflict).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

DATA_KEY = "katib-config.yaml"
STATE_ANNOTATION = "kftune.io/katib-registration"
# Katib adds port 6789 ("katib-api") itself and refuses a suggestion config that sets it.
KATIB_SUGGESTION_PORT = 6789
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class PatchError(Exception):
    """Something a user must fix; printed as one line, exit 1."""


@dataclass
class RegistrationState:
    owner: str
    algorithms: list[str] = field(default_factory=list)
    # algorithmName -> {"index": position in runtime.suggestions, "entry": the entry ours replaced}
    replaced: dict[str, dict[str, Any]] = field(default_factory=dict)
    original: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> RegistrationState | None:
        if not text:
            return None
        data = json.loads(text)
        return cls(
            owner=data["owner"],
            algorithms=list(data.get("algorithms", [])),
            replaced=dict(data.get("replaced", {})),
            original=data.get("original", ""),
        )


# ---- katib-config.yaml text ----------------------------------------------------------------


def _load_config(text: str) -> dict[str, Any]:
    try:
        cfg = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise PatchError(f"{DATA_KEY} is not valid YAML: {exc}".replace("\n", " ")) from exc
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise PatchError(f"{DATA_KEY} must be a mapping (kind: KatibConfig), got {type(cfg).__name__}")
    runtime = cfg.get("runtime")
    if runtime is not None and not isinstance(runtime, dict):
        raise PatchError(f"{DATA_KEY}: runtime must be a mapping")
    if runtime is not None and not isinstance(runtime.get("suggestions", []) or [], list):
        raise PatchError(f"{DATA_KEY}: runtime.suggestions must be a list")
    return cfg


def _dump_config(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False, width=1000)


def _suggestions(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    runtime = cfg.setdefault("runtime", {}) or {}
    cfg["runtime"] = runtime
    suggestions = runtime.get("suggestions") or []
    runtime["suggestions"] = suggestions
    return suggestions


def _index(suggestions: list[dict[str, Any]], name: str) -> int | None:
    for i, entry in enumerate(suggestions):
        if isinstance(entry, dict) and entry.get("algorithmName") == name:
            return i
    return None


def validate_entries(entries: Any) -> list[dict[str, Any]]:
    if not isinstance(entries, list) or not entries:
        raise PatchError("entries must be a non-empty list of katib-config runtime.suggestions[] entries")
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise PatchError(f"entries[{i}] must be a mapping")
        name = entry.get("algorithmName")
        if not isinstance(name, str) or not name:
            raise PatchError(f"entries[{i}].algorithmName is required")
        if name in seen:
            raise PatchError(f"entries[{i}]: algorithmName {name!r} is listed twice")
        seen.add(name)
        if not str(entry.get("image") or "").strip():
            raise PatchError(f"entries[{i}] ({name}): image is required (Katib refuses an empty image)")
        for port in entry.get("ports") or []:
            if port.get("containerPort") == KATIB_SUGGESTION_PORT or port.get("name") == "katib-api":
                raise PatchError(
                    f"entries[{i}] ({name}): do not declare port {KATIB_SUGGESTION_PORT}/katib-api; Katib adds it"
                )
    return entries


def register_text(
    text: str, entries: list[dict[str, Any]], state: RegistrationState | None, owner: str
) -> tuple[str, RegistrationState]:
    """Return katib-config.yaml text with our entries in place, and the state to remember."""
    validate_entries(entries)
    if state is not None and state.owner != owner:
        raise PatchError(
            f"kftune algorithms {', '.join(state.algorithms)} are already registered in katib-config by "
            f"release {state.owner}; uninstall that release, or install this one with "
            "suggestion.registration=manual"
        )
    cfg = _load_config(text)
    before = copy.deepcopy(cfg)
    state = RegistrationState(owner=owner, original=text) if state is None else copy.deepcopy(state)
    suggestions = _suggestions(cfg)
    wanted = [e["algorithmName"] for e in entries]

    # Algorithms this release registered earlier but no longer lists: take them out.
    for name in [a for a in state.algorithms if a not in wanted]:
        _remove_ours(suggestions, state, name)
    for entry in entries:
        name = entry["algorithmName"]
        idx = _index(suggestions, name)
        if idx is None:
            suggestions.append(copy.deepcopy(entry))
            continue
        if name not in state.algorithms and name not in state.replaced:
            state.replaced[name] = {"index": idx, "entry": copy.deepcopy(suggestions[idx])}
        suggestions[idx] = copy.deepcopy(entry)
    state.algorithms = wanted
    if cfg == before:
        return text, state
    return _dump_config(cfg), state


def _remove_ours(suggestions: list[dict[str, Any]], state: RegistrationState, name: str) -> None:
    idx = _index(suggestions, name)
    if idx is not None:
        del suggestions[idx]
    old = state.replaced.pop(name, None)
    if old is not None and _index(suggestions, name) is None:
        suggestions.insert(min(int(old["index"]), len(suggestions)), old["entry"])


def unregister_text(text: str, state: RegistrationState | None) -> str:
    """Return katib-config.yaml text without our entries (and with what they replaced)."""
    if state is None:
        return text
    cfg = _load_config(text)
    before = copy.deepcopy(cfg)
    suggestions = _suggestions(cfg)
    work = copy.deepcopy(state)
    for name in list(work.algorithms):
        _remove_ours(suggestions, work, name)
    try:
        original_cfg = _load_config(state.original) if state.original else None
    except PatchError:
        original_cfg = None
    if original_cfg is not None and _normalise(cfg) == _normalise(original_cfg):
        return state.original
    if _normalise(cfg) == _normalise(before):
        return text
    return _dump_config(cfg)


def _normalise(cfg: dict[str, Any]) -> dict[str, Any]:
    """Drop the empty runtime/suggestions containers that _suggestions() may have added."""
    out = copy.deepcopy(cfg)
    runtime = out.get("runtime")
    if isinstance(runtime, dict) and not runtime.get("suggestions"):
        runtime.pop("suggestions", None)
    if isinstance(runtime, dict) and not runtime:
        out.pop("runtime", None)
    return out


# ---- ConfigMap objects ---------------------------------------------------------------------


def _config_text(cm: dict[str, Any]) -> str:
    data = cm.get("data") or {}
    if DATA_KEY not in data:
        meta = cm.get("metadata", {})
        raise PatchError(
            f"ConfigMap {meta.get('namespace')}/{meta.get('name')} has no {DATA_KEY} key: is this Katib >= 0.15?"
        )
    return data[DATA_KEY]


def _state_of(cm: dict[str, Any]) -> RegistrationState | None:
    annotations = (cm.get("metadata") or {}).get("annotations") or {}
    try:
        return RegistrationState.from_json(annotations.get(STATE_ANNOTATION))
    except (ValueError, KeyError) as exc:
        raise PatchError(f"annotation {STATE_ANNOTATION} is not valid kftune state: {exc}") from exc


def register_configmap(
    cm: dict[str, Any], entries: list[dict[str, Any]], owner: str
) -> dict[str, Any] | None:
    """The updated ConfigMap, or None when it already holds exactly these entries."""
    state = _state_of(cm)
    text = _config_text(cm)
    new_text, new_state = register_text(text, entries, state, owner)
    if new_text == text and state is not None and new_state == state:
        return None
    out = copy.deepcopy(cm)
    out["data"][DATA_KEY] = new_text
    out.setdefault("metadata", {}).setdefault("annotations", {})
    if out["metadata"]["annotations"] is None:
        out["metadata"]["annotations"] = {}
    out["metadata"]["annotations"][STATE_ANNOTATION] = new_state.to_json()
    return out


def unregister_configmap(cm: dict[str, Any], owner: str) -> dict[str, Any] | None:
    """The restored ConfigMap, or None when this release has nothing registered in it."""
    state = _state_of(cm)
    if state is None or state.owner != owner:
        return None
    out = copy.deepcopy(cm)
    out["data"][DATA_KEY] = unregister_text(_config_text(cm), state)
    annotations = out["metadata"]["annotations"]
    annotations.pop(STATE_ANNOTATION, None)
    if not annotations:
        out["metadata"].pop("annotations")
    return out


# ---- Kubernetes API ------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


@dataclass
class Api:
    server: str
    token: str | None
    context: ssl.SSLContext | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Api:
        server = args.api_server
        if not server:
            host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
            if not host:
                raise PatchError(
                    "not running in a cluster (KUBERNETES_SERVICE_HOST unset) and no --api-server given"
                )
            server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        token = None
        if args.token_file and os.path.exists(args.token_file):
            with open(args.token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        context = None
        if server.startswith("https://"):
            context = ssl.create_default_context(
                cafile=args.ca_file if os.path.exists(args.ca_file) else None
            )
        return cls(server.rstrip("/"), token, context)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.context) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            with contextlib.suppress(ValueError):
                detail = json.loads(detail).get("message", detail)
            raise ApiError(exc.code, detail) from exc


def _configmap_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps/{name}"


def apply(
    api: Api, action: str, namespace: str, name: str, owner: str, entries: Any, attempts: int = 5
) -> str:
    """GET, patch, PUT (optimistic concurrency on resourceVersion); returns what happened."""
    path = _configmap_path(namespace, name)
    for attempt in range(1, attempts + 1):
        try:
            cm = api.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                if action == "unregister":
                    return f"ConfigMap {namespace}/{name} not found: nothing to restore"
                raise PatchError(
                    f"ConfigMap {namespace}/{name} not found: install Katib first "
                    "(docs/deploy.md), or set suggestion.katib.namespace / suggestion.registration=manual"
                ) from exc
            if exc.status == 403:
                raise PatchError(f"not allowed to read ConfigMap {namespace}/{name}: {exc}") from exc
            raise
        if action == "register":
            new = register_configmap(cm, entries, owner)
        else:
            new = unregister_configmap(cm, owner)
        if new is None:
            return f"{action}: katib-config already up to date, nothing written"
        try:
            api.request("PUT", path, new)
        except ApiError as exc:
            if exc.status == 409 and attempt < attempts:
                time.sleep(0.2 * attempt)
                continue
            raise
        if action == "register":
            return f"registered {', '.join(e['algorithmName'] for e in entries)} in {namespace}/{name}"
        return f"unregistered kftune algorithms from {namespace}/{name}"
    raise PatchError(f"ConfigMap {namespace}/{name} kept changing (409 Conflict {attempts} times); run again")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="katib_config_patch", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["register", "unregister"])
    parser.add_argument("--namespace", default="kubeflow", help="Katib's namespace (default: kubeflow)")
    parser.add_argument("--name", default="katib-config", help="the ConfigMap (default: katib-config)")
    parser.add_argument("--owner", required=True, help="NAMESPACE/RELEASE that owns the registration")
    parser.add_argument("--entries", help="YAML file with the runtime.suggestions[] entries (register)")
    parser.add_argument("--api-server", default="", help="API server URL (default: in-cluster)")
    parser.add_argument("--token-file", default=f"{SA_DIR}/token")
    parser.add_argument("--ca-file", default=f"{SA_DIR}/ca.crt")
    args = parser.parse_args(argv)
    try:
        entries = None
        if args.action == "register":
            if not args.entries:
                raise PatchError("register needs --entries FILE")
            with open(args.entries, encoding="utf-8") as fh:
                entries = validate_entries(yaml.safe_load(fh))
        api = Api.from_args(args)
        print(apply(api, args.action, args.namespace, args.name, args.owner, entries))
    except (PatchError, ApiError, OSError) as exc:
        print(f"katib_config_patch {args.action}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
