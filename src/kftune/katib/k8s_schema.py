"""Check Kubernetes objects inside a trial template against the Kubernetes JSON schema.

Katib's webhook converts a ``batch/v1`` Job template into the Go ``batchv1.Job`` type and rejects
fields that would be dropped or have the wrong type (``validateTrialJob``). Offline, the closest
thing is the strict JSON schema (no additional properties) shipped by the ``kubernetes-validate``
package; it is optional: without it these checks are skipped (``available()`` says so).
Paths under ``resources.limits``/``resources.requests`` are not checked, as in Katib (extended
resources such as ``nvidia.com/gpu``).
"""

from __future__ import annotations

import functools
from typing import Any

SCHEMA_FILES = {"Job": "job-batch-v1.json", "PodTemplateSpec": "podtemplatespec-v1.json"}


@functools.cache
def _validator(kind: str, kube_version: str) -> Any | None:
    try:
        import jsonschema
        import referencing
        from kubernetes_validate import utils
    except ImportError:
        return None
    versions = [v for v in utils.all_versions() if utils.major_minor(v) <= utils.major_minor(kube_version)]
    if not versions:
        versions = utils.all_versions()[:1]
    folder = f"v{versions[-1]}-local-strict"
    schema = utils.schema_contents(f"kubernetes-json-schema/{folder}/{SCHEMA_FILES[kind]}", kube_version)
    definitions = utils.schema_contents(f"kubernetes-json-schema/{folder}/_definitions.json", kube_version)
    registry = referencing.Resource.from_contents(schema) @ referencing.Registry()
    registry = referencing.Resource.from_contents(definitions) @ registry
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def available() -> bool:
    return _validator("Job", "1.30") is not None


def _leaf_errors(error: Any) -> list[Any]:
    if error.context:
        # oneOf/anyOf: report the alternatives' deepest errors, once each
        best = max(error.context, key=lambda e: len(e.absolute_path))
        return _leaf_errors(best)
    return [error]


def schema_errors(obj: dict[str, Any], kind: str, kube_version: str = "1.30") -> list[tuple[tuple, str]]:
    """``(path inside obj, message)`` for each schema violation (empty when the schema is missing)."""
    validator = _validator(kind, kube_version)
    if validator is None:
        return []
    out: list[tuple[tuple, str]] = []
    seen: set[tuple[tuple, str]] = set()
    for error in validator.iter_errors(obj):
        for leaf in _leaf_errors(error):
            path = tuple(leaf.absolute_path)
            if "resources" in path and any(p in ("limits", "requests") for p in path):
                continue
            item = (path, leaf.message)
            if item not in seen:
                seen.add(item)
                out.append(item)
    return out
