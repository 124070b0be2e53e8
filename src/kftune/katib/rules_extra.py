"""What Katib's webhook does not check, and what would fail (or quietly go wrong) at run time.

Each rule says why in its summary; the table is in :mod:`kftune.katib.validator`. Several of them
come from reading what Katib does after admission: the trial generator (``generator.go``
``applyParameters``), the suggestion services' search-space code, the metrics collector
(``file-metricscollector.go``), the pod webhook (``inject_webhook.go``), and from kftune's trainer
contract (docs/contracts.md).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from kftune.errors import UserError
from kftune.katib.experiment import (
    KUBEFLOW_PRIMARY_POD_LABELS,
    META_INDEXED,
    META_REFERENCE,
    PARAM_PLACEHOLDER,
    find_container,
    pod_templates,
    primary_pod_template,
    substitute,
)
from kftune.katib.findings import Check, rule
from kftune.katib.kubeyaml import YPath
from kftune.katib.rules_webhook import EXPERIMENT_TYPES, field_hint, placeholders, walk_types
from kftune.katib.trainer_contract import (
    FLAGS,
    REQUIRED,
    SWITCHES,
    TRAINER_IMAGE,
    TrainerArg,
    parse_trainer_args,
    trainer_start,
)
from kftune.train.args import MEMORY_FRACTION_ENV, memory_fraction_ok, parse_memory_fraction
from kftune.train.metric_lines import GOALS, KATIB_DEFAULT_FILTER, METRICS_BY_TASK, format_epoch_line
from kftune.train.watchdog import STALL_ENV, parse_stall_timeout

TRIAL_SPEC: YPath = ("spec", "trialTemplate", "trialSpec")

# Which suggestion service (katib-config image) serves each built-in algorithm, and what its
# search-space code does with feasibleSpace.distribution.
HONOURS_ALL_DISTRIBUTIONS = ("random", "tpe")  # hyperopt: uniform, logUniform, normal, logNormal
OPTUNA = ("multivariate-tpe",)  # uniform and logUniform; normal/logNormal raise ValueError
IGNORES_DISTRIBUTION = ("grid", "cmaes", "sobol", "bayesianoptimization", "hyperband", "pbt")
RESOURCE_ALGORITHMS = ("asha", "bohb", "hyperband")

_INT = re.compile(r"^[+-]?\d+$")  # strconv.Atoi
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")  # strconv.ParseFloat, finite


def _params(c: Check) -> list[tuple[int, dict[str, Any]]]:
    params = c.spec.get("parameters")
    return [(i, p) for i, p in enumerate(params) if isinstance(p, dict)] if isinstance(params, list) else []


def _fs(p: dict[str, Any]) -> dict[str, Any]:
    return p["feasibleSpace"] if isinstance(p.get("feasibleSpace"), dict) else {}


def _num(text: Any, ptype: str) -> float | None:
    if not isinstance(text, str):
        return None
    pattern = _INT if ptype == "int" else _FLOAT
    return float(text) if pattern.match(text.strip()) and text == text.strip() else None


# --------------------------------------------------------------------------------------------
# Reading the document


@rule(
    "extra.unknown-field",
    "kftune (Katib decodes into Go types and drops unknown fields)",
    "no field Katib does not know (a typo such as parallelTrialCounts is silently ignored)",
)
def check_unknown_fields(c: Check) -> None:
    for what, ypath, key, known in walk_types(c.exp.raw, EXPERIMENT_TYPES):
        if what != "unknown":
            continue
        c.warning(
            ypath,
            f"unknown field {key!r}: Katib ignores it",
            f"remove or rename it ({field_hint(key, known)})",
        )


def _walk(obj: Any, ypath: YPath = ()) -> Any:
    yield ypath, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, (*ypath, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, (*ypath, i))


@rule(
    "extra.non-finite",
    "kftune (sigs.k8s.io/yaml -> encoding/json)",
    "no .nan/.inf values: kubectl cannot encode them as JSON",
)
def check_non_finite(c: Check) -> None:
    for ypath, value in _walk(c.exp.raw):
        if isinstance(value, float) and not math.isfinite(value):
            c.error(
                ypath,
                f"{value} cannot be sent by kubectl (json: unsupported value)",
                "use a finite number, or quote it if it is meant as text",
            )


@rule(
    "extra.name-dns",
    "kftune (API server: DNS-1123 names; Katib names the suggestion Service <name>-<algorithm>)",
    "metadata.name is a whole DNS-1035 label: Katib's own regexp only checks how the name starts",
)
def check_name_dns(c: Check) -> None:
    name = c.exp.name
    if name and len(name) <= 40 and not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name):
        c.error(
            ("metadata", "name"),
            f"name {name!r} passes Katib's check (which only looks at how the name "
            "starts) but is not a DNS label: the API server or Katib's suggestion Service rejects it",
            "use only lower-case letters, digits and '-', ending with a letter or digit",
        )


# --------------------------------------------------------------------------------------------
# Search space


@rule(
    "extra.duplicate-parameter",
    "kftune (goptuna rejects it at run time; others overwrite silently)",
    "parameter names are unique",
)
def check_duplicate_parameters(c: Check) -> None:
    seen: dict[str, int] = {}
    for i, p in _params(c):
        name = p.get("name")
        if not isinstance(name, str) or not name:
            c.error(("spec", "parameters", i), "parameter has no name", "give it a name, e.g. learning_rate")
            continue
        if name in seen:
            c.error(
                ("spec", "parameters", i, "name"),
                f"parameter {name!r} is defined twice (first at spec.parameters[{seen[name]}])",
                "remove one or rename it",
            )
        else:
            seen[name] = i


@rule(
    "extra.range",
    "kftune (suggestion services parse the bounds with int()/float() at run time)",
    "min/max/step parse as numbers of the parameter's type; min < max (min == max is a constant); step > 0",
)
def check_range(c: Check) -> None:
    algo = c.exp.algorithm
    resource = algo.settings.get("resource_name") if algo.name in RESOURCE_ALGORITHMS else None
    for i, p in _params(c):
        ptype = p.get("parameterType")
        if ptype not in ("int", "double"):
            continue
        fs, at = _fs(p), ("spec", "parameters", i, "feasibleSpace")
        values: dict[str, float | None] = {}
        for key in ("min", "max", "step"):
            text = fs.get(key)
            if text in (None, ""):
                values[key] = None
                continue
            values[key] = _num(text, ptype)
            if values[key] is None and isinstance(text, str):
                kind = "an integer" if ptype == "int" else "a finite number"
                c.error(
                    (*at, key),
                    f"{key} {text!r} is not {kind} (parameterType {ptype})",
                    f'write {kind}, e.g. {key}: "{"1" if ptype == "int" else "0.001"}"',
                )
        low, high, step = values["min"], values["max"], values["step"]
        if low is not None and high is not None:
            if low > high:
                c.error(
                    (*at, "min"),
                    f"min ({fs['min']}) is greater than max ({fs['max']}): the range is empty",
                    f'swap them: min: "{fs["max"]}", max: "{fs["min"]}"',
                )
            elif low == high and p.get("name") != resource:
                if ptype == "double":
                    c.error(
                        (*at, "max"),
                        f"min and max are both {fs['min']}: the range is a single point",
                        "widen the range, or pass the value as a fixed argument instead of a parameter",
                    )
                else:
                    c.warning(
                        (*at, "max"),
                        f"min and max are both {fs['min']}: the parameter is a constant",
                        "widen the range, or pass the value as a fixed argument",
                    )
        if step is not None:
            if step <= 0:
                c.error((*at, "step"), f"step {fs['step']} must be greater than 0", "use a positive step")
            elif low is not None and high is not None and low < high and step > high - low:
                c.warning(
                    (*at, "step"),
                    f"step {fs['step']} is larger than the range {fs['min']}..{fs['max']}",
                    "use a smaller step",
                )


@rule(
    "extra.distribution",
    "kftune (hyperopt takes math.log of the bounds; optuna, goptuna, skopt, hyperband, "
    "pbt support fewer distributions)",
    "logUniform/logNormal need min > 0; a distribution the algorithm cannot honour is an error (optuna) or "
    "a warning (ignored)",
)
def check_distribution(c: Check) -> None:
    algo = c.exp.algorithm.name
    for i, p in _params(c):
        fs = _fs(p)
        dist = fs.get("distribution")
        if p.get("parameterType") not in ("int", "double") or dist in (None, "", "uniform"):
            continue
        at = ("spec", "parameters", i, "feasibleSpace", "distribution")
        low = _num(fs.get("min"), p.get("parameterType", "double"))
        if dist in ("logUniform", "logNormal") and low is not None and low <= 0:
            c.error(
                ("spec", "parameters", i, "feasibleSpace", "min"),
                f"{dist} needs min > 0 (the log of {fs.get('min')} is undefined)",
                "use a positive min",
            )
        if algo in OPTUNA and dist in ("normal", "logNormal"):
            c.error(
                at,
                f"algorithm {algo} (Katib's optuna service) supports only uniform and logUniform; "
                f"{dist} fails when the first suggestion is made",
                "use uniform or logUniform",
            )
        elif algo in IGNORES_DISTRIBUTION:
            c.warning(
                at,
                f"algorithm {algo} ignores distribution {dist} and samples uniformly between min and max",
                "use tpe or random (hyperopt) to honour it, or search the log of the value",
            )


@rule(
    "extra.list",
    "kftune (suggestion services pick from the list; Katib never checks it)",
    "categorical/discrete lists are non-empty and unique; discrete values are numbers",
)
def check_lists(c: Check) -> None:
    for i, p in _params(c):
        ptype = p.get("parameterType")
        if ptype not in ("categorical", "discrete"):
            continue
        at = ("spec", "parameters", i, "feasibleSpace", "list")
        values = _fs(p).get("list")
        if not isinstance(values, list) or not values:
            c.error(
                at,
                f"{ptype} parameter {p.get('name')!r} has no values",
                'list them: list: ["16", "32", "64"]',
            )
            continue
        seen: set[str] = set()
        for j, v in enumerate(values):
            text = str(v)
            if text in seen:
                c.error(
                    (*at, j), f"value {text!r} is listed twice", "remove the repeat (it skews the sampling)"
                )
            seen.add(text)
            if ptype == "discrete" and _num(text, "double") is None:
                c.error(
                    (*at, j),
                    f"discrete value {text!r} is not a number",
                    "use numbers, or make the parameter categorical",
                )
            if '"' in text or "\\" in text:
                c.warning(
                    (*at, j),
                    f"value {text!r} contains a quote or backslash: Katib pastes values into the "
                    "template's JSON text unescaped, which breaks the trial",
                    'avoid " and \\ in values',
                )


# --------------------------------------------------------------------------------------------
# Trial template


def _trial_parameters(c: Check) -> list[tuple[int, dict[str, Any]]]:
    tt = c.spec.get("trialTemplate")
    tps = tt.get("trialParameters") if isinstance(tt, dict) else None
    return [(i, tp) for i, tp in enumerate(tps) if isinstance(tp, dict)] if isinstance(tps, list) else []


def _trial_spec(c: Check) -> dict[str, Any] | None:
    tt = c.spec.get("trialTemplate")
    spec = tt.get("trialSpec") if isinstance(tt, dict) else None
    return spec if isinstance(spec, dict) else None


@rule(
    "extra.parameter-unreferenced",
    "kftune (generator.go applyParameters: len(assignments) != nonMetaParamCount fails every trial)",
    "every spec.parameters entry is referenced by a trialParameter",
)
def check_parameter_unreferenced(c: Check) -> None:
    if not _trial_parameters(c) and c.spec.get("trialTemplate") is None:
        return
    refs = {tp.get("reference") for _, tp in _trial_parameters(c)}
    for i, p in _params(c):
        name = p.get("name")
        if isinstance(name, str) and name and name not in refs:
            c.error(
                ("spec", "parameters", i, "name"),
                f"parameter {name!r} is not referenced by any trialParameter: "
                "Katib fails to create every trial",
                f"add a trialParameter with reference: {name} and use it "
                "in the template, or remove the parameter",
            )


@rule(
    "extra.meta-reference",
    "kftune (generator.go applyParameters reads Labels/Annotations from the template)",
    "${trialSpec.Labels[k]} / ${trialSpec.Annotations[k]} name a key of the trialSpec's own metadata",
)
def check_meta_reference(c: Check) -> None:
    spec = _trial_spec(c)
    if spec is None:
        return
    meta = spec.get("metadata") if isinstance(spec.get("metadata"), dict) else {}
    for i, tp in _trial_parameters(c):
        m = META_REFERENCE.search(str(tp.get("reference") or ""))
        sub = META_INDEXED.search(m.group(1)) if m else None
        if not sub or sub.group(1) not in ("Labels", "Annotations"):
            continue
        table_name = sub.group(1).lower()
        table = meta.get(table_name) if isinstance(meta.get(table_name), dict) else {}
        key = sub.group(2)
        if key not in table:
            c.error(
                ("spec", "trialTemplate", "trialParameters", i, "reference"),
                f"{tp['reference']} reads spec.trialTemplate.trialSpec.metadata.{table_name}[{key!r}], which "
                f"is not set: Katib fails every trial (it reads the template's {table_name}, not the labels a "
                "suggestion puts on the Trial)",
                f"set trialSpec.metadata.{table_name}.{key}, or, for a label the suggestion sets, read it in "
                f"the pod with env valueFrom.fieldRef.fieldPath: metadata.labels['{key}']",
            )


@dataclass
class Primary:
    """The primary container of the trial template, with the YAML path of each argv element."""

    ypath: YPath
    container: dict[str, Any]
    argv: list[str]
    argv_paths: list[YPath]
    pod_ypath: YPath
    pod: dict[str, Any]


def primary_container(c: Check) -> Primary | None:
    spec = _trial_spec(c)
    if spec is None:
        return None
    tt = c.exp.trial_template
    found = primary_pod_template(spec, tt.primary_pod_labels)
    if found is None:
        return None
    pod_path, pod = found
    container = find_container(pod, tt.primary_container_name)
    if container is None:
        return None
    index = pod["spec"]["containers"].index(container)
    cpath = (*TRIAL_SPEC, *pod_path, "spec", "containers", index)
    argv: list[str] = []
    paths: list[YPath] = []
    for key in ("command", "args"):
        items = container.get(key)
        if isinstance(items, list):
            for j, item in enumerate(items):
                argv.append(str(item))
                paths.append((*cpath, key, j))
    return Primary(cpath, container, argv, paths, (*TRIAL_SPEC, *pod_path), pod)


@rule(
    "extra.primary-container",
    "kftune (inject_webhook.go: the pod webhook fails without it)",
    "primaryContainerName names a container of the primary pod template",
)
def check_primary_container(c: Check) -> None:
    spec = _trial_spec(c)
    tt = c.exp.trial_template
    if spec is None or not tt.primary_container_name:
        return
    found = primary_pod_template(spec, tt.primary_pod_labels)
    if found is None:
        c.error(
            TRIAL_SPEC,
            "no pod template found in the trial spec (expected spec.template or "
            "spec.<x>ReplicaSpecs.<role>.template)",
            "put the training container in a pod template",
        )
        return
    pod_path, pod = found
    names = [x.get("name") for x in pod["spec"]["containers"] if isinstance(x, dict)]
    if tt.primary_container_name not in names:
        c.error(
            ("spec", "trialTemplate", "primaryContainerName"),
            f"no container named {tt.primary_container_name!r} in the primary pod template "
            f"({'.'.join(map(str, pod_path))}; containers: {', '.join(map(str, names))})",
            "set primaryContainerName to the container that runs the training",
        )


@rule(
    "extra.trial-kind",
    "kftune (katib-config init.controller.trialResources: the controller watches only these)",
    "the trial's apiVersion/kind is a trial resource Katib watches",
)
def check_trial_kind(c: Check) -> None:
    spec = _trial_spec(c)
    if spec is None or not spec.get("apiVersion") or not spec.get("kind"):
        return
    api, kind = str(spec["apiVersion"]), str(spec["kind"])
    cfg = c.options.katib_config
    if not cfg.has_trial_kind(api, kind):
        c.warning(
            (*TRIAL_SPEC, "kind"),
            f"{kind} ({api}) is not in katib-config trialResources ({', '.join(cfg.trial_resources)})",
            "use a Job or a Kubeflow training job, or add the kind "
            "to katib-config init.controller.trialResources",
        )
    if kind == "PyTorchJob" and c.exp.trial_template.primary_pod_labels == KUBEFLOW_PRIMARY_POD_LABELS:
        replicas = (
            spec.get("spec", {}).get("pytorchReplicaSpecs") if isinstance(spec.get("spec"), dict) else None
        )
        if isinstance(replicas, dict) and "Master" not in replicas:
            c.error(
                (*TRIAL_SPEC, "spec", "pytorchReplicaSpecs"),
                "a PyTorchJob trial needs a Master replica: Katib "
                "collects metrics from the pod labelled training.kubeflow.org/job-role: master",
                "add pytorchReplicaSpecs.Master (replicas: 1), or set trialTemplate.primaryPodLabels",
            )


@rule(
    "extra.pod-schema",
    "kftune (training operators prune unknown fields of their pod templates)",
    "pod templates of non-Job trial kinds match Kubernetes' PodTemplateSpec (needs kubernetes-validate)",
)
def check_pod_schema(c: Check) -> None:
    from kftune.katib.k8s_schema import schema_errors

    spec = _trial_spec(c)
    if spec is None or (spec.get("apiVersion") == "batch/v1" and spec.get("kind") == "Job"):
        return
    rendered = substitute(spec, {n: "test-value" for n in placeholders(spec)})
    for pod_path, template in pod_templates(rendered):
        for sub, message in schema_errors(template, "PodTemplateSpec", c.options.kube_version):
            c.error(
                (*TRIAL_SPEC, *pod_path, *sub),
                f"invalid pod template: {message}",
                "fix the field (the operator drops or rejects it, and the trial runs without it)",
            )


def _image_problem(image: str) -> str | None:
    if "@" in image:
        return None
    name = image.rsplit("/", 1)[-1]
    if ":" not in name:
        return "has no tag (it means :latest)"
    if name.rsplit(":", 1)[1] == "latest":
        return "uses the mutable tag :latest"
    return None


@rule(
    "extra.image-tag",
    "kftune (docs/contracts.md: images are tagged by version or git SHA)",
    "every image has a tag other than latest (or a digest)",
)
def check_image_tags(c: Check) -> None:
    spec = _trial_spec(c)
    targets: list[tuple[YPath, Any]] = []
    if spec is not None:
        for pod_path, pod in pod_templates(spec):
            for key in ("containers", "initContainers"):
                for i, ctr in enumerate(pod.get("spec", {}).get(key) or []):
                    if isinstance(ctr, dict):
                        targets.append(((*TRIAL_SPEC, *pod_path, "spec", key, i, "image"), ctr.get("image")))
    custom = c.exp.metrics_collector.custom_collector
    if custom:
        targets.append(
            (("spec", "metricsCollectorSpec", "collector", "customCollector", "image"), custom.get("image"))
        )
    for ypath, image in targets:
        if isinstance(image, str) and (problem := _image_problem(image)):
            c.error(
                ypath,
                f"image {image!r} {problem}: trials may run different code",
                f"pin a version or digest, e.g. {TRAINER_IMAGE}:0.1.0",
            )


def _has_istio_off(pod: dict[str, Any]) -> bool | None:
    meta = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    for table in ("labels", "annotations"):
        values = meta.get(table) if isinstance(meta.get(table), dict) else {}
        if "sidecar.istio.io/inject" in values:
            return values["sidecar.istio.io/inject"] == "false"
    return None


@rule(
    "extra.istio",
    "kftune (NOTES: with an Istio sidecar the trial pod never completes)",
    'trial pod templates carry sidecar.istio.io/inject: "false"',
)
def check_istio(c: Check) -> None:
    spec = _trial_spec(c)
    if spec is None:
        return
    for pod_path, pod in pod_templates(spec):
        state = _has_istio_off(pod)
        if state is None:
            c.warning(
                (*TRIAL_SPEC, *pod_path),
                'pod template lacks sidecar.istio.io/inject: "false": in an Istio '
                "mesh the sidecar keeps the pod running after training and the trial never completes",
                'add metadata.labels: {sidecar.istio.io/inject: "false"} to the pod template',
            )
        elif state is False:
            c.warning(
                (*TRIAL_SPEC, *pod_path, "metadata"),
                'sidecar.istio.io/inject must be the string "false"',
                'write sidecar.istio.io/inject: "false" (quoted)',
            )


# Env vars set in the pod by others: Katib's pod webhook (primary container) and the training operators.
INJECTED_ENV = {
    "*": ("KATIB_TRIAL_NAME",),
    "PyTorchJob": (
        "MASTER_ADDR",
        "MASTER_PORT",
        "WORLD_SIZE",
        "RANK",
        "PET_NPROC_PER_NODE",
        "PET_NODE_RANK",
        "PET_NNODES",
        "PET_MASTER_ADDR",
        "PET_MASTER_PORT",
        "PYTHONUNBUFFERED",
    ),
    "TFJob": ("TF_CONFIG",),
}
_VAR = re.compile(r"(?<!\$)\$\(([^)]*)\)")


@rule(
    "extra.env-reference",
    "kftune (kubelet leaves an undefined $(VAR) as written)",
    "$(VAR) in command/args/env names an env var of the container (or one Katib / the operator sets)",
)
def check_env_reference(c: Check) -> None:
    spec = _trial_spec(c)
    if spec is None:
        return
    kind = str(spec.get("kind"))
    for pod_path, pod in pod_templates(spec):
        for i, ctr in enumerate(pod.get("spec", {}).get("containers") or []):
            if not isinstance(ctr, dict) or ctr.get("envFrom"):
                continue
            cpath = (*TRIAL_SPEC, *pod_path, "spec", "containers", i)
            defined = {e.get("name") for e in ctr.get("env") or [] if isinstance(e, dict)}
            defined |= set(INJECTED_ENV["*"]) | set(INJECTED_ENV.get(kind, ()))
            for key in ("command", "args"):
                for j, item in enumerate(ctr.get(key) or []):
                    for m in _VAR.finditer(str(item)):
                        if m.group(1) not in defined:
                            c.warning(
                                (*cpath, key, j),
                                f"$({m.group(1)}) is not an env var of the container: "
                                "Kubernetes passes it through literally",
                                f"define {m.group(1)} under env, or write $$({m.group(1)}) for a literal",
                            )


# The trainer's environment: each variable read by the trainer's own parser (kftune train exits 2
# on what it refuses). Below STALL_MIN_S a healthy trial's quiet start (importing torch, loading
# the model) looks stalled.
STALL_MIN_S = 60.0
ENV_EXAMPLES = {
    STALL_ENV: 'e.g. value: "1800" (30 minutes), or "0" to turn the stall watchdog off',
    MEMORY_FRACTION_ENV: 'e.g. value: "0.25" for a quarter of the GPU',
}


@rule(
    "extra.trainer-env",
    "kftune (kftune.train.watchdog, TrainArgs.gpu_memory_fraction_: the trial exits 2 at start)",
    "KFTUNE_STALL_TIMEOUT_S is seconds >= 0 (0: off; under 60 a healthy start can look stalled) and "
    "KFTUNE_GPU_MEMORY_FRACTION a fraction in (0, 1], for a `kftune train` container",
)
def check_trainer_env(c: Check) -> None:
    found = _trainer(c)
    if found is None:
        return
    primary = found[0]
    for i, e in enumerate(primary.container.get("env") or []):
        if not isinstance(e, dict) or "value" not in e:
            continue
        name, raw = e.get("name"), str(e.get("value")).strip()
        where = (*primary.ypath, "env", i, "value")
        if "$(" in raw or "${" in raw:
            continue
        try:
            if name == STALL_ENV:
                seconds = parse_stall_timeout(raw)
                if 0 < seconds < STALL_MIN_S:
                    c.warning(
                        where,
                        f"{STALL_ENV}={raw}: a healthy trial can be quiet that long while it imports "
                        "torch and loads its model, and would be restarted as stalled",
                        f"use at least {STALL_MIN_S:.0f} s (the examples use 1800)",
                    )
            elif name == MEMORY_FRACTION_ENV and not memory_fraction_ok(parse_memory_fraction(raw)):
                c.error(
                    where,
                    f"{MEMORY_FRACTION_ENV}={raw!r} is not a fraction in (0, 1]: every trial would exit 2",
                    ENV_EXAMPLES[MEMORY_FRACTION_ENV],
                )
        except UserError as exc:
            c.error(where, f"{exc} (every trial would exit 2)", ENV_EXAMPLES[str(name)])


# --------------------------------------------------------------------------------------------
# kftune's trainer: argv, metrics, resume


def _trainer(c: Check) -> tuple[Primary, list[TrainerArg], int] | None:
    primary = primary_container(c)
    if primary is None:
        return None
    start = trainer_start(primary.argv)
    if start is None:
        return None
    args, _ = parse_trainer_args(primary.argv, start)
    return primary, args, start


def _arg(args: list[TrainerArg], flag: str) -> TrainerArg | None:
    return next((a for a in args if a.flag == flag), None)


def _placeholder_param(c: Check, value: str) -> dict[str, Any] | None:
    """The spec.parameters entry behind a value that is exactly one ${trialParameters.x}."""
    m = PARAM_PLACEHOLDER.fullmatch(value)
    if not m:
        return None
    ref = next((tp.get("reference") for _, tp in _trial_parameters(c) if tp.get("name") == m.group(1)), None)
    return next((p for _, p in _params(c) if p.get("name") == ref), None)


def task_of(c: Check) -> str | None:
    found = _trainer(c)
    if found is None:
        return None
    arg = _arg(found[1], "--task")
    return arg.value if arg and arg.value in METRICS_BY_TASK else None


@rule(
    "extra.trainer-args",
    "kftune (docs/contracts.md: the trainer exits 2 on unknown or malformed arguments)",
    "the `kftune train` argv has the required flags, only known flags, valid choices, and parameters of "
    "matching types behind int/float flags",
)
def check_trainer_args(c: Check) -> None:
    found = _trainer(c)
    if found is None:
        return
    primary, args, start = found
    _, stray = parse_trainer_args(primary.argv, start)
    for index, token in stray:
        c.error(
            primary.argv_paths[index],
            f"stray argument {token!r} for kftune train",
            "pass values after their flag: --flag value",
        )
    flags = {a.flag for a in args}
    if "--config" not in flags:
        for flag in REQUIRED:
            if flag not in flags:
                c.error(
                    primary.ypath, f"kftune train needs {flag}", f"add {flag} <value> to the container args"
                )
    for a in args:
        where = primary.argv_paths[a.index]
        if a.flag not in FLAGS and a.flag not in SWITCHES:
            c.error(
                where, f"unknown kftune train flag {a.flag}", "see docs/contracts.md for the trainer's flags"
            )
            continue
        if a.flag in SWITCHES:
            continue
        if a.value is None:
            c.error(where, f"{a.flag} has no value", f"add the value after {a.flag}")
            continue
        kind = FLAGS[a.flag]
        if "$(" in a.value or ("${" in a.value and not PARAM_PLACEHOLDER.fullmatch(a.value)):
            continue
        param = _placeholder_param(c, a.value)
        if param is not None:
            _check_param_feeds_flag(c, param, a.flag, kind)
            continue
        if PARAM_PLACEHOLDER.fullmatch(a.value):
            continue  # trial metadata
        if isinstance(kind, tuple) and a.value not in kind:
            c.error(
                where,
                f"{a.flag} {a.value!r} is not one of {', '.join(kind)}",
                f"use one of {', '.join(kind)}",
            )
        elif kind == "int" and not _INT.match(a.value):
            c.error(where, f"{a.flag} needs an integer, got {a.value!r}", f"e.g. {a.flag} 3")
        elif kind == "float" and not _FLOAT.match(a.value):
            c.error(where, f"{a.flag} needs a number, got {a.value!r}", f"e.g. {a.flag} 0.1")


def _check_param_feeds_flag(c: Check, param: dict[str, Any], flag: str, kind: Any) -> None:
    ptype = param.get("parameterType")
    name = param.get("name")
    index = next(i for i, p in _params(c) if p is param)
    at = ("spec", "parameters", index, "parameterType")
    values = [str(v) for v in _fs(param).get("list") or []] if ptype in ("categorical", "discrete") else []
    if kind == "int":
        if ptype == "double":
            c.error(
                at,
                f"parameter {name!r} is a double but feeds {flag}, which takes an integer",
                "make it parameterType: int (or discrete with integer values)",
            )
        bad = [v for v in values if not _INT.match(v)]
    elif kind == "float":
        bad = [v for v in values if not _FLOAT.match(v)]
    elif isinstance(kind, tuple):
        bad = [v for v in values if v not in kind]
        if ptype in ("int", "double"):
            c.error(
                at,
                f"parameter {name!r} is numeric but feeds {flag}, which takes one of {', '.join(kind)}",
                "make it categorical",
            )
    else:
        bad = []
    if bad:
        c.error(
            ("spec", "parameters", index, "feasibleSpace", "list"),
            f"values {bad} of parameter {name!r} are not valid for {flag}",
            "list only valid values",
        )


def _default_line(task: str) -> tuple[str, dict[str, float]]:
    metrics = {m: round(0.1234 + 0.1 * i, 4) for i, m in enumerate(METRICS_BY_TASK[task])}
    return format_epoch_line(2, metrics), metrics


def extract_metrics(line: str, filters: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """Katib's text-format collector on one line: (name, value) per match of each filter."""
    out: list[tuple[str, str]] = []
    for pattern in filters or [KATIB_DEFAULT_FILTER]:
        try:
            regex = re.compile(pattern)
        except re.error:
            continue
        for m in regex.finditer(line):
            if m.lastindex is None or m.lastindex < 2:
                continue
            out.append(((m.group(1) or "").strip(), (m.group(2) or "").strip()))
    return out


