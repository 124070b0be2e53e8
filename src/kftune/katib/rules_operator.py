"""Rules for Kubeflow training-operator trial kinds: what the PyTorchJob admission webhook and CRD
schema of training-operator v1.9 (``pkg/webhooks/pytorch/pytorchjob_webhook.go``,
``pkg/common/util/webhooks.go``, ``manifests/base/crds/kubeflow.org_pytorchjobs.yaml``) refuse or
drop, checked on the trial template.

Katib creates each trial's PyTorchJob from the template; when the operator's webhook rejects it,
the trial fails at creation, again for every trial, and only the Trial's events say why. The
webhook is a *validating* one: it runs before the operator's defaults (Master ``replicas`` 1,
replica types camel-cased), so a Master without ``replicas: 1`` or a replica type spelled
``master`` is refused. Fields the CRD schema does not know are pruned by the API server without a
word (Katib's client does not ask for strict field validation), and a value of the wrong type is
refused. Katib fills ``${trialParameters.x}`` by replacing text in the template's JSON, so a
placeholder in a number field stays a quoted string there.

The pod templates inside the replicas are checked by ``extra.pod-schema`` (Kubernetes'
PodTemplateSpec) and the primary-container rules.
"""

from __future__ import annotations

from typing import Any

from kftune.katib.experiment import PARAM_PLACEHOLDER
from kftune.katib.findings import Check, rule
from kftune.katib.kubeyaml import YPath

TRIAL_SPEC: YPath = ("spec", "trialTemplate", "trialSpec")
REPLICA_TYPES = ("Master", "Worker")
DEFAULT_CONTAINER = "pytorch"  # PyTorchJobDefaultContainerName
MANAGED_BY = ("kubeflow.org/training-operator", "kueue.x-k8s.io/multikueue")
RESTART_POLICIES = ("Always", "OnFailure", "Never", "ExitCode")

# The CRD's openAPIV3Schema for PyTorchJob.spec, without the pod templates: field -> type, where a
# type is "integer", "string", "boolean", "object" (free-form), a dict (an object with these
# fields) or ("map", type) (an object whose values have that type).
_QUANTITIES = ("map", "quantity")
SCHEDULING_POLICY = {
    "minAvailable": "integer",
    "minResources": _QUANTITIES,
    "priorityClass": "string",
    "queue": "string",
    "scheduleTimeoutSeconds": "integer",
}
RUN_POLICY = {
    "activeDeadlineSeconds": "integer",
    "backoffLimit": "integer",
    "cleanPodPolicy": "string",
    "managedBy": "string",
    "schedulingPolicy": SCHEDULING_POLICY,
    "suspend": "boolean",
    "ttlSecondsAfterFinished": "integer",
}
ELASTIC_POLICY = {
    "maxReplicas": "integer",
    "maxRestarts": "integer",
    "metrics": "array",
    "minReplicas": "integer",
    "nProcPerNode": "integer",
    "rdzvBackend": "string",
    "rdzvConf": "array",
    "rdzvHost": "string",
    "rdzvId": "string",
    "rdzvPort": "integer",
    "standalone": "boolean",
}
REPLICA_SPEC = {"replicas": "integer", "restartPolicy": "string", "template": "object"}
PYTORCHJOB_SPEC = {
    "elasticPolicy": ELASTIC_POLICY,
    "nprocPerNode": "string",
    "pytorchReplicaSpecs": ("map", REPLICA_SPEC),
    "runPolicy": RUN_POLICY,
}


def _type_problem(value: Any, expected: str) -> str | None:
    """Why ``value`` does not have the JSON type ``expected`` (None when it does)."""
    if expected == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected == "string":
        ok = isinstance(value, str)
    elif expected == "boolean":
        ok = isinstance(value, bool)
    elif expected == "array":
        ok = isinstance(value, list)
    elif expected == "quantity":
        ok = isinstance(value, (int, str, float)) and not isinstance(value, bool)
    else:  # object
        ok = isinstance(value, dict)
    if ok:
        return None
    if isinstance(value, str) and PARAM_PLACEHOLDER.search(value):
        return (
            f"must be {'an' if expected[0] in 'aeiou' else 'a'} {expected}, but holds a placeholder: "
            "Katib replaces ${trialParameters...} in the template's text, so the value stays a quoted string"
        )
    return (
        f"must be {'an' if expected[0] in 'aeiou' else 'a'} {expected}, got {type(value).__name__} {value!r}"
    )


def _walk_schema(c: Check, obj: Any, schema: Any, ypath: YPath) -> None:
    if isinstance(schema, dict):
        if not isinstance(obj, dict):
            c.error(ypath, f"must be an object, got {type(obj).__name__}", "write it as a mapping")
            return
        for key, value in obj.items():
            if key not in schema:
                close = [k for k in schema if k.lower() == str(key).lower()]
                hint = f"did you mean {close[0]!r}?" if close else f"fields here: {', '.join(schema)}"
                c.error(
                    (*ypath, key),
                    f"unknown field {key!r}: the PyTorchJob CRD schema does not have it, so the API server "
                    "drops it and the trial runs without it",
                    f"remove or rename it ({hint})",
                )
                continue
            _walk_schema(c, value, schema[key], (*ypath, key))
        return
    if isinstance(schema, tuple):  # ("map", value type)
        if not isinstance(obj, dict):
            c.error(ypath, f"must be a mapping, got {type(obj).__name__}", "write it as a mapping")
            return
        for key, value in obj.items():
            _walk_schema(c, value, schema[1], (*ypath, key))
        return
    problem = _type_problem(obj, schema)
    if problem:
        c.error(ypath, problem, "write a literal value of that type (the API server refuses the PyTorchJob)")


