"""Rendering helpers for the Helm chart tests (helm-python-sdk: the Helm v4 Go SDK, no binary).

Imported by the test modules of this folder as ``kftune_chart`` (pytest puts the folder on sys.path).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip(
    "helm_python", reason="helm-python-sdk is a dev dependency (pip install helm-python-sdk)"
)

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "kftune"
RELEASE = "kftune"
NAMESPACE = "kftune"  # docs/contracts.md: default namespace
KUBE_VERSION = "1.30.0"  # every rendered manifest is validated against this Kubernetes version

# Value sets every render/lint/validate/policy test runs over.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "external-db": {
        "postgresql": {"enabled": False},
        "externalDatabase": {"existingSecret": "mlflow-db", "uriKey": "uri"},
    },
    "external-s3": {
        "minio": {"enabled": False},
        "artifacts": {
            "externalEndpoint": "https://s3.storage.example.org",
            "existingSecret": "team-s3",
            "bucket": "team-mlflow",
            "createBucket": True,
        },
    },
    # AWS S3 with credentials from the pod identity (IRSA): no MinIO, no S3 Secret, no endpoint.
    "no-minio": {
        "minio": {"enabled": False},
        "artifacts": {"existingSecret": ""},
        "mlflow": {"serviceAccountAnnotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/mlflow"}},
    },
    "suggestion-off": {"suggestion": {"enabled": False}},
    "hook-off": {"suggestion": {"registration": "manual"}},
    "standalone-suggestion": {"suggestion": {"standalone": {"enabled": True}}},
    "everything-external": {
        "postgresql": {"enabled": False},
        "externalDatabase": {"existingSecret": "mlflow-db"},
        "minio": {"enabled": False},
        "artifacts": {"externalEndpoint": "http://minio.storage:9000"},
        "networkPolicy": {"allowNamespaces": ["kubeflow"]},
        "rbac": {
            "extraSubjects": [{"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"}]
        },
        "image": {"tag": "3f9c2ab"},
        "imagePullSecrets": [{"name": "ghcr"}],
    },
}


def load_chart():
    return helm.Chart.load(str(CHART_DIR))


def render(values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included)."""
    return load_chart().render(copy.deepcopy(values or {}), name=RELEASE, namespace=namespace)


def render_docs(values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path, text in sorted(render(values, namespace=namespace).items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    return docs


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, (
        f"expected one {kind}/{name}, found {len(found)}: {[d['metadata']['name'] for d in docs if d['kind'] == kind]}"
    )
    return found[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    kind = doc["kind"]
    if kind == "Pod":
        return doc["spec"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return doc["spec"]["template"]["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            yield key, c


def container(doc: dict[str, Any], name: str) -> dict[str, Any]:
    for _, c in containers(pod_spec(doc)):
        if c["name"] == name:
            return c
    raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']} has no container {name}")


def katib_entries(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The katib-config runtime.suggestions[] entries the hook registers (empty without the hook)."""
    cms = [d for d in find(docs, "ConfigMap") if "entries.yaml" in (d.get("data") or {})]
    assert len(cms) <= 1
    return yaml.safe_load(cms[0]["data"]["entries.yaml"]) if cms else []