@rule(
    "extra.objective-metric",
    "kftune (kftune.train.metric_lines.METRICS_BY_TASK; Katib records an unavailable metric)",
    "the objective (and additional metrics) are printed by the trainer for its --task; the objective type "
    "matches the metric (loss and perplexity are minimised)",
)
def check_objective_metric(c: Check) -> None:
    task = task_of(c)
    obj = c.exp.objective
    if (
        obj.objective_metric_name
        and obj.type in ("minimize", "maximize")
        and obj.objective_metric_name in GOALS
    ):
        want = GOALS[obj.objective_metric_name]
        if want != obj.type:
            c.warning(
                ("spec", "objective", "type"),
                f"{obj.objective_metric_name} is better when "
                f"{'higher' if want == 'maximize' else 'lower'}, but the objective is to {obj.type} it",
                f"set type: {want}",
            )
    if task is None:
        return
    printed = METRICS_BY_TASK[task]
    for ypath, name, severity in [
        (("spec", "objective", "objectiveMetricName"), obj.objective_metric_name, "error")
    ] + [
        (("spec", "objective", "additionalMetricNames", i), m, "warning")
        for i, m in enumerate(obj.additional_metric_names)
    ]:
        if not name or name in printed or name == "epoch":
            continue
        if name.startswith("test_") and "eval_" + name[5:] in printed:
            c.warning(
                ypath,
                f"{name} is printed only once, after training, on the test split: tuning on it "
                "overfits the test set",
                f"use eval_{name[5:]}",
            )
            continue
        report = c.error if severity == "error" else c.warning
        report(
            ypath,
            f"the trainer never prints {name!r} for --task {task} (it prints {', '.join(printed)})",
            f"use one of {', '.join(printed)}",
        )