@rule(
    "operator.pytorchjob",
    "training-operator v1.9 (pytorchjob_webhook.go validateSpec/validatePyTorchReplicaSpecs, "
    "webhooks.go ValidateRunPolicy, kubeflow.org_pytorchjobs.yaml schema)",
    "a PyTorchJob trial passes the operator's webhook (Master and Worker replicas only, Master "
    "replicas exactly 1, a container named pytorch with an image, elasticPolicy rules, managedBy) and "
    "has only fields of the CRD schema, with their types",
)
def check_pytorchjob(c: Check) -> None:
    tt = c.spec.get("trialTemplate")
    job = tt.get("trialSpec") if isinstance(tt, dict) else None
    if not isinstance(job, dict) or job.get("kind") != "PyTorchJob":
        return
    spec = job.get("spec")
    if not isinstance(spec, dict):
        c.error((*TRIAL_SPEC, "spec"), "a PyTorchJob needs a spec", "add spec.pytorchReplicaSpecs")
        return
    here: YPath = (*TRIAL_SPEC, "spec")
    _walk_schema(c, spec, PYTORCHJOB_SPEC, here)

    replicas = spec.get("pytorchReplicaSpecs")
    rpath: YPath = (*here, "pytorchReplicaSpecs")
    if replicas is None:
        c.error(
            rpath, "spec.pytorchReplicaSpecs is required", "add pytorchReplicaSpecs with a Master replica"
        )
    elif isinstance(replicas, dict):
        for rtype, rspec in replicas.items():
            role: YPath = (*rpath, rtype)
            if rtype not in REPLICA_TYPES:
                fix = next((t for t in REPLICA_TYPES if t.lower() == str(rtype).lower()), None)
                c.error(
                    role,
                    f"replica type {rtype!r} is not supported: the webhook accepts Master and Worker "
                    "(it runs before the operator would fix the case)",
                    f"rename it to {fix!r}" if fix else "use Master (one) and Worker (the rest)",
                )
            rspec = rspec if isinstance(rspec, dict) else {}
            _check_replica(c, str(rtype), rspec, role)

    elastic = spec.get("elasticPolicy")
    if isinstance(elastic, dict):
        if not (isinstance(replicas, dict) and "Worker" in replicas):
            c.error(
                (*here, "elasticPolicy"),
                "elasticPolicy needs a Worker replica (pytorchReplicaSpecs.Worker)",
                "add a Worker replica, or remove elasticPolicy",
            )
        if "nProcPerNode" in elastic:
            if "nprocPerNode" in spec:
                c.error(
                    (*here, "elasticPolicy", "nProcPerNode"),
                    "elasticPolicy.nProcPerNode must not be used with spec.nprocPerNode",
                    "keep only spec.nprocPerNode",
                )
            else:
                c.warning(
                    (*here, "elasticPolicy", "nProcPerNode"),
                    "elasticPolicy.nProcPerNode is deprecated",
                    "use spec.nprocPerNode (a string: auto, cpu, gpu or a number)",
                )

    run_policy = spec.get("runPolicy")
    managed_by = run_policy.get("managedBy") if isinstance(run_policy, dict) else None
    if isinstance(managed_by, str) and managed_by not in MANAGED_BY:
        c.error(
            (*here, "runPolicy", "managedBy"),
            f"managedBy {managed_by!r} is not supported (the operator then never runs the job)",
            f"use one of {', '.join(MANAGED_BY)}, or leave it out",
        )


def _check_replica(c: Check, rtype: str, rspec: dict[str, Any], role: YPath) -> None:
    count = rspec.get("replicas")
    counted = isinstance(count, int) and not isinstance(count, bool)
    if rtype == "Master" and (count is None or (counted and count != 1)):
        c.error(
            (*role, "replicas") if count is not None else role,
            "the Master replica's replicas must be 1"
            + (
                " (the webhook runs before the default of 1 is filled in)"
                if count is None
                else f", got {count}"
            ),
            "write replicas: 1 under Master; put the other nodes under Worker",
        )
    elif rtype != "Master" and counted and count < 1:
        c.error(
            (*role, "replicas"),
            f"replicas must be at least 1, got {count}",
            "use 1 or more, or drop the replica",
        )
    policy = rspec.get("restartPolicy")
    if isinstance(policy, str) and policy not in RESTART_POLICIES and not PARAM_PLACEHOLDER.search(policy):
        c.error(
            (*role, "restartPolicy"),
            f"restartPolicy {policy!r} is not one of {', '.join(RESTART_POLICIES)}",
            "use Never or OnFailure for trials",
        )
    template = rspec.get("template")
    pod = template.get("spec") if isinstance(template, dict) else None
    containers = pod.get("containers") if isinstance(pod, dict) else None
    cpath: YPath = (*role, "template", "spec", "containers")
    if not isinstance(containers, list) or not containers:
        c.error(
            cpath, "a replica needs at least one container", f"add a container named {DEFAULT_CONTAINER!r}"
        )
        return
    names = []
    for i, ctr in enumerate(containers):
        if not isinstance(ctr, dict):
            continue
        names.append(ctr.get("name"))
        if not ctr.get("image"):
            c.error((*cpath, i, "image"), "the container has no image", "set image to the trainer image")
    if DEFAULT_CONTAINER not in names:
        c.error(
            cpath,
            f"no container is named {DEFAULT_CONTAINER!r}: the operator needs one (it sets its port and "
            "the distributed environment on it)",
            f"name the training container {DEFAULT_CONTAINER!r} (and set trialTemplate.primaryContainerName to it)",
        )
