"""Security and operations policy over every rendered object of every value set.

Also over the containers the chart does not run itself but hands to Katib (the katib-config
suggestion entries): Katib starts them as they are written.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from kftune_chart import VALUE_SETS, containers, find, katib_entries, pod_spec

SETS = list(VALUE_SETS)
# Role rules the chart may grant, by (apiGroup, resource): the verbs allowed at most.
ALLOWED_VERBS = {
    ("kubeflow.org", "experiments"): {"create", "get", "list", "watch", "delete"},
    ("kubeflow.org", "trials"): {"get", "list", "watch"},
    ("kubeflow.org", "suggestions"): {"get"},  # end-of-search detection by `katib submit --wait`
    ("", "events"): {"list"},  # the Suggestion's events, same purpose
    ("", "configmaps"): {"get", "update"},  # the katib-config hook, by resourceNames only
}
SECRETISH = re.compile(
    r"(PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL|_URI$|_URL$|DSN)", re.I
)
CREDENTIALS_IN_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.I)


def workloads(docs):
    for d in docs:
        spec = pod_spec(d)
        if spec is not None:
            yield d, spec


def name_of(doc: dict[str, Any], c: dict[str, Any] | None = None) -> str:
    base = f"{doc['kind']}/{doc['metadata']['name']}"
    return f"{base}[{c['name']}]" if c else base


def effective(pod_sc: dict[str, Any], c_sc: dict[str, Any], key: str):
    return c_sc[key] if key in c_sc else pod_sc.get(key)


def check_container_security(where: str, pod_sc: dict[str, Any], c: dict[str, Any]) -> None:
    sc = c.get("securityContext") or {}
    assert effective(pod_sc, sc, "runAsNonRoot") is True, f"{where}: runAsNonRoot"
    user = effective(pod_sc, sc, "runAsUser")
    assert isinstance(user, int) and user > 0, f"{where}: runAsUser must be a non-zero uid, got {user}"
    assert sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem"
    assert sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
    assert sc.get("privileged") in (None, False), f"{where}: privileged"
    assert "ALL" in ((sc.get("capabilities") or {}).get("drop") or []), f"{where}: capabilities.drop ALL"
    assert not (sc.get("capabilities") or {}).get("add"), f"{where}: capabilities.add"
    seccomp = effective(pod_sc, sc, "seccompProfile") or {}
    assert seccomp.get("type") == "RuntimeDefault", f"{where}: seccompProfile RuntimeDefault"


def check_resources(where: str, c: dict[str, Any]) -> None:
    res = c.get("resources") or {}
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            assert (res.get(kind) or {}).get(r) not in (None, ""), f"{where}: resources.{kind}.{r}"


def check_image(where: str, image: str) -> None:
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    assert ":" in last, f"{where}: image {image} has no tag"
    tag = last.split(":", 1)[1]
    assert tag and tag != "latest", f"{where}: image {image} must not use latest"


@pytest.mark.parametrize("set_name", SETS)
def test_pods_run_restricted(set_name, rendered_sets):
    docs = rendered_sets[set_name]
    for doc, spec in workloads(docs):
        pod_sc = spec.get("securityContext") or {}
        assert pod_sc.get("runAsNonRoot") is True, name_of(doc)
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(flag), f"{name_of(doc)}: {flag}"
        assert not any("hostPath" in v for v in spec.get("volumes") or []), f"{name_of(doc)}: hostPath"
        for _, c in containers(spec):
            check_container_security(name_of(doc, c), pod_sc, c)


@pytest.mark.parametrize("set_name", SETS)
def test_katib_started_suggestion_containers_run_restricted(set_name, rendered_sets):
    # Katib copies the entry into the suggestion Deployment's container and sets no pod
    # securityContext: the entry alone must carry user, seccomp and the rest.
    for entry in katib_entries(rendered_sets[set_name]):
        where = f"katib-config entry {entry['algorithmName']}"
        check_container_security(where, {}, entry)
        check_resources(where, entry)
        check_image(where, entry["image"])
        assert not any(p.get("containerPort") == 6789 for p in entry.get("ports") or []), (
            "Katib adds 6789 itself"
        )


@pytest.mark.parametrize("set_name", SETS)
def test_read_only_root_filesystem_has_writable_tmp_where_needed(set_name, rendered_sets):
    for doc, spec in workloads(rendered_sets[set_name]):
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for _, c in containers(spec):
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
            if c["name"] in ("mlflow", "postgresql", "minio", "ensure-bucket"):
                assert "/tmp" in mounts, f"{name_of(doc, c)}: /tmp must be a writable emptyDir"
                assert "emptyDir" in volumes[mounts["/tmp"]], name_of(doc, c)


@pytest.mark.parametrize("set_name", SETS)
def test_every_container_has_requests_and_limits(set_name, rendered_sets):
    for doc, spec in workloads(rendered_sets[set_name]):
        for _, c in containers(spec):
            check_resources(name_of(doc, c), c)


@pytest.mark.parametrize("set_name", SETS)
def test_long_running_containers_have_probes(set_name, rendered_sets):
    for doc, spec in workloads(rendered_sets[set_name]):
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for key, c in containers(spec):
            if key == "containers":
                assert c.get("readinessProbe"), f"{name_of(doc, c)}: readinessProbe"
                assert c.get("livenessProbe"), f"{name_of(doc, c)}: livenessProbe"


@pytest.mark.parametrize("set_name", SETS)
def test_no_latest_and_every_image_tagged(set_name, rendered_sets):
    docs = rendered_sets[set_name]
    for doc, spec in workloads(docs):
        for _, c in containers(spec):
            check_image(name_of(doc, c), c["image"])
    for key, value in (find(docs, "ConfigMap", "kftune-settings")[0]["data"]).items():
        if key.endswith("_IMAGE"):
            check_image(key, value)


@pytest.mark.parametrize("set_name", SETS)
def test_no_plaintext_secrets(set_name, rendered_sets):
    docs = rendered_sets[set_name]
    assert not find(docs, "Secret"), "Secrets are referenced, never rendered"
    for doc, spec in workloads(docs):
        for _, c in containers(spec):
            where = name_of(doc, c)
            for e in c.get("env") or []:
                if "valueFrom" in e:
                    ref = e["valueFrom"]
                    assert set(ref) <= {"secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef"}, (
                        where
                    )
                    continue
                value = str(e.get("value", ""))
                assert not CREDENTIALS_IN_URL.search(value), (
                    f"{where}: env {e['name']} carries credentials in a URL"
                )
                if SECRETISH.search(e["name"]) and e["name"] not in ("MLFLOW_S3_ENDPOINT_URL",):
                    pytest.fail(f"{where}: env {e['name']} looks secret but has a literal value")
            for arg in (c.get("command") or []) + (c.get("args") or []):
                assert not CREDENTIALS_IN_URL.search(str(arg)), f"{where}: credentials in argv {arg!r}"
                assert not re.search(r"password\s*[=:]\s*\S", str(arg), re.I), f"{where}: {arg!r}"
    for cm in find(docs, "ConfigMap"):
        for key, text in (cm.get("data") or {}).items():
            assert not CREDENTIALS_IN_URL.search(text), f"ConfigMap/{cm['metadata']['name']}[{key}]"


def test_secret_references_point_at_the_configured_secrets(rendered_sets):
    refs = set()
    for _doc, spec in workloads(rendered_sets["default"]):
        for _, c in containers(spec):
            for e in c.get("env") or []:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
    assert refs == {
        ("kftune-postgres", "password"),
        ("kftune-s3", "AWS_ACCESS_KEY_ID"),
        ("kftune-s3", "AWS_SECRET_ACCESS_KEY"),
    }


@pytest.mark.parametrize("set_name", SETS)
def test_rbac_is_namespaced_and_minimal(set_name, rendered_sets):
    docs = rendered_sets[set_name]
    assert not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding"), "nothing cluster-wide"
    roles = {r["metadata"]["name"]: r for r in find(docs, "Role")}
    for role in roles.values():
        assert role["metadata"]["namespace"], role["metadata"]["name"]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    assert "*" not in (group, resource) and "*" not in rule["verbs"]
                    allowed = ALLOWED_VERBS.get((group, resource))
                    assert allowed is not None, (
                        f"Role {role['metadata']['name']}: {group}/{resource} not allowed"
                    )
                    assert set(rule["verbs"]) <= allowed, f"{group}/{resource}: {rule['verbs']}"
                    if resource == "configmaps":
                        assert rule.get("resourceNames") == ["katib-config"]
                        assert role["metadata"]["namespace"] == "kubeflow"
    for binding in find(docs, "RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role" and binding["roleRef"]["name"] in roles
        assert binding["metadata"]["namespace"] == roles[binding["roleRef"]["name"]]["metadata"]["namespace"]
    if "kftune-pipeline" in roles:
        rules = {
            (r["apiGroups"][0], r["resources"][0]): set(r["verbs"]) for r in roles["kftune-pipeline"]["rules"]
        }
        assert rules[("kubeflow.org", "experiments")] == {"create", "get", "list", "watch", "delete"}
        assert rules[("kubeflow.org", "trials")] == {"get", "list", "watch"}
        assert rules[("kubeflow.org", "suggestions")] == {"get"}
        assert rules[("", "events")] == {"list"}


def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    match = policy["spec"]["podSelector"].get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in match.items())


@pytest.mark.parametrize("set_name", SETS)
def test_network_policies_guard_mlflow_postgres_minio(set_name, rendered_sets):
    docs = rendered_sets[set_name]
    policies = find(docs, "NetworkPolicy")
    for doc, _spec in workloads(docs):
        component = doc["metadata"]["labels"].get("app.kubernetes.io/component")
        if doc["kind"] not in ("Deployment", "StatefulSet") or component not in (
            "mlflow",
            "postgresql",
            "minio",
        ):
            continue
        labels = doc["spec"]["template"]["metadata"]["labels"]
        guarding = [p for p in policies if selects(p, labels)]
        assert len(guarding) == 1, f"{name_of(doc)}: {len(guarding)} NetworkPolicies select it"
        policy = guarding[0]["spec"]
        assert policy["policyTypes"] == ["Ingress"]
        for rule in policy["ingress"]:
            for peer in rule["from"]:
                assert "ipBlock" not in peer, "no IP ranges: namespace and pod selectors only"
                if "namespaceSelector" in peer:
                    names = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    assert names in VALUE_SETS[set_name].get("networkPolicy", {}).get("allowNamespaces", [])
        if component in ("postgresql", "minio"):
            (rule,) = policy["ingress"]
            (peer,) = rule["from"]
            assert set(peer) == {"podSelector"}, "same namespace only: no namespaceSelector"
            assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "mlflow"


def test_cache_pvc_follows_the_contract(rendered_sets):
    (pvc,) = find(rendered_sets["default"], "PersistentVolumeClaim", "kftune-cache")
    assert pvc["metadata"]["namespace"] == "kftune"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