@rule(
    "extra.metrics-filter",
    "kftune (file-metricscollector.go parseLogsInTextFormat on a real metric line)",
    "the StdOut collector (with its filters) extracts the objective and additional metrics, with the printed "
    "values, from a line the trainer prints (format_epoch_line)",
)
def check_metrics_filter(c: Check) -> None:
    task = task_of(c)
    if task is None:
        return
    mc = c.exp.metrics_collector
    at = ("spec", "metricsCollectorSpec")
    if mc.kind != "StdOut":
        c.warning(
            (*at, "collector", "kind"),
            f"the kftune trainer prints its metric lines on stdout; the {mc.kind} "
            "collector will not see them",
            "use collector kind StdOut",
        )
        return
    line, values = _default_line(task)
    found = extract_metrics(line, list(mc.metrics_format))
    obj = c.exp.objective
    where = (*at, "source", "filter", "metricsFormat") if mc.metrics_format else at
    for name in obj.metric_names:
        if name not in values:
            continue  # extra.objective-metric reports it
        got = [v for n, v in found if n == name]
        expected = f"{values[name]:.6f}"
        if not got:
            c.error(
                where,
                f"the metrics filter finds no {name} in the trainer's line {line!r}",
                "remove source.filter to use Katib's default filter, or fix the regex",
            )
        elif any(_num(v, "double") is None or abs(float(v) - values[name]) > 1e-9 for v in got):
            c.error(
                where,
                f"the metrics filter reads {name}={got[0]!r} from {line!r}, not {expected}",
                "make group 2 match the whole number, e.g. ([+-]?\\d*(\\.\\d+)?([Ee][+-]?\\d+)?)",
            )


