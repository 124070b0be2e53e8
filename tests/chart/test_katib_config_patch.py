"""The katib-config registration the chart's hook Jobs run (charts/kftune/files/katib_config_patch.py).

Pure logic on katib-config.yaml text in Katib >= 0.15's format, then the whole command against a
small in-test API server that behaves like the Kubernetes one for ConfigMap GET/PUT (resourceVersion,
409 Conflict, 404).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kftune_chart import CHART_DIR, katib_entries, render_docs

SCRIPT = CHART_DIR / "files" / "katib_config_patch.py"
_spec = importlib.util.spec_from_file_location("katib_config_patch", SCRIPT)
kcp = importlib.util.module_from_spec(_spec)
sys.modules["katib_config_patch"] = kcp  # dataclasses look their module up there
_spec.loader.exec_module(kcp)

OWNER = "kftune/kftune"

# A katib-config in the shape Katib's standalone manifests install (init + runtime, with comments,
# flow lists, resources, a PVC spec), written for this test.
KATIB_CONFIG = """\
---
apiVersion: config.kubeflow.org/v1beta1
kind: KatibConfig
init:
  certGenerator:
    enable: true
  controller:
    webhookPort: 8443
    trialResources:
      - Job.v1.batch
      - PyTorchJob.v1.kubeflow.org
runtime:
  metricsCollectors:
    - kind: StdOut
      image: ghcr.io/kubeflow/katib/file-metrics-collector:v0.19.0
    - kind: TensorFlowEvent
      image: ghcr.io/kubeflow/katib/tfevent-metrics-collector:v0.19.0
      resources:
        limits:
          memory: 1Gi
  suggestions:
    # the built-in algorithms
    - algorithmName: random
      image: ghcr.io/kubeflow/katib/suggestion-hyperopt:v0.19.0
    - algorithmName: tpe
      image: ghcr.io/kubeflow/katib/suggestion-hyperopt:v0.19.0
    - algorithmName: hyperband
      image: ghcr.io/kubeflow/katib/suggestion-hyperband:v0.19.0
    - algorithmName: enas
      image: ghcr.io/kubeflow/katib/suggestion-enas:v0.19.0
      resources: {limits: {memory: 400Mi}}
    - algorithmName: pbt
      image: ghcr.io/kubeflow/katib/suggestion-pbt:v0.19.0
      persistentVolumeClaimSpec:
        accessModes: [ReadWriteMany]
        resources:
          requests:
            storage: 5Gi
  earlyStoppings:
    - algorithmName: medianstop
      image: ghcr.io/kubeflow/katib/earlystopping-medianstop:v0.19.0
