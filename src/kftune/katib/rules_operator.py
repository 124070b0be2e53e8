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
from kftune.katib.rules_webhook import (
    BOOL,
    INT32,
    INT64,
    OBJECT,
    QUANTITY,
    STRING,
    MapOf,
    describe,
    field_hint,
    walk_types,
)

TRIAL_SPEC: YPath = ("spec", "trialTemplate", "trialSpec")
REPLICA_TYPES = ("Master", "Worker")
DEFAULT_CONTAINER = "pytorch"  # PyTorchJobDefaultContainerName
MANAGED_BY = ("kubeflow.org/training-operator", "kueue.x-k8s.io/multikueue")
RESTART_POLICIES = ("Always", "OnFailure", "Never", "ExitCode")

# The CRD's openAPIV3Schema for PyTorchJob.spec, without the pod templates, in the type vocabulary
# of kftune.katib.rules_webhook.walk_types (a dict is an object with these fields, a one-element
# list an array, MapOf a map with any keys).
SCHEDULING_POLICY = {
    "minAvailable": INT32,
    "minResources": MapOf(QUANTITY),
    "priorityClass": STRING,
    "queue": STRING,
    "scheduleTimeoutSeconds": INT32,
}
RUN_POLICY = {
    "activeDeadlineSeconds": INT64,
    "backoffLimit": INT32,
    "cleanPodPolicy": STRING,
    "managedBy": STRING,
    "schedulingPolicy": SCHEDULING_POLICY,
    "suspend": BOOL,
    "ttlSecondsAfterFinished": INT32,
}
ELASTIC_POLICY = {
    "maxReplicas": INT32,
    "maxRestarts": INT32,
    "metrics": [OBJECT],
    "minReplicas": INT32,
    "nProcPerNode": INT32,
    "rdzvBackend": STRING,
    "rdzvConf": [{"key": STRING, "value": STRING}],
    "rdzvHost": STRING,
    "rdzvId": STRING,
    "rdzvPort": INT32,
    "standalone": BOOL,
}
REPLICA_SPEC = {"replicas": INT32, "restartPolicy": STRING, "template": OBJECT}
PYTORCHJOB_SPEC = {
    "elasticPolicy": ELASTIC_POLICY,
    "nprocPerNode": STRING,
    "pytorchReplicaSpecs": MapOf(REPLICA_SPEC),
    "runPolicy": RUN_POLICY,
}


def _check_schema(c: Check, spec: dict[str, Any], here: YPath) -> None:
    for what, ypath, value, expected in walk_types(spec, PYTORCHJOB_SPEC, here):
        if what == "unknown":
            c.error(
                ypath,
                f"unknown field {value!r}: the PyTorchJob CRD schema does not have it, so the API server "
                "drops it and the trial runs without it",
                f"remove or rename it ({field_hint(value, expected)})",
            )
        elif isinstance(value, str) and PARAM_PLACEHOLDER.search(value):
            c.error(
                ypath,
                f"must be {expected}, but holds a placeholder: Katib replaces ${{trialParameters...}} in the "
                "template's text, so the value stays a quoted string",
                "write a literal value of that type (the API server refuses the PyTorchJob)",
            )
        else:
            c.error(
                ypath,
                f"must be {expected}, got {describe(value)}",
                "write a value of that type (the API server refuses the PyTorchJob)",
            )


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
    _check_schema(c, spec, here)

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