@rule(
    "extra.output-dir",
    "kftune (trials running at once must not share a checkpoint directory)",
    "--output-dir differs per trial (uses the trial name)",
)
def check_output_dir(c: Check) -> None:
    found = _trainer(c)
    if found is None:
        return
    primary, args, _ = found
    arg = _arg(args, "--output-dir")
    if arg is None or arg.value is None:
        return
    names = {
        tp.get("name") for _, tp in _trial_parameters(c) if str(tp.get("reference")) == "${trialSpec.Name}"
    }
    uses_name = any(m.group(1) in names for m in PARAM_PLACEHOLDER.finditer(arg.value))
    env_names = {
        e.get("name")
        for e in primary.container.get("env") or []
        if isinstance(e, dict)
        and (e.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
        in ("metadata.name", "metadata.labels['katib.kubeflow.org/trial']")
    }
    uses_name = uses_name or any(
        m.group(1) in env_names | {"KATIB_TRIAL_NAME"} for m in _VAR.finditer(arg.value)
    )
    if not uses_name:
        c.warning(
            primary.argv_paths[arg.index],
            f"--output-dir {arg.value!r} is the same for every trial: trials "
            "overwrite each other's checkpoints",
            "add a trialParameter {name: trialName, reference: "
            "${trialSpec.Name}} and end the path with /${trialParameters.trialName}",
        )


@rule(
    "extra.resource-parameter",
    "kftune (asha/bohb settings; hyperband/service.py ValidateAlgorithmSettings)",
    "asha/bohb/hyperband: resource_name names an int parameter with min >= 1 that feeds --num-epochs; "
    "hyperband: r_l > 0 and parallelTrialCount covers the first bracket (eta^s_max)",
)
def check_resource_parameter(c: Check) -> None:
    algo = c.exp.algorithm
    if algo.name not in RESOURCE_ALGORITHMS:
        return
    at = ("spec", "algorithm", "algorithmSettings")
    resource = algo.settings.get("resource_name")
    params = {p.get("name"): (i, p) for i, p in _params(c)}
    if not resource:
        c.error(
            at,
            f"{algo.name} needs the setting resource_name (the parameter holding the epoch budget)",
            "add {name: resource_name, value: num_epochs} and an int parameter num_epochs",
        )
    elif resource not in params:
        c.error(
            at,
            f"resource_name {resource!r} names no spec.parameters entry",
            f"add an int parameter {resource!r} (min: grace period, max: maximum epochs)",
        )
    else:
        i, p = params[resource]
        fs = _fs(p)
        if p.get("parameterType") != "int":
            report = c.error if algo.name != "hyperband" else c.warning
            report(
                ("spec", "parameters", i, "parameterType"),
                f"resource parameter {resource!r} should be an int (a number of epochs)",
                "set parameterType: int",
            )
        elif algo.name != "hyperband" and (low := _num(fs.get("min"), "int")) is not None and low < 1:
            c.error(
                ("spec", "parameters", i, "feasibleSpace", "min"),
                f"resource parameter {resource!r} needs min >= 1 (the grace period), got {fs.get('min')}",
                'set min: "1"',
            )
        found = _trainer(c)
        if found is not None:
            epochs = _arg(found[1], "--num-epochs")
            param = _placeholder_param(c, epochs.value) if epochs and epochs.value else None
            if param is None or param.get("name") != resource:
                c.error(
                    found[0].ypath,
                    f"--num-epochs does not take the resource parameter {resource!r}: every "
                    "trial would train the same number of epochs",
                    f"pass --num-epochs from the trialParameter that references {resource}",
                )
            if algo.name in ("asha", "bohb") and not _arg(found[1], "--resume-from"):
                c.warning(
                    found[0].ypath,
                    f"{algo.name} promotions resume their parent's checkpoint, but the "
                    "trainer gets no --resume-from: promoted trials start over",
                    "pass --resume-from built from the kftune.io/parent-trial pod label (see katib/ner-asha.yaml)",
                )
            if not _arg(found[1], "--schedule-epochs"):
                c.warning(
                    found[0].ypath,
                    "--schedule-epochs is not set: the LR schedule of a short trial ends "
                    "early, so rungs are not comparable to the full run",
                    "pass --schedule-epochs <max epochs>",
                )
    if algo.name == "hyperband":
        _check_hyperband(c, algo.settings)


def hyperband_first_bracket(r_l: float, eta: int) -> int:
    """Katib hyperband/service.py: max_parallel = ceil(eta ** int(log(r_l) / log(eta)))."""
    s_max = int(math.log(r_l) / math.log(eta))
    return int(math.ceil(eta**s_max))


def hyperband_total_trials(r_l: float, eta: int) -> int:
    """Trials Katib's hyperband creates before it runs out of brackets."""
    s_max = int(math.log(r_l) / math.log(eta))
    total = 0
    for s in range(s_max, -1, -1):
        n = int(math.ceil(float(s_max + 1) * (float(eta**s) / float(s + 1))))
        total += n
        for i in range(s):
            total += int(math.ceil(math.ceil(n * eta ** (-i)) / eta))
    return total


def _check_hyperband(c: Check, settings: dict[str, str]) -> None:
    at = ("spec", "algorithm", "algorithmSettings")
    try:
        r_l = float(settings.get("r_l", ""))
    except ValueError:
        c.error(
            at,
            f"hyperband needs r_l, a positive number (got {settings.get('r_l')!r})",
            'add {name: r_l, value: "9"} (the maximum epochs)',
        )
        return
    if not r_l > 0:
        c.error(
            at, f"r_l must be positive, got {settings.get('r_l')}", 'set r_l to the maximum epochs, e.g. "9"'
        )
        return
    try:
        eta = int(float(settings.get("eta", "3")))
    except ValueError:
        eta = 3
    eta = eta if eta > 0 else 3
    if eta == 1 or r_l < 1:
        return
    first = hyperband_first_bracket(r_l, eta)
    if c.exp.parallel_trial_count < first:
        c.error(
            ("spec", "parallelTrialCount"),
            f"Katib's hyperband needs parallelTrialCount >= {first} (its first "
            f"bracket, eta^s_max with r_l={settings.get('r_l')}, eta={eta}); the suggestion service rejects less",
            f"set parallelTrialCount: {first}, or lower r_l / raise eta",
        )
    total = hyperband_total_trials(r_l, eta)
    if c.exp.max_trial_count is not None and c.exp.max_trial_count > total:
        c.warning(
            ("spec", "maxTrialCount"),
            f"Katib's hyperband creates {total} trials in all (r_l={settings['r_l']}, "
            f"eta={eta}); with maxTrialCount {c.exp.max_trial_count} the experiment waits for suggestions "
            "that never come",
            f"set maxTrialCount: {total}",
        )


@rule(
    "extra.metric-strategies",
    "kftune (common_types.go MetricStrategyType; strategies of other metrics are ignored)",
    "metricStrategies values are min, max or latest, for the objective or an additional metric",
)
def check_metric_strategies(c: Check) -> None:
    obj = c.spec.get("objective")
    strategies = obj.get("metricStrategies") if isinstance(obj, dict) else None
    if not isinstance(strategies, list):
        return
    names = set(c.exp.objective.metric_names)
    for i, s in enumerate(strategies):
        if not isinstance(s, dict):
            continue
        at = ("spec", "objective", "metricStrategies", i)
        if s.get("value") not in ("min", "max", "latest"):
            c.error(
                (*at, "value"),
                f"metric strategy {s.get('value')!r} must be min, max or latest",
                "use max for a score, min for a loss, latest for the last epoch",
            )
        if s.get("name") not in names:
            c.warning(
                (*at, "name"),
                f"{s.get('name')!r} is neither the objective nor an additional metric: the "
                "strategy is ignored",
                "name one of: " + ", ".join(sorted(names)),
            )


@rule(
    "extra.pbt",
    "kftune (pbt/service.py samples min..max by step; inject_webhook.go mounts the suggestion PVC, "
    "which composer.go / suggestion_controller.go create only for resumePolicy FromVolume)",
    "suggestion_trial_dir is absolute and comes with resumePolicy FromVolume; pbt int/double parameters have a step",
)
def check_pbt(c: Check) -> None:
    algo = c.exp.algorithm
    trial_dir = algo.settings.get("suggestion_trial_dir")
    at = ("spec", "algorithm", "algorithmSettings")
    if trial_dir:
        if not trial_dir.startswith("/"):
            c.error(
                at,
                f"suggestion_trial_dir {trial_dir!r} must be an absolute path (it is a mount path)",
                "e.g. /var/log/katib/checkpoints/",
            )
        if c.exp.resume_policy != "FromVolume":
            c.error(
                ("spec", "resumePolicy"),
                "with suggestion_trial_dir, trial pods mount the suggestion's PVC, "
                f"which Katib creates only for resumePolicy FromVolume (got {c.exp.resume_policy}): the trial "
                "pods stay Pending",
                "set resumePolicy: FromVolume",
            )
    if algo.name != "pbt":
        return
    for i, p in _params(c):
        if p.get("parameterType") in ("int", "double") and not _fs(p).get("step"):
            c.error(
                ("spec", "parameters", i, "feasibleSpace"),
                f"Katib's pbt samples {p.get('name')!r} from min to "
                "max by step, and it has no step: the suggestion fails",
                'add a step, e.g. step: "0.01"',
            )


# pkg/webhook/v1beta1/pod/const.go NeedWrapWorkerMetricsCollectorList
WRAPPED_COLLECTORS = ("StdOut", "TensorFlowEvent", "File")
_SHELL_SPECIAL = re.compile(r"[\s;&|<>()$`\"'\\*?\[\]{}#~!]")
_K8S_REF = re.compile(r"\$\([^)]*\)")


def _shell_unsafe(text: str) -> bool:
    """Would sh split or interpret this word (placeholders and $(VAR) references aside)?"""
    return bool(_SHELL_SPECIAL.search(PARAM_PLACEHOLDER.sub("x", _K8S_REF.sub("x", text))))


@rule(
    "extra.shell-wrap",
    "kftune (inject_webhook.go wrapWorkerContainer: for StdOut/File/TensorFlowEvent collectors the primary "
    "container runs as sh -c with command and args joined by spaces, unquoted)",
    "every argument of the primary container survives that: no empty argument, no argument that is only a "
    "$(VAR) that can be empty, no spaces or shell characters (in literals or in categorical values fed to args)",
)
def check_shell_wrap(c: Check) -> None:
    if c.exp.metrics_collector.kind not in WRAPPED_COLLECTORS:
        return
    primary = primary_container(c)
    if primary is None or primary.argv[:2] in (["sh", "-c"], ["bash", "-c"]):
        return
    why = "Katib runs this container as `sh -c` with its arguments joined by spaces"
    env = {e.get("name"): e for e in primary.container.get("env") or [] if isinstance(e, dict)}
    categorical = {
        tp.get("name"): p
        for _, tp in _trial_parameters(c)
        for _, p in _params(c)
        if p.get("name") == tp.get("reference") and p.get("parameterType") in ("categorical", "discrete")
    }
    for text, ypath in zip(primary.argv, primary.argv_paths, strict=True):
        if text == "":
            c.error(
                ypath, f"an empty argument disappears: {why}", "remove it, or join it to its flag: --flag="
            )
            continue
        refs = _K8S_REF.findall(text)
        if (
            refs
            and _K8S_REF.sub("", text) == ""
            and any(
                "valueFrom" in env.get(r[2:-1], {}) or env.get(r[2:-1], {}).get("value") == "" for r in refs
            )
        ):
            c.error(
                ypath,
                f"{text} may be empty, and then the argument disappears and the next one is read as "
                f"its value: {why}",
                f"join it to its flag: --flag={text}",
            )
            continue
        if _shell_unsafe(text):
            c.error(
                ypath,
                f"argument {text!r} would be split or interpreted by the shell: {why}",
                "avoid spaces and shell characters in arguments (pass such values in env or a config file)",
            )
        for m in PARAM_PLACEHOLDER.finditer(text):
            param = categorical.get(m.group(1))
            if param is None:
                continue
            index = next(i for i, p in _params(c) if p is param)
            for j, value in enumerate(_fs(param).get("list") or []):
                if _shell_unsafe(str(value)) or str(value) == "":
                    c.error(
                        ("spec", "parameters", index, "feasibleSpace", "list", j),
                        f"value {value!r} reaches the command line of {m.group(0)} and would be split or "
                        f"interpreted by the shell: {why}",
                        "use values without spaces or shell characters",
                    )