"""


def entry(name: str, tag: str = "0.1.0") -> dict[str, Any]:
    return {
        "algorithmName": name,
        "image": f"ghcr.io/kftune/suggestion:{tag}",
        "args": ["katib", "serve", "--port", "6789"],
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
    }


ENTRIES = [entry("asha"), entry("bohb")]


def suggestions(text: str) -> list[dict[str, Any]]:
    return yaml.safe_load(text)["runtime"]["suggestions"]


def names(text: str) -> list[str]:
    return [s["algorithmName"] for s in suggestions(text)]


def without(cfg_text: str, *drop: str) -> dict[str, Any]:
    cfg = yaml.safe_load(cfg_text)
    cfg["runtime"]["suggestions"] = [
        s for s in cfg["runtime"]["suggestions"] if s["algorithmName"] not in drop
    ]
    return cfg


def real_katib_configs() -> list[tuple[str, str]]:
    """katib-config.yaml of Katib's own standalone install, when the Katib sources are at hand."""
    git_dir = Path("/work/.mirror/kubeflow+katib/repo")
    out = []
    for ref in ("v0.17.0", "v0.19.0", "HEAD"):
        try:
            text = subprocess.run(
                ["git", "--git-dir", str(git_dir), "show", f"{ref}:manifests/v1beta1/installs/katib-standalone/katib-config.yaml"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            continue
        out.append((ref, text))
    return out


CONFIGS = [("written-for-test", KATIB_CONFIG)] + real_katib_configs()


@pytest.mark.parametrize("label,text", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_register_adds_ours_and_preserves_everything_else(label, text):
    new, state = kcp.register_text(text, ENTRIES, None, OWNER)
    assert names(new)[-2:] == ["asha", "bohb"]
    assert suggestions(new)[-2:] == ENTRIES
    # Every other key and entry is unchanged, in order.
    assert without(new, "asha", "bohb") == yaml.safe_load(text)
    assert state.owner == OWNER and state.algorithms == ["asha", "bohb"] and state.original == text


@pytest.mark.parametrize("label,text", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_register_is_idempotent_and_unregister_restores_exactly(label, text):
    once, state = kcp.register_text(text, ENTRIES, None, OWNER)
    twice, state2 = kcp.register_text(once, ENTRIES, state, OWNER)
    assert twice == once and state2 == state
    assert kcp.unregister_text(twice, state2) == text  # byte for byte, comments included


def test_register_replaces_a_foreign_entry_and_unregister_puts_it_back_in_place():
    foreign = KATIB_CONFIG.replace(
        "    - algorithmName: hyperband\n",
        "    - algorithmName: asha\n      image: example.org/someone-elses-asha:1.2\n    - algorithmName: hyperband\n",
    )
    new, state = kcp.register_text(foreign, ENTRIES, None, OWNER)
    assert names(new).count("asha") == 1
    assert names(new).index("asha") == 2, "replaced in place"
    assert suggestions(new)[2]["image"] == "ghcr.io/kftune/suggestion:0.1.0"
    assert state.replaced["asha"]["entry"]["image"] == "example.org/someone-elses-asha:1.2"
    assert kcp.unregister_text(new, state) == foreign


def test_upgrade_changes_the_image_and_drops_an_algorithm_no_longer_listed():
    v1, state = kcp.register_text(KATIB_CONFIG, ENTRIES, None, OWNER)
    v2, state = kcp.register_text(v1, [entry("asha", "3f9c2ab")], state, OWNER)
    assert "bohb" not in names(v2)
    assert [s["image"] for s in suggestions(v2) if s["algorithmName"] == "asha"] == [
        "ghcr.io/kftune/suggestion:3f9c2ab"
    ]
    assert kcp.unregister_text(v2, state) == KATIB_CONFIG


def test_changes_made_by_others_survive_unregister():
    new, state = kcp.register_text(KATIB_CONFIG, ENTRIES, None, OWNER)
    cfg = yaml.safe_load(new)
    cfg["runtime"]["suggestions"].append({"algorithmName": "mine", "image": "example.org/mine:2"})
    cfg["init"]["controller"]["webhookPort"] = 9443
    edited = yaml.safe_dump(cfg, sort_keys=False)
    restored = yaml.safe_load(kcp.unregister_text(edited, state))
    assert [s["algorithmName"] for s in restored["runtime"]["suggestions"]] == [
        "random", "tpe", "hyperband", "enas", "pbt", "mine",
    ]  # fmt: skip
    assert restored["init"]["controller"]["webhookPort"] == 9443
    assert restored["runtime"]["earlyStoppings"] == yaml.safe_load(KATIB_CONFIG)["runtime"]["earlyStoppings"]


def test_config_without_runtime_section_gets_one_and_loses_it_again():
    bare = "apiVersion: config.kubeflow.org/v1beta1\nkind: KatibConfig\n"
    new, state = kcp.register_text(bare, ENTRIES, None, OWNER)
    assert names(new) == ["asha", "bohb"]
    assert kcp.unregister_text(new, state) == bare


def test_second_release_is_refused_with_a_message_naming_the_first():
    _, state = kcp.register_text(KATIB_CONFIG, ENTRIES, None, OWNER)
    with pytest.raises(kcp.PatchError, match="already registered in katib-config by release kftune/kftune"):
        kcp.register_text(KATIB_CONFIG, ENTRIES, state, "other/kftune")


@pytest.mark.parametrize(
    "entries,message",
    [
        ([], "non-empty list"),
        ([{"image": "x:1"}], "algorithmName is required"),
        ([{"algorithmName": "asha", "image": " "}], "image is required"),
        ([entry("asha"), entry("asha")], "listed twice"),
        ([{**entry("asha"), "ports": [{"containerPort": 6789}]}], "Katib adds it"),
    ],
)
def test_bad_entries_are_refused(entries, message):
    with pytest.raises(kcp.PatchError, match=message):
        kcp.register_text(KATIB_CONFIG, entries, None, OWNER)


@pytest.mark.parametrize(
    "text,message", [("runtime: [1, 2]\n", "runtime must be a mapping"), ("a: [\n", "not valid YAML")]
)
def test_broken_katib_config_is_a_clear_error(text, message):
    with pytest.raises(kcp.PatchError, match=message):
        kcp.register_text(text, ENTRIES, None, OWNER)


def test_the_chart_entries_are_accepted():
    chart_entries = katib_entries(render_docs())
    kcp.validate_entries(chart_entries)
    new, _ = kcp.register_text(KATIB_CONFIG, chart_entries, None, OWNER)
    registered = {s["algorithmName"]: s for s in suggestions(new)}
    assert registered["asha"]["securityContext"]["runAsNonRoot"] is True
    assert registered["bohb"]["args"] == ["katib", "serve", "--port", "6789"]


# ---- ConfigMap objects and the API round trip -------------------------------------------------


def configmap(text: str = KATIB_CONFIG, rv: str = "100") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "katib-config",
            "namespace": "kubeflow",
            "resourceVersion": rv,
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        },
        "data": {"katib-config.yaml": text},
    }


def test_configmap_register_then_unregister_restores_data_and_annotations():
    cm = configmap()
    registered = kcp.register_configmap(cm, ENTRIES, OWNER)
    assert kcp.STATE_ANNOTATION in registered["metadata"]["annotations"]
    assert kcp.register_configmap(registered, ENTRIES, OWNER) is None, "nothing to write the second time"
    restored = kcp.unregister_configmap(registered, OWNER)
    assert restored == cm
    assert kcp.unregister_configmap(cm, OWNER) is None, "nothing registered: nothing to do"


class FakeApiServer:
    """ConfigMap GET/PUT with resourceVersion checks, like the Kubernetes API server."""

    def __init__(self, cm: dict[str, Any] | None, conflicts: int = 0):
        self.cm = copy.deepcopy(cm)
        self.conflicts = conflicts
        self.puts = 0
        self.auth: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body: dict[str, Any]):
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                outer.auth.append(self.headers.get("Authorization"))
                if outer.cm is None or self.path != "/api/v1/namespaces/kubeflow/configmaps/katib-config":
                    return self._send(
                        404, {"kind": "Status", "message": 'configmaps "katib-config" not found'}
                    )
                self._send(200, outer.cm)

            def do_PUT(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if outer.conflicts:
                    outer.conflicts -= 1
                    # someone else wrote in between: bump the version
                    outer.cm["metadata"]["resourceVersion"] = str(
                        int(outer.cm["metadata"]["resourceVersion"]) + 1
                    )
                if body["metadata"]["resourceVersion"] != outer.cm["metadata"]["resourceVersion"]:
                    return self._send(409, {"kind": "Status", "message": "the object has been modified"})
                body["metadata"]["resourceVersion"] = str(int(body["metadata"]["resourceVersion"]) + 1)
                outer.cm = body
                outer.puts += 1
                self._send(200, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def entries_file(tmp_path) -> Path:
    path = tmp_path / "entries.yaml"
    path.write_text(yaml.safe_dump(ENTRIES))
    token = tmp_path / "token"
    token.write_text("s3cr3t-token\n")
    return path


def cli(action: str, url: str, entries_file: Path, owner: str = OWNER) -> list[str]:
    args = [action, "--namespace=kubeflow", "--name=katib-config", f"--owner={owner}", f"--api-server={url}"]
    args += [f"--token-file={entries_file.parent / 'token'}", f"--ca-file={entries_file.parent / 'none.crt'}"]
    if action == "register":
        args.append(f"--entries={entries_file}")
    return args


def test_cli_round_trip_against_an_api_server(entries_file, capsys):
    with FakeApiServer(configmap(), conflicts=2) as api:
        assert kcp.main(cli("register", api.url, entries_file)) == 0
        assert "registered asha, bohb in kubeflow/katib-config" in capsys.readouterr().out
        assert api.puts == 1, "two 409s were retried, one write landed"
        assert names(api.cm["data"]["katib-config.yaml"])[-2:] == ["asha", "bohb"]
        assert set(api.auth) == {"Bearer s3cr3t-token"}

        assert kcp.main(cli("register", api.url, entries_file)) == 0
        assert "nothing written" in capsys.readouterr().out
        assert api.puts == 1

        assert kcp.main(cli("register", api.url, entries_file, owner="team-b/kftune")) == 1
        assert "already registered in katib-config by release kftune/kftune" in capsys.readouterr().err

        assert kcp.main(cli("unregister", api.url, entries_file)) == 0
        assert api.cm["data"]["katib-config.yaml"] == KATIB_CONFIG
        assert kcp.STATE_ANNOTATION not in api.cm["metadata"]["annotations"]


def test_cli_without_katib(entries_file, capsys):
    with FakeApiServer(None) as api:
        assert kcp.main(cli("register", api.url, entries_file)) == 1
        err = capsys.readouterr().err
        assert (
            "katib_config_patch register: error: ConfigMap kubeflow/katib-config not found: install Katib first"
            in err
        )
        assert err.count("\n") == 1
        # Uninstall must not be blocked by a Katib that is already gone.
        assert kcp.main(cli("unregister", api.url, entries_file)) == 0
        assert "nothing to restore" in capsys.readouterr().out
