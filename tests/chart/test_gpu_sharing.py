"""The chart's gpuSharing block: the NVIDIA device plugin's sharing config, the settings trial pods
read, the example experiment that uses them (docs/gpu.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kftune_chart import CHART_DIR, KUBE_VERSION, NAMESPACE, find, helm, load_chart, one, render, render_docs

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
MPS = {"gpuSharing": {"enabled": True, "replicas": 4}}
SLICED = {"gpuSharing": {"enabled": True, "mode": "time-slicing", "replicas": 8, "renameByDefault": True}}


def settings(docs) -> dict[str, str]:
    return one(docs, "ConfigMap", "kftune-settings")["data"]


def plugin_config(docs) -> tuple[dict, dict]:
    cm = one(docs, "ConfigMap", "kftune-gpu-sharing")
    (key,) = cm["data"]
    assert key == "kftune-shared"
    return cm, yaml.safe_load(cm["data"][key])


def test_off_by_default():
    docs = render_docs()
    assert not find(docs, "ConfigMap", "kftune-gpu-sharing")
    data = settings(docs)
    assert data["KFTUNE_GPU_RESOURCE"] == "nvidia.com/gpu"
    assert "KFTUNE_GPU_MEMORY_FRACTION" not in data and "KFTUNE_TRIALS_PER_GPU" not in data
    assert "GPU sharing" not in render()["kftune/templates/NOTES.txt"]


def test_mps_config_for_the_device_plugin():
    docs = render_docs(MPS)
    cm, config = plugin_config(docs)
    assert cm["metadata"]["namespace"] == "gpu-operator", (
        "the device plugin reads ConfigMaps of its own namespace"
    )
    assert config == {
        "version": "v1",
        "flags": {"migStrategy": "none"},
        "sharing": {
            "mps": {"renameByDefault": False, "resources": [{"name": "nvidia.com/gpu", "replicas": 4}]}
        },
    }
    data = settings(docs)
    assert data["KFTUNE_GPU_RESOURCE"] == "nvidia.com/gpu"
    assert data["KFTUNE_TRIALS_PER_GPU"] == "4" and data["KFTUNE_GPU_SHARING"] == "mps"
    assert float(data["KFTUNE_GPU_MEMORY_FRACTION"]) == 0.225, "auto = 0.9 / replicas"
    notes = render(MPS)["kftune/templates/NOTES.txt"]
    assert '"devicePlugin":{"config":{"name":"kftune-gpu-sharing","default":"kftune-shared"}}' in notes
    assert "nvidia.com/device-plugin.config=kftune-shared" in notes
    assert "katib/ner-asha-shared-gpu.yaml" in notes


def test_time_slicing_renamed_resource():
    docs = render_docs(SLICED)
    _, config = plugin_config(docs)
    ts = config["sharing"]["timeSlicing"]
    assert ts["renameByDefault"] is True and ts["failRequestsGreaterThanOne"] is True
    assert ts["resources"] == [{"name": "nvidia.com/gpu", "replicas": 8}]
    data = settings(docs)
    assert data["KFTUNE_GPU_RESOURCE"] == "nvidia.com/gpu.shared"
    assert data["KFTUNE_GPU_MEMORY_FRACTION"] == "0.1125"


@pytest.mark.parametrize(
    "fraction,expected", [(0.3, "0.3000"), ("", None), ("auto", "0.3000")], ids=["number", "none", "auto"]
)
def test_memory_fraction(fraction, expected):
    values = {"gpuSharing": {"enabled": True, "replicas": 3, "memoryFraction": fraction}}
    assert settings(render_docs(values)).get("KFTUNE_GPU_MEMORY_FRACTION") == expected


def test_without_creating_the_plugin_config():
    values = {"gpuSharing": {**MPS["gpuSharing"], "devicePluginConfig": {"create": False, "namespace": "gpu-operator",
                                                                         "name": "x", "key": "y"}}}  # fmt: skip
    docs = render_docs(values)
    assert not [d for d in find(docs, "ConfigMap") if d["metadata"]["name"] == "x"]
    assert settings(docs)["KFTUNE_TRIALS_PER_GPU"] == "4"
    assert "configure the device plugin yourself" in render(values)["kftune/templates/NOTES.txt"]


def test_mps_cannot_be_renamed():
    with pytest.raises(helm.HelmRenderError, match="supports MPS only for nvidia.com/gpu"):
        render({"gpuSharing": {"enabled": True, "mode": "mps", "renameByDefault": True}})


@pytest.mark.parametrize(
    "values,where",
    [
        ({"gpuSharing": {"replicas": 1}}, "/gpuSharing/replicas"),
        ({"gpuSharing": {"mode": "mig"}}, "/gpuSharing/mode"),
        ({"gpuSharing": {"memoryFraction": 1.5}}, "/gpuSharing/memoryFraction"),
        ({"gpuSharing": {"memoryFraction": "half"}}, "/gpuSharing/memoryFraction"),
        ({"gpuSharing": {"slots": 4}}, "additional properties 'slots'"),
        (
            {"gpuSharing": {"devicePluginConfig": {"namespace": "GPU Operator"}}},
            "/gpuSharing/devicePluginConfig/namespace",
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_schema_rejects(values, where):
    with pytest.raises(helm.HelmValuesError) as info:
        load_chart().validate_schema(values)
    assert where in str(info.value)


@pytest.mark.parametrize("values", [MPS, SLICED], ids=["mps", "time-slicing"])
def test_lints_and_validates(values):
    report = helm.lint(
        str(CHART_DIR), values, strict=True, kube_version=f"v{KUBE_VERSION}", namespace=NAMESPACE
    )
    assert not [m for m in report["messages"] if m["severity"] >= 1] + report["errors"]
    for doc in render_docs(values):
        assert kubernetes_validate.validate(doc, KUBE_VERSION, strict=True) == "1.30", doc["metadata"]["name"]


def test_example_experiment_uses_what_the_chart_sets_up():
    (exp,) = [d for d in yaml.safe_load_all((ROOT / "katib" / "ner-asha-shared-gpu.yaml").read_text()) if d]
    base = yaml.safe_load((ROOT / "katib" / "ner-asha.yaml").read_text())
    replicas = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["gpuSharing"]["replicas"]
    assert exp["spec"]["parallelTrialCount"] == base["spec"]["parallelTrialCount"] * replicas
    pod = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    (ctr,) = pod["containers"]
    data = settings(render_docs(MPS))
    assert ctr["resources"]["limits"] == {data["KFTUNE_GPU_RESOURCE"]: 1}
    assert {"configMapRef": {"name": "kftune-settings"}} in ctr["envFrom"]
    assert int(ctr["resources"]["requests"]["cpu"]) >= 1, "each sharing trial needs a core for its loop"
    # the search itself is ner-asha's
    assert exp["spec"]["parameters"] == base["spec"]["parameters"]
    assert exp["spec"]["algorithm"] == base["spec"]["algorithm"]
