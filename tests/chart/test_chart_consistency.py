"""The names katib/*.yaml and the pipelines use are the ones the chart installs.

Images (repository and default tag), namespace, the cache PVC and its mount path, the tracking URI,
and custom suggestion algorithms (registered by the chart in katib-config). Skips, saying why,
while there is nothing to compare.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kftune_chart import NAMESPACE, ROOT, find, one, render_docs

# Katib's own algorithms (katib-config of the standalone install); anything else must be ours.
KATIB_BUILTIN_ALGORITHMS = {
    "random", "tpe", "grid", "hyperband", "bayesianoptimization", "cmaes", "sobol",
    "multivariate-tpe", "enas", "darts", "pbt",
}  # fmt: skip
KFTUNE_IMAGE = re.compile(r"ghcr\.io/kftune/([a-z0-9-]+)(?::([A-Za-z0-9_.-]+))?")


@pytest.fixture(scope="module")
def chart() -> dict[str, Any]:
    docs = render_docs()
    settings = one(docs, "ConfigMap", "kftune-settings")["data"]
    images = {k: v for k, v in settings.items() if k.endswith("_IMAGE")}
    sas = {d["metadata"]["name"] for d in find(docs, "ServiceAccount")}
    return {
        "namespace": settings["KFTUNE_NAMESPACE"],
        "pvc": settings["KFTUNE_CACHE_PVC"],
        "home": settings["KFTUNE_HOME"],
        "hf_home": settings["HF_HOME"],
        "tracking_uri": settings["MLFLOW_TRACKING_URI"],
        "algorithms": set(filter(None, settings["KFTUNE_SUGGESTION_ALGORITHMS"].split(","))),
        "images": images,
        "repos": {v.rsplit(":", 1)[0]: v.rsplit(":", 1)[1] for v in images.values()},
        "service_accounts": sas,
    }


def katib_documents() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted((ROOT / "katib").glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Experiment":
                out.append((path, doc))
    return out


def walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


EXPERIMENTS = katib_documents()
needs_katib = pytest.mark.skipif(
    not EXPERIMENTS,
    reason="katib/ has no Experiment YAMLs yet (written in another branch): nothing to compare with the chart",
)


def test_chart_defaults_follow_docs_contracts(chart):
    contracts = (ROOT / "docs" / "contracts.md").read_text()
    for image in chart["images"].values():
        if image.split("/")[-1].split(":")[0] in ("trainer", "suggestion", "pipeline"):
            assert f"`{image}`" in contracts, image
    assert chart["namespace"] == NAMESPACE == "kftune"
    assert chart["pvc"] == "kftune-cache" and chart["home"] == "/cache"
    assert "PVC is `kftune-cache`, mounted at `/cache`" in contracts.replace("\n", " ")


@needs_katib
@pytest.mark.parametrize(
    "path,doc", EXPERIMENTS, ids=[f"{p.name}:{d['metadata'].get('name')}" for p, d in EXPERIMENTS]
)
def test_katib_experiment_uses_the_chart_names(path, doc, chart):
    where = f"{path.relative_to(ROOT)}:{doc['metadata'].get('name')}"
    ns = doc["metadata"].get("namespace")
    assert ns in (None, chart["namespace"]), (
        f"{where}: namespace {ns}, chart installs into {chart['namespace']}"
    )

    algorithm = doc["spec"]["algorithm"]["algorithmName"]
    assert algorithm in KATIB_BUILTIN_ALGORITHMS | chart["algorithms"], (
        f"{where}: algorithm {algorithm!r} is neither Katib's nor registered by the chart ({sorted(chart['algorithms'])})"
    )

    claim_volumes: set[str] = set()
    for p, node in walk(doc):
        image = node.get("image")
        if isinstance(image, str):
            m = KFTUNE_IMAGE.fullmatch(image)
            if image.startswith("ghcr.io/kftune/"):
                assert m, f"{where}{p}: {image}"
                repo = f"ghcr.io/kftune/{m.group(1)}"
                assert repo in chart["repos"], f"{where}{p}: {repo} is not an image the chart knows"
                assert m.group(2) == chart["repos"][repo], (
                    f"{where}{p}: tag of {image}, chart default {chart['repos'][repo]}"
                )
            assert not image.endswith(":latest") and ":" in image.rsplit("/", 1)[-1], f"{where}{p}: {image}"
            argv = [str(a) for a in (node.get("command") or []) + (node.get("args") or [])]
            if (
                "train" in argv[:3]
                and any(a.endswith("kftune") for a in argv[:2])
                or (image.startswith("ghcr.io/kftune/") and argv[:1] == ["train"])
            ):
                assert image == chart["images"]["KFTUNE_TRAINER_IMAGE"], (
                    f"{where}{p}: trials run the trainer image"
                )
        pvc = node.get("persistentVolumeClaim")
        if isinstance(pvc, dict):
            assert pvc.get("claimName") == chart["pvc"], f"{where}{p}: claimName {pvc.get('claimName')}"
            claim_volumes.add(node["name"])
        for e in node.get("env") or [] if isinstance(node.get("env"), list) else []:
            expected = {
                "KFTUNE_HOME": chart["home"],
                "HF_HOME": chart["hf_home"],
                "MLFLOW_TRACKING_URI": chart["tracking_uri"],
            }.get(e.get("name"))
            if expected is not None and "value" in e:
                assert e["value"] == expected, f"{where}{p}: {e['name']}={e['value']}, chart: {expected}"
        sa = node.get("serviceAccountName")
        if isinstance(sa, str) and sa.startswith("kftune"):
            assert sa in chart["service_accounts"], f"{where}{p}: serviceAccountName {sa}"
    for p, node in walk(doc):
        for mount in node.get("volumeMounts") or [] if isinstance(node.get("volumeMounts"), list) else []:
            if mount.get("name") in claim_volumes:
                assert mount["mountPath"] == "/cache", f"{where}{p}: {chart['pvc']} must be mounted at /cache"
        if isinstance(node.get("containers"), list):  # a pod spec: the trainer's uid must own /cache
            ctx = node.get("securityContext") or {}
            assert ctx.get("fsGroup") == 10001 and ctx.get("runAsUser") == 10001, (
                f"{where}{p}: trial pods need securityContext runAsUser/fsGroup 10001 (the images' user)"
            )


def source_images() -> list[tuple[str, str, str | None]]:
    hits = []
    for folder in ("components", "pipelines", "src/kftune", "katib"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".yaml", ".yml") or "compiled" in path.parts:
                continue
            for m in KFTUNE_IMAGE.finditer(path.read_text(errors="replace")):
                hits.append((str(path.relative_to(ROOT)), f"ghcr.io/kftune/{m.group(1)}", m.group(2)))
    return hits


def test_images_named_in_code_and_pipelines_are_the_charts(chart):
    hits = source_images()
    if not hits:
        pytest.skip("no ghcr.io/kftune/ image named in components/, pipelines/, src/ or katib/ yet")
    for where, repo, tag in hits:
        assert repo in chart["repos"], (
            f"{where}: {repo} is not one of the chart's images {sorted(chart['repos'])}"
        )
        if tag is not None:
            assert tag == chart["repos"][repo], (
                f"{where}: {repo}:{tag}, chart default tag {chart['repos'][repo]}"
            )
