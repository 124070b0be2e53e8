"""The chart lints strictly, renders for every value set, and every manifest is valid Kubernetes 1.30."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
import yaml
from kftune_chart import (
    CHART_DIR,
    KUBE_VERSION,
    NAMESPACE,
    VALUE_SETS,
    container,
    find,
    helm,
    katib_entries,
    load_chart,
    one,
    render,
    render_docs,
)

kubernetes_validate = pytest.importorskip("kubernetes_validate")


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env") or []}


@pytest.mark.parametrize("set_name", list(VALUE_SETS))
def test_lint_strict_is_clean(set_name):
    report = helm.lint(
        str(CHART_DIR),
        VALUE_SETS[set_name],
        strict=True,
        kube_version=f"v{KUBE_VERSION}",
        namespace=NAMESPACE,
    )
    findings = [m for m in report["messages"] if m["severity"] >= 1] + report["errors"]
    assert not findings, findings


@pytest.mark.parametrize("set_name", list(VALUE_SETS))
def test_every_manifest_is_valid_kubernetes(set_name, rendered_sets):
    docs = rendered_sets[set_name]
    assert len(docs) >= 10
    for doc in docs:
        where = f"{set_name}: {doc['kind']}/{doc['metadata']['name']}"
        try:
            assert kubernetes_validate.validate(doc, KUBE_VERSION, strict=True) == "1.30", where
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")


def test_default_render_has_the_pieces():
    docs = render_docs()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for expected in [
        ("Deployment", "kftune-mlflow"),
        ("Service", "kftune-mlflow"),
        ("StatefulSet", "kftune-postgresql"),
        ("StatefulSet", "kftune-minio"),
        ("PersistentVolumeClaim", "kftune-cache"),
        ("ServiceAccount", "kftune-pipeline"),
        ("Role", "kftune-pipeline"),
        ("RoleBinding", "kftune-pipeline"),
        ("ConfigMap", "kftune-settings"),
        ("Job", "kftune-katib-register-register"),
        ("Job", "kftune-katib-register-unregister"),
        ("Pod", "kftune-test-mlflow"),
    ]:
        assert expected in kinds, expected
    assert not find(docs, "Secret"), "the chart must never create Secrets: it only references existing ones"
    assert all(d["metadata"].get("namespace") for d in docs), "every object names its namespace"
    # Katib runs the suggestion image itself; the standing Deployment is opt-in.
    assert not find(docs, "Deployment", "kftune-suggestion")


def test_default_image_tag_is_app_version_and_ci_can_override_it():
    chart = load_chart()
    app_version = chart.metadata["appVersion"]
    assert app_version == "0.1.0"
    settings = one(render_docs(), "ConfigMap", "kftune-settings")["data"]
    assert settings["KFTUNE_TRAINER_IMAGE"] == "ghcr.io/kftune/trainer:0.1.0"
    assert settings["KFTUNE_SUGGESTION_IMAGE"] == "ghcr.io/kftune/suggestion:0.1.0"
    assert settings["KFTUNE_PIPELINE_IMAGE"] == "ghcr.io/kftune/pipeline:0.1.0"
    assert settings["KFTUNE_HOME"] == "/cache"
    assert settings["KFTUNE_CACHE_PVC"] == "kftune-cache"
    assert settings["MLFLOW_TRACKING_URI"] == "http://kftune-mlflow.kftune.svc.cluster.local:5000"

    docs = render_docs({"image": {"tag": "3f9c2ab"}})
    kftune_images = [
        c["image"]
        for d in docs
        if d["kind"] in ("Deployment", "Job", "Pod", "StatefulSet")
        for key in ("initContainers", "containers")
        for c in (d["spec"].get("template", {"spec": d["spec"]})["spec"].get(key) or [])
        if c["image"].startswith("ghcr.io/kftune/")
    ]
    kftune_images += [e["image"] for e in katib_entries(docs)]
    assert kftune_images and all(i.endswith(":3f9c2ab") for i in kftune_images), kftune_images


def test_mlflow_command_line_defaults():
    docs = render_docs()
    c = container(one(docs, "Deployment", "kftune-mlflow"), "mlflow")
    argv = c["command"] + c["args"]
    assert argv[:2] == ["mlflow", "server"]
    assert "--serve-artifacts" in argv
    assert "--backend-store-uri=postgresql+psycopg2://mlflow@kftune-postgresql:5432/mlflow" in argv
    assert "--artifacts-destination=s3://mlflow/artifacts" in argv
    assert "--host=0.0.0.0" in argv and "--port=5000" in argv and "--workers=2" in argv
    (allowed,) = [a for a in argv if a.startswith("--allowed-hosts=")]
    hosts = allowed.split("=", 1)[1].split(",")
    # Without these, in-cluster clients using the Service DNS names get 403 from MLflow 3.
    for h in [
        "kftune-mlflow",
        "kftune-mlflow:5000",
        "kftune-mlflow.kftune:5000",
        "kftune-mlflow.kftune.svc:5000",
        "kftune-mlflow.kftune.svc.cluster.local:5000",
        "localhost:*",
    ]:
        assert h in hosts, h
    env = env_of(c)
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "kftune-postgres", "key": "password"}
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://kftune-minio:9000"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]["value"] == "false"
    assert "MLFLOW_BACKEND_STORE_URI" not in env


def test_external_database_uri_comes_from_the_secret():
    docs = render_docs(VALUE_SETS["external-db"])
    assert not find(docs, "StatefulSet", "kftune-postgresql")
    assert not find(docs, "NetworkPolicy", "kftune-postgresql")
    c = container(one(docs, "Deployment", "kftune-mlflow"), "mlflow")
    assert not any(a.startswith("--backend-store-uri") for a in c["args"])
    env = env_of(c)
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {"name": "mlflow-db", "key": "uri"}
    assert "PGPASSWORD" not in env


def test_external_s3_endpoint_bucket_and_init_container():
    docs = render_docs(VALUE_SETS["external-s3"])
    assert not find(docs, "StatefulSet", "kftune-minio")
    assert not find(docs, "NetworkPolicy", "kftune-minio")
    dep = one(docs, "Deployment", "kftune-mlflow")
    c = container(dep, "mlflow")
    assert "--artifacts-destination=s3://team-mlflow/artifacts" in c["args"]
    env = env_of(c)
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "https://s3.storage.example.org"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "team-s3"
    init = container(dep, "ensure-bucket")
    assert init["command"][:2] == ["python", "/scripts/ensure_bucket.py"]
    assert "team-mlflow" in init["command"]


def test_no_minio_with_pod_identity_has_no_s3_credentials_or_endpoint():
    docs = render_docs(VALUE_SETS["no-minio"])
    dep = one(docs, "Deployment", "kftune-mlflow")
    env = env_of(container(dep, "mlflow"))
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"} & env.keys()
    assert not dep["spec"]["template"]["spec"].get("initContainers")
    sa = one(docs, "ServiceAccount", "kftune-mlflow")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")


def test_suggestion_off_renders_no_katib_objects():
    docs = render_docs(VALUE_SETS["suggestion-off"])
    assert not find(docs, "Job")
    assert not [d for d in docs if d["metadata"].get("namespace") == "kubeflow"]
    assert katib_entries(docs) == []
    assert one(docs, "ConfigMap", "kftune-settings")["data"]["KFTUNE_SUGGESTION_ALGORITHMS"] == ""


def test_hook_on_registers_and_restores_through_helm_hooks():
    docs = render_docs()
    reg = one(docs, "Job", "kftune-katib-register-register")
    unreg = one(docs, "Job", "kftune-katib-register-unregister")
    assert reg["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert unreg["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    for job, action in ((reg, "register"), (unreg, "unregister")):
        cmd = container(job, action)["command"]
        assert cmd[:3] == ["python", "/scripts/katib_config_patch.py", action]
        assert (
            "--namespace=kubeflow" in cmd and "--name=katib-config" in cmd and "--owner=kftune/kftune" in cmd
        )
        assert job["spec"]["template"]["spec"]["serviceAccountName"] == "kftune-katib-register"
    entries = katib_entries(docs)
    assert [e["algorithmName"] for e in entries] == ["asha", "bohb"]
    assert {e["image"] for e in entries} == {"ghcr.io/kftune/suggestion:0.1.0"}
    # The hook's RBAC lives in Katib's namespace and names the one ConfigMap.
    role = one(docs, "Role", "kftune-katib-register")
    assert role["metadata"]["namespace"] == "kubeflow"
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["katib-config"],
            "verbs": ["get", "update"],
        }
    ]


def test_hook_off_prints_the_entries_to_add_by_hand():
    out = render(VALUE_SETS["hook-off"])
    docs = render_docs(VALUE_SETS["hook-off"])
    assert not find(docs, "Job") and not find(docs, "Role", "kftune-katib-register")
    notes = out["kftune/templates/NOTES.txt"]
    assert "suggestion.registration=manual" in notes
    block = notes.split("(key katib-config.yaml):", 1)[1].split("\n5. ", 1)[0]
    entries = yaml.safe_load(block)
    assert [e["algorithmName"] for e in entries] == ["asha", "bohb"]
    assert entries[0]["image"] == "ghcr.io/kftune/suggestion:0.1.0"


def test_standalone_suggestion_uses_the_native_grpc_probe_katib_uses():
    docs = render_docs(VALUE_SETS["standalone-suggestion"])
    c = container(one(docs, "Deployment", "kftune-suggestion"), "suggestion")
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"] == {"port": 6789, "service": "manager.v1beta1.Suggestion"}
    assert c["args"] == ["katib", "serve", "--port", "6789"]
    svc = one(docs, "Service", "kftune-suggestion")
    assert svc["spec"]["ports"][0]["port"] == 6789


def test_notes_give_next_steps():
    notes = render()["kftune/templates/NOTES.txt"]
    for needle in (
        "helm test kftune -n kftune",
        "port-forward svc/kftune-mlflow 5000:5000",
        "katib.kubeflow.org/metrics-collector-injection=enabled",
        "kubectl -n kubeflow get cm katib-config",
        "kubectl apply -n kftune -f katib/ner-asha.yaml",
    ):
        assert needle in notes, needle


def test_the_stall_watchdog_setting_reaches_every_pipeline_step():
    from kftune.pipelines.common import SETTINGS_ENV

    assert one(render_docs(), "ConfigMap", "kftune-settings")["data"]["KFTUNE_STALL_TIMEOUT_S"] == "1800"
    off = one(render_docs({"stallTimeoutSeconds": 0}), "ConfigMap", "kftune-settings")["data"]
    assert off["KFTUNE_STALL_TIMEOUT_S"] == "0"
    assert "KFTUNE_STALL_TIMEOUT_S" in SETTINGS_ENV  # the steps map it from the ConfigMap


def test_gpu_sharing_values_render_and_pass_the_policy_checks():
    render_docs({"gpuSharing": {"mode": "time-slicing", "replicas": 4}})


# ---- values.schema.json and required values ---------------------------------------------------

BAD_VALUES = [
    ({"image": {"tag": "latest"}}, "/image/tag"),
    ({"postgresql": {"image": {"tag": "latest"}}}, "/postgresql/image/tag"),
    ({"minio": {"image": {"tag": "latest"}}}, "/minio/image/tag"),
    ({"bogus": 1}, "additional properties 'bogus'"),
    ({"mlflow": {"workerz": 2}}, "additional properties 'workerz'"),
    ({"mlflow": {"workers": 0}}, "/mlflow/workers"),
    ({"mlflow": {"port": "5000"}}, "/mlflow/port"),
    ({"mlflow": {"resources": {"limits": None}}}, "/mlflow/resources"),  # null deletes a default
    ({"suggestion": {"algorithms": ["random"]}}, "/suggestion/algorithms/0"),
    ({"suggestion": {"registration": "kustomize"}}, "/suggestion/registration"),
    ({"containerSecurityContext": {"readOnlyRootFilesystem": False}}, "/containerSecurityContext"),
    ({"podSecurityContext": {"runAsNonRoot": False}}, "/podSecurityContext/runAsNonRoot"),
    ({"artifacts": {"externalEndpoint": "s3.example.org"}}, "/artifacts/externalEndpoint"),
    ({"artifacts": {"bucket": "Bad_Bucket"}}, "/artifacts/bucket"),
    ({"cache": {"accessModes": []}}, "/cache/accessModes"),
    ({"networkPolicy": {"allowNamespaces": ["Not A Namespace"]}}, "/networkPolicy/allowNamespaces/0"),
    ({"postgresql": {"existingSecret": "Bad Name"}}, "/postgresql/existingSecret"),
    ({"stallTimeoutSeconds": -1}, "/stallTimeoutSeconds"),
    ({"stallTimeoutSeconds": "30m"}, "/stallTimeoutSeconds"),
]


@pytest.mark.parametrize("values,where", BAD_VALUES, ids=[w for _, w in BAD_VALUES])
def test_schema_rejects_bad_values(values, where):
    chart = load_chart()
    with pytest.raises(helm.HelmValuesError) as info:
        chart.validate_schema(values)
    assert where in str(info.value)
    with pytest.raises(helm.HelmValuesError):
        render(values)


def test_default_values_pass_the_schema():
    chart = load_chart()
    chart.validate_schema({})
    for values in VALUE_SETS.values():
        chart.validate_schema(values)


MISSING = [
    ({"postgresql": {"enabled": False}}, "externalDatabase.existingSecret is required"),
    ({"postgresql": {"existingSecret": ""}}, "postgresql.existingSecret is required"),
    ({"artifacts": {"existingSecret": ""}}, "artifacts.existingSecret is required with the bundled MinIO"),
    ({"suggestion": {"algorithms": []}}, "suggestion.algorithms is empty"),
]


@pytest.mark.parametrize("values,message", MISSING, ids=[m.split(" ")[0] for _, m in MISSING])
def test_missing_required_value_is_a_clear_render_error(values, message):
    with pytest.raises(helm.HelmRenderError) as info:
        render(values)
    text = str(info.value)
    assert message in text
    assert "\n" not in text.strip(), "one line"


@pytest.mark.parametrize(
    "values",
    [
        {"image": {"tag": "latest"}},
        {"postgresql": {"image": {"repository": "postgres", "tag": "latest", "digest": ""}}},
        {"minio": {"image": {"repository": "minio/minio", "tag": "latest", "digest": ""}}},
    ],
)
def test_latest_is_refused_even_without_the_schema(values, tmp_path):
    # The template guard behind the schema (`helm install --skip-schema-validation` still fails).
    copy = tmp_path / "kftune"
    shutil.copytree(CHART_DIR, copy)
    (copy / "values.schema.json").unlink()
    with pytest.raises(helm.HelmRenderError, match="must not be `latest`"):
        helm.Chart.load(str(copy)).render(values, name="kftune", namespace=NAMESPACE)
