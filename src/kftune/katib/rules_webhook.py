"""Rules of Katib's experiment admission webhook, derived from kubeflow/katib's source.

``pkg/webhook/v1beta1/experiment/validation_webhook.go`` (decoding the request into Go types) and
``pkg/webhook/v1beta1/experiment/validator/validator.go`` (``ValidateExperiment`` and the
functions it calls), applied after the defaults of ``experiment_defaults.go`` (the mutating
webhook runs first). Where Katib stops early (``validateObjective`` errors return at once;
``validateTrialTemplate`` returns at the first missing placeholder) these rules go on and report
everything. The table of rules is in :mod:`kftune.katib.validator`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kftune.katib.experiment import META_INDEXED, META_KEYS, META_REFERENCE, PARAM_PLACEHOLDER, substitute
from kftune.katib.findings import Check, rule
from kftune.katib.kubeyaml import YPath

# --------------------------------------------------------------------------------------------
# Go types of the Experiment API (pkg/apis/controller/experiments/v1beta1/experiment_types.go,
# pkg/apis/controller/common/v1beta1/common_types.go). A dict is a struct (its keys are the json
# tags), a one-element list a slice, a string a leaf type.

STRING, INT32, FLOAT64, BOOL, INT_OR_STRING = "string", "int32", "float64", "bool", "IntOrString"
INT64 = "int64"
QUANTITY = "Quantity"  # resource.Quantity: a string such as "2Gi", or a number
MAP_STRING = "map[string]string"
OBJECT = "object"  # unstructured.Unstructured / corev1 types Katib does not look into here
ANY = "any"
_OPEN = "*"  # struct with further fields we do not model (ObjectMeta, HTTPGetAction...)


@dataclass(frozen=True)
class MapOf:
    """A map with any keys whose values have the type ``values`` (``map[string]T``)."""

    values: Any


_NAME_VALUE = {"name": STRING, "value": STRING}
_ALGORITHM = {"algorithmName": STRING, "algorithmSettings": [_NAME_VALUE]}
_PARAMETER = {
    "name": STRING,
    "parameterType": STRING,
    "feasibleSpace": {"max": STRING, "min": STRING, "list": [STRING], "step": STRING, "distribution": STRING},
}
EXPERIMENT_TYPES: dict[str, Any] = {
    "apiVersion": STRING,
    "kind": STRING,
    "metadata": {
        "name": STRING,
        "namespace": STRING,
        "labels": MAP_STRING,
        "annotations": MAP_STRING,
        _OPEN: ANY,
    },
    "spec": {
        "parameters": [_PARAMETER],
        "objective": {
            "type": STRING,
            "goal": FLOAT64,
            "objectiveMetricName": STRING,
            "additionalMetricNames": [STRING],
            "metricStrategies": [_NAME_VALUE],
        },
        "algorithm": _ALGORITHM,
        "earlyStopping": _ALGORITHM,
        "trialTemplate": {
            "retain": BOOL,
            "trialSpec": OBJECT,
            "configMap": {"configMapName": STRING, "configMapNamespace": STRING, "templatePath": STRING},
            "trialParameters": [{"name": STRING, "description": STRING, "reference": STRING}],
            "primaryPodLabels": MAP_STRING,
            "primaryContainerName": STRING,
            "successCondition": STRING,
            "failureCondition": STRING,
        },
        "parallelTrialCount": INT32,
        "maxTrialCount": INT32,
        "maxFailedTrialCount": INT32,
        "metricsCollectorSpec": {
            "source": {
                "httpGet": {
                    "path": STRING,
                    "port": INT_OR_STRING,
                    "host": STRING,
                    "scheme": STRING,
                    _OPEN: ANY,
                },
                "fileSystemPath": {"path": STRING, "kind": STRING, "format": STRING},
                "filter": {"metricsFormat": [STRING]},
            },
            "collector": {"kind": STRING, "customCollector": OBJECT},
        },
        "nasConfig": OBJECT,
        "resumePolicy": STRING,
    },
    "status": ANY,
}


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_error(value: Any, go_type: str) -> str | None:
    """Why Go's encoding/json cannot put ``value`` (from kubectl's JSON) into ``go_type``."""
    if value is None or go_type == ANY:
        return None
    kind = _json_kind(value)
    if go_type == STRING:
        return None if kind == "string" else kind
    if go_type == BOOL:
        return None if kind == "bool" else kind
    if go_type == FLOAT64:
        return None if kind == "number" else kind
    if go_type == INT_OR_STRING:
        return None if kind == "string" or (kind == "number" and float(value).is_integer()) else kind
    if go_type in (INT32, INT64):
        if kind != "number":
            return kind
        if isinstance(value, float) and not value.is_integer():
            return f"number {value}"
        bits = 31 if go_type == INT32 else 63
        if not -(2**bits) <= value < 2**bits:
            return f"number {value} (out of {go_type} range)"
        return None
    if go_type == QUANTITY:
        return None if kind in ("string", "number") else kind
    if go_type == MAP_STRING:
        if kind != "object":
            return kind
        return next(
            (
                f"object with a {_json_kind(v)} value at {k!r}"
                for k, v in value.items()
                if v is not None and not isinstance(v, str)
            ),
            None,
        )
    if go_type == OBJECT:
        return None if kind == "object" else kind
    return None


def walk_types(value: Any, schema: Any, ypath: YPath = ()) -> Iterator[tuple[str, YPath, Any, Any]]:
    """Yield ``("type", path, value, go_type)`` for values Go cannot decode and
    ``("unknown", path, key, known_keys)`` for keys the Go types do not have (dropped silently)."""
    if value is None:
        return
    if isinstance(schema, str):
        if _type_error(value, schema) is not None:
            yield "type", ypath, value, schema
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            yield "type", ypath, value, "array"
            return
        for i, item in enumerate(value):
            yield from walk_types(item, schema[0], (*ypath, i))
        return
    if isinstance(schema, MapOf):
        if not isinstance(value, dict):
            yield "type", ypath, value, "object"
            return
        for key, item in value.items():
            yield from walk_types(item, schema.values, (*ypath, key))
        return
    if not isinstance(value, dict):
        yield "type", ypath, value, "object"
        return
    for key, item in value.items():
        if key in schema:
            yield from walk_types(item, schema[key], (*ypath, key))
        elif _OPEN not in schema:
            yield "unknown", (*ypath, key), key, [k for k in schema if k != _OPEN]


def field_hint(key: Any, known: list[str]) -> str:
    """How to fix an unknown field: the known one it resembles, else the known ones."""
    close = [k for k in known if k.lower() == str(key).lower() or k.lower().startswith(str(key).lower()[:5])]
    return f"did you mean {close[0]!r}?" if close else f"known fields here: {', '.join(known)}"


def describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {'true' if value else 'false'}"
    if isinstance(value, int | float):
        return f"the number {_go_number(value)}"
    if isinstance(value, str):
        return f"the string {value!r}"
    return "a list" if isinstance(value, list) else "a mapping"


@rule(
    "webhook.decode",
    "validation_webhook.go: Handle (decoder.Decode into Experiment)",
    "every field has the Go type Katib decodes it into (min/max/step/list/setting values are strings)",
)
def check_decode(c: Check) -> None:
    for what, ypath, value, go_type in walk_types(c.exp.raw, EXPERIMENT_TYPES):
        if what != "type":
            continue
        if go_type == STRING and isinstance(value, int | float | bool):
            text = c.doc.scalars.get(tuple(ypath)) or (
                ("true" if value else "false") if isinstance(value, bool) else _go_number(value)
            )
            fix = f'quote it: {ypath[-1]}: "{text}"'
        elif go_type == INT32 and isinstance(value, str):
            fix = f"write a plain integer without quotes: {ypath[-1]}: {value}"
        elif go_type == FLOAT64 and isinstance(value, str):
            fix = f"write a number without quotes: {ypath[-1]}: {value}"
        elif go_type == BOOL:
            fix = f"write true or false without quotes: {ypath[-1]}: true"
        else:
            fix = f"give it the type {go_type}"
        if go_type == MAP_STRING and isinstance(value, dict):
            key = next(k for k, v in value.items() if v is not None and not isinstance(v, str))
            ypath, value, go_type = (*ypath, key), value[key], STRING
            fix = "quote the value"
        shown = describe(value)
        if (source := c.doc.scalars.get(tuple(ypath))) is not None and not isinstance(value, str):
            shown = f"{shown.rsplit(' ', 1)[0]} {source} (kubectl reads unquoted {source} as a {_json_kind(value)})"
        c.error(
            ypath,
            f"is {shown}, but Katib decodes it as Go type {go_type}: the admission "
            "webhook rejects the Experiment (json: cannot unmarshal)",
            fix,
        )


def _go_number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


# --------------------------------------------------------------------------------------------
# ValidateExperiment


_NAME_PREFIX = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?")  # Katib's namingConvention (unanchored end)


@rule(
    "webhook.name",
    "validator.go: ValidateExperiment (namingConvention, len > 40)",
    "metadata.name starts with a lower-case letter and has at most 40 characters",
)
def check_name(c: Check) -> None:
    name = c.exp.raw.get("metadata", {}).get("name") if isinstance(c.exp.raw.get("metadata"), dict) else None
    if not isinstance(name, str) or not name:
        c.error(
            ("metadata", "name"),
            "metadata.name is missing",
            "add metadata.name: a lower-case DNS label of at most 40 characters, e.g. ner-asha",
        )
        return
    if not _NAME_PREFIX.match(name) or len(name) > 40:
        c.error(
            ("metadata", "name"),
            f"name {name!r} must start with a lower-case letter, use only [-a-z0-9] "
            f"and have at most 40 characters (it has {len(name)})",
            "rename it, e.g. "
            + (re.sub(r"[^-a-z0-9]+", "-", name.lower()).strip("-")[:40] or "my-experiment"),
        )


@rule(
    "webhook.counts",
    "validator.go: ValidateExperiment (counts)",
    "maxFailedTrialCount >= 0, maxTrialCount > 0, parallelTrialCount > 0",
)
def check_counts(c: Check) -> None:
    for key, low, text in (
        ("maxFailedTrialCount", 0, "not be less than 0"),
        ("maxTrialCount", 1, "be greater than 0"),
        ("parallelTrialCount", 1, "be greater than 0"),
    ):
        value = c.spec.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value < low:
            c.error(
                ("spec", key),
                f"{key} is {_go_number(value)}; it must {text}",
                f"set {key} to {max(low, 1) if key != 'maxFailedTrialCount' else 0} or more",
            )


@rule(
    "webhook.counts-consistent",
    "validator.go: ValidateExperiment (counts)",
    "maxFailedTrialCount <= maxTrialCount and parallelTrialCount (default 3) <= maxTrialCount",
)
def check_counts_consistent(c: Check) -> None:
    exp = c.exp
    max_trials = exp.max_trial_count
    if max_trials is None:
        return
    failed = exp.max_failed_trial_count
    if failed is not None and failed > max_trials:
        c.error(
            ("spec", "maxFailedTrialCount"),
            f"maxFailedTrialCount ({failed}) is greater than maxTrialCount ({max_trials})",
            f"set maxFailedTrialCount to at most {max_trials}",
        )
    parallel = exp.parallel_trial_count
    if parallel > max_trials:
        given = "parallelTrialCount" in c.spec
        c.error(
            ("spec", "parallelTrialCount") if given else ("spec", "maxTrialCount"),
            f"parallelTrialCount ({parallel}{'' if given else ', the default'}) is greater than maxTrialCount "
            f"({max_trials})",
            f"set parallelTrialCount to at most {max_trials}",
        )


@rule(
    "webhook.parameters-or-nas",
    "validator.go: ValidateExperiment (parameters / nasConfig)",
    "exactly one of spec.parameters and spec.nasConfig",
)
def check_parameters_or_nas(c: Check) -> None:
    params, nas = c.spec.get("parameters"), c.spec.get("nasConfig")
    if not params and nas is None:
        c.error(
            ("spec",),
            "spec.parameters or spec.nasConfig must be specified",
            "add spec.parameters: the search space (name, parameterType, feasibleSpace)",
        )
    if params and nas is not None:
        c.error(
            ("spec", "nasConfig"),
            "only one of spec.parameters and spec.nasConfig can be specified",
            "remove spec.nasConfig for hyperparameter tuning, or spec.parameters for NAS",
        )


@rule(
    "webhook.objective",
    "validator.go: validateObjective",
    "objective present; type minimize|maximize; objectiveMetricName set; not repeated in additionalMetricNames",
)
def check_objective(c: Check) -> None:
    obj = c.spec.get("objective")
    if not isinstance(obj, dict):
        c.error(
            ("spec", "objective"),
            "spec.objective must be specified",
            "add spec.objective with type (minimize|maximize) and objectiveMetricName, e.g. eval_f1",
        )
        return
    otype = obj.get("type")
    if otype not in ("minimize", "maximize"):
        c.error(
            ("spec", "objective", "type"),
            f"objective type {otype!r} must be minimize or maximize",
            "set type: maximize (F1, accuracy) or type: minimize (loss, perplexity)",
        )
    metric = obj.get("objectiveMetricName")
    if not metric:
        c.error(
            ("spec", "objective", "objectiveMetricName"),
            "objectiveMetricName must be specified",
            "name the metric the trial prints, e.g. objectiveMetricName: eval_f1",
        )
    extra = obj.get("additionalMetricNames")
    if metric and isinstance(extra, list) and metric in extra:
        c.error(
            ("spec", "objective", "additionalMetricNames", extra.index(metric)),
            f"additionalMetricNames must not contain the objective metric {metric!r}",
            f"remove {metric!r} from additionalMetricNames",
        )


def _algorithm_name_rule(c: Check, key: str, known: tuple[str, ...], what: str, required: bool) -> None:
    spec = c.spec.get(key)
    if spec is None:
        if required:
            c.error(
                ("spec", key),
                f"spec.{key} must be specified",
                f"add spec.{key}.algorithmName, one of: {', '.join(known)}",
            )
        return
    if not isinstance(spec, dict):
        return  # webhook.decode reports it
    name = spec.get("algorithmName")
    if not name:
        c.error(
            ("spec", key, "algorithmName"),
            "algorithmName must be specified",
            f"set algorithmName to one of: {', '.join(known)}",
        )
    elif isinstance(name, str) and name not in known:
        c.error(
            ("spec", key, "algorithmName"),
            f"{what} {name!r} is not registered in katib-config ({c.options.katib_config.source})",
            f"use one of: {', '.join(known)} (or register it in katib-config and pass --katib-config)",
        )


@rule(
    "webhook.algorithm",
    "validator.go: validateAlgorithm (GetSuggestionConfigData)",
    "algorithm present; algorithmName set and registered in katib-config (+ kftune's asha, bohb)",
)
def check_algorithm(c: Check) -> None:
    _algorithm_name_rule(c, "algorithm", c.options.katib_config.suggestions, "algorithm", required=True)


@rule(
    "webhook.early-stopping",
    "validator.go: validateEarlyStopping (GetEarlyStoppingConfigData)",
    "earlyStopping.algorithmName set and registered in katib-config (medianstop)",
)
def check_early_stopping(c: Check) -> None:
    _algorithm_name_rule(
        c, "earlyStopping", c.options.katib_config.early_stoppings, "early stopping algorithm", required=False
    )


@rule(
    "webhook.resume-policy",
    "validator.go: validateResumePolicy",
    "resumePolicy is Never, LongRunning or FromVolume",
)
def check_resume_policy(c: Check) -> None:
    policy = c.spec.get("resumePolicy")
    if isinstance(policy, str) and policy not in ("", "Never", "LongRunning", "FromVolume"):
        c.error(
            ("spec", "resumePolicy"),
            f"invalid resumePolicy {policy!r}",
            "use Never (default), LongRunning or FromVolume",
        )


_TYPES = ("int", "double", "categorical", "discrete", "unknown")
_DISTRIBUTIONS = ("uniform", "logUniform", "normal", "logNormal", "unknown")


@rule(
    "webhook.parameters",
    "validator.go: validateParameters",
    "parameterType and distribution are known; feasibleSpace set; int/double: min and max, no list; "
    "categorical/discrete: no min/max/step",
)
def check_parameters(c: Check) -> None:
    params = c.spec.get("parameters")
    if not isinstance(params, list):
        return
    for i, p in enumerate(params):
        if not isinstance(p, dict):
            continue
        at = ("spec", "parameters", i)
        ptype = p.get("parameterType")
        if ptype not in _TYPES:
            c.error(
                (*at, "parameterType"),
                f"parameterType {ptype!r} is not supported",
                "use int, double, categorical or discrete",
            )
        fs = p.get("feasibleSpace")
        fs = fs if isinstance(fs, dict) else {}
        dist = fs.get("distribution")
        if dist and dist not in _DISTRIBUTIONS:
            c.error(
                (*at, "feasibleSpace", "distribution"),
                f"distribution {dist!r} is not supported",
                "use uniform, logUniform, normal or logNormal",
            )
        # Katib's "feasibleSpace must be specified" compares with an empty FeasibleSpace, which the
        # defaulter (distribution: uniform) makes unreachable; kftune checks it anyway.
        if not any(fs.get(k) for k in ("max", "min", "list", "step")):
            c.error(
                (*at, "feasibleSpace"),
                "feasibleSpace must be specified (min/max for int and double, "
                "list for categorical and discrete)",
                'add feasibleSpace: {min: "...", max: "..."} or feasibleSpace: {list: [...]}',
            )
            continue
        if ptype in ("int", "double"):
            if fs.get("list"):
                c.error(
                    (*at, "feasibleSpace", "list"),
                    f"feasibleSpace.list is not supported for parameterType {ptype}",
                    "use min/max (and step), or make the parameter categorical/discrete",
                )
            if not fs.get("max") or not fs.get("min"):
                c.error(
                    (*at, "feasibleSpace", "max"),
                    f"feasibleSpace.max or feasibleSpace.min must be specified for parameterType {ptype}",
                    'give both bounds as strings, e.g. min: "0.0" and max: "0.2"',
                )
        elif ptype in ("categorical", "discrete") and any(fs.get(k) for k in ("max", "min", "step")):
            c.error(
                (*at, "feasibleSpace"),
                f"feasibleSpace .max, .min and .step are not supported for parameterType {ptype}",
                "list the values in feasibleSpace.list instead",
            )


def template_text_values(obj: Any) -> Iterator[str]:
    """Every string of a template (keys included): where Katib's placeholders can appear."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, list):
        for x in obj:
            yield from template_text_values(x)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from template_text_values(v)


def placeholders(obj: Any) -> list[str]:
    """Names used as ``${trialParameters.<name>}`` in a template, in order, without repeats."""
    seen: dict[str, None] = {}
    for text in template_text_values(obj):
        for m in PARAM_PLACEHOLDER.finditer(text):
            seen.setdefault(m.group(1), None)
    return list(seen)


def is_meta_reference(reference: str) -> bool:
    """validator.go isMetaKey: ``${trialSpec.Name}``, ``${trialSpec.Labels[key]}``..."""
    m = META_REFERENCE.search(reference)
    if not m:
        return False
    key = m.group(1)
    if key in META_KEYS:
        return True
    sub = META_INDEXED.search(key)
    return bool(sub) and sub.group(1) in META_KEYS


@rule(
    "webhook.trial-template",
    "validator.go: validateTrialTemplate",
    "trialTemplate present; primaryContainerName; success/failureCondition (after defaults); trialParameters "
    "present; exactly one of trialSpec and configMap; configMap name, namespace and templatePath",
)
def check_trial_template(c: Check) -> None:
    tt = c.spec.get("trialTemplate")
    at = ("spec", "trialTemplate")
    if not isinstance(tt, dict):
        c.error(
            at,
            "spec.trialTemplate must be specified",
            "add spec.trialTemplate with primaryContainerName, trialParameters and trialSpec (a Job)",
        )
        return
    template = c.exp.trial_template
    if not tt.get("primaryContainerName"):
        c.error(
            (*at, "primaryContainerName"),
            "primaryContainerName must be specified",
            "name the container that runs the training code (and prints the metrics)",
        )
    if not template.success_condition or not template.failure_condition:
        c.error(
            at,
            f"successCondition and failureCondition must be specified (Katib sets them only for Job and "
            f"Kubeflow training jobs; this trial kind is {template.kind or 'unknown'!r})",
            "add successCondition/failureCondition, GJSON on the job status, e.g. "
            'status.conditions.#(type=="Complete")#|#(status=="True")#',
        )
    if tt.get("trialParameters") is None:
        c.error(
            (*at, "trialParameters"),
            "trialParameters must be specified",
            "list one trialParameter (name, reference) per value the template substitutes",
        )
    spec, cm = tt.get("trialSpec"), tt.get("configMap")
    if spec is None and cm is None:
        c.error(
            at,
            "spec.trialTemplate.trialSpec or spec.trialTemplate.configMap must be specified",
            "put the trial job under trialSpec",
        )
    elif spec is not None and cm is not None:
        c.error(
            at,
            "only one of spec.trialTemplate.trialSpec or spec.trialTemplate.configMap can be specified",
            "remove one of them",
        )
    elif isinstance(cm, dict) and not all(
        cm.get(k) for k in ("configMapName", "configMapNamespace", "templatePath")
    ):
        c.error(
            (*at, "configMap"),
            "configMapName, configMapNamespace and templatePath must be specified",
            "fill in all three fields of configMap",
        )


@rule(
    "webhook.trial-parameters",
    "validator.go: validateTrialTemplate (trialParameters loop)",
    "trialParameters have a name (no braces) and a reference; names and references unique; a reference names "
    "a spec.parameters entry or trial metadata (${trialSpec.Name}, Labels[k]...)",
)
def check_trial_parameters(c: Check) -> None:
    tps = (
        (c.spec.get("trialTemplate") or {}).get("trialParameters")
        if isinstance(c.spec.get("trialTemplate"), dict)
        else None
    )
    if not isinstance(tps, list):
        return
    param_names = {p.get("name") for p in c.spec.get("parameters") or [] if isinstance(p, dict)}
    names: set[str] = set()
    refs: set[str] = set()
    for i, tp in enumerate(tps):
        if not isinstance(tp, dict):
            continue
        at = ("spec", "trialTemplate", "trialParameters", i)
        name, ref = tp.get("name"), tp.get("reference")
        if not name or not ref or not isinstance(name, str) or "{" in name or "}" in name:
            c.error(
                at,
                "name and reference must be specified and name must not contain '{' or '}'",
                "give each trialParameter a plain name (e.g. learningRate) and a reference (e.g. learning_rate)",
            )
            continue
        if name in names:
            c.error(
                (*at, "name"),
                f"trialParameter name {name!r} is duplicated",
                "give each trialParameter its own name",
            )
            continue
        if ref in refs:
            c.error(
                (*at, "reference"),
                f"trialParameter reference {ref!r} is duplicated",
                "reference each parameter once and reuse its placeholder in the template",
            )
            continue
        names.add(name)
        refs.add(ref)
        # Katib checks references only when spec.parameters is not empty.
        if param_names and not is_meta_reference(str(ref)) and ref not in param_names:
            c.error(
                (*at, "reference"),
                f"reference {ref!r} names no spec.parameters entry "
                f"(parameters: {', '.join(sorted(map(str, param_names)))})",
                "fix the reference, or use trial metadata: ${trialSpec.Name}, ${trialSpec.Namespace}, "
                "${trialSpec.Kind}, ${trialSpec.APIVersion}, ${trialSpec.Labels[key]}, ${trialSpec.Annotations[key]}",
            )


@rule(
    "webhook.placeholders",
    "validator.go: validateTrialTemplate (substitution checks)",
    "every trialParameter appears as ${trialParameters.<name>} in the template and every placeholder has a "
    "trialParameter",
)
def check_placeholders(c: Check) -> None:
    tt = c.spec.get("trialTemplate")
    if not isinstance(tt, dict) or not isinstance(tt.get("trialSpec"), dict):
        return
    used = placeholders(tt["trialSpec"])
    tps = tt.get("trialParameters") if isinstance(tt.get("trialParameters"), list) else []
    declared = [tp.get("name") for tp in tps if isinstance(tp, dict)]
    for i, name in enumerate(declared):
        if isinstance(name, str) and name and name not in used:
            c.error(
                ("spec", "trialTemplate", "trialParameters", i, "name"),
                f"trialParameter {name!r} is not used in spec.trialTemplate.trialSpec",
                f"use ${{trialParameters.{name}}} in the template (e.g. in the container args) or remove it",
            )
    for name in used:
        if name not in declared:
            c.error(
                ("spec", "trialTemplate", "trialSpec"),
                f"${{trialParameters.{name}}} in the template has no trialParameter named {name!r}",
                f"add a trialParameter {{name: {name}, reference: <parameter name>}} or fix the placeholder",
            )


@rule(
    "webhook.trial-spec",
    "validator.go: validateTrialTemplate (after substitution)",
    "the trial spec has apiVersion and kind and no metadata.name / metadata.namespace",
)
def check_trial_spec(c: Check) -> None:
    tt = c.spec.get("trialTemplate")
    spec = tt.get("trialSpec") if isinstance(tt, dict) else None
    if not isinstance(spec, dict):
        return
    at = ("spec", "trialTemplate", "trialSpec")
    rendered = substitute(spec, {n: "test-value" for n in placeholders(spec)})
    meta = rendered.get("metadata") if isinstance(rendered.get("metadata"), dict) else {}
    for key in ("name", "namespace"):
        if meta.get(key):
            c.error(
                (*at, "metadata", key),
                "metadata.name and metadata.namespace in spec.trialTemplate must be "
                "omitted (Katib names the job after the trial)",
                f"remove metadata.{key}",
            )
    if not rendered.get("apiVersion") or not rendered.get("kind"):
        c.error(
            at,
            "APIVersion and Kind in spec.trialTemplate must be specified",
            "set apiVersion: batch/v1 and kind: Job (or a Kubeflow training job)",
        )


@rule(
    "webhook.job",
    "validator.go: validateTrialJob / validatePatchJob",
    "a batch/v1 Job template converts to Kubernetes' Job type without dropping fields (checked with the "
    "Kubernetes JSON schema when kubernetes-validate is installed)",
)
def check_job(c: Check) -> None:
    from kftune.katib.k8s_schema import schema_errors

    tt = c.spec.get("trialTemplate")
    spec = tt.get("trialSpec") if isinstance(tt, dict) else None
    if not isinstance(spec, dict) or spec.get("apiVersion") != "batch/v1" or spec.get("kind") != "Job":
        return
    rendered = substitute(spec, {n: "test-value" for n in placeholders(spec)})
    at = ("spec", "trialTemplate", "trialSpec")
    for sub, message in schema_errors(rendered, "Job", c.options.kube_version):
        c.error(
            (*at, *sub),
            f"invalid Job template: {message}",
            "fix the field (Katib converts the template to a batch/v1 Job and rejects fields it would drop)",
        )


_COLLECTOR_KINDS = ("StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "Push")
_AUTO_INJECT = ("StdOut", "TensorFlowEvent", "File", "PrometheusMetric")


def _is_abs(path: Any) -> bool:
    return isinstance(path, str) and path.startswith("/")


@rule(
    "webhook.metrics-collector",
    "validator.go: validateMetricsCollector",
    "collector kind known and (for injected kinds) in katib-config; File: absolute file path, format TEXT|JSON, "
    "no filter with JSON; TensorFlowEvent: absolute directory, no format; Prometheus: port > 0, path /...; "
    "Custom: customCollector set, absolute path of kind File|Directory",
)
def check_metrics_collector(c: Check) -> None:
    mcs = c.spec.get("metricsCollectorSpec")
    if mcs is not None and not isinstance(mcs, dict):
        return
    mc = c.exp.metrics_collector
    at = ("spec", "metricsCollectorSpec")
    kind = mc.kind
    if kind not in _COLLECTOR_KINDS:
        c.error(
            (*at, "collector", "kind"),
            f"invalid metrics collector kind {kind!r}",
            f"use one of {', '.join(_COLLECTOR_KINDS)} (StdOut for kftune's trainer)",
        )
        return
    if kind in _AUTO_INJECT and kind not in c.options.katib_config.metrics_collectors:
        c.error(
            (*at, "collector", "kind"),
            f"metrics collector {kind!r} is not configured in katib-config "
            f"({c.options.katib_config.source}): GetMetricsCollectorConfigData fails",
            f"use one of {', '.join(c.options.katib_config.metrics_collectors)} or add {kind} to katib-config",
        )
    src = (*at, "source")
    fsp = mc.file_system_path or {}
    if kind == "File":
        if fsp.get("kind") != "File" or not _is_abs(fsp.get("path")):
            c.error(
                (*src, "fileSystemPath", "path"),
                "the File collector needs fileSystemPath.kind File and an "
                f"absolute path (got kind {fsp.get('kind')!r}, path {fsp.get('path')!r})",
                "set fileSystemPath: {kind: File, path: /var/log/katib/metrics.log, format: TEXT}",
            )
        if fsp.get("format") not in ("TEXT", "JSON"):
            c.error(
                (*src, "fileSystemPath", "format"),
                "format of the metrics file must be TEXT or JSON",
                "set format: TEXT",
            )
        if fsp.get("format") == "JSON" and mc.metrics_format:
            c.error(
                (*src, "filter"),
                "filter must be empty when the metrics file format is JSON",
                "remove source.filter, or use format: TEXT",
            )
    elif kind == "TensorFlowEvent":
        if fsp.get("kind") != "Directory" or not _is_abs(fsp.get("path")):
            c.error(
                src,
                "the TensorFlowEvent collector needs fileSystemPath.kind Directory and an absolute path",
                "set fileSystemPath: {kind: Directory, path: /var/log/katib/tfevent/}",
            )
        if fsp.get("format"):
            c.error(
                (*src, "fileSystemPath", "format"),
                "format must be empty for TensorFlowEvent",
                "remove format",
            )
    elif kind == "PrometheusMetric":
        http = mc.http_get or {}
        port = http.get("port")
        try:
            port_ok = int(str(port)) > 0
        except ValueError:
            port_ok = False
        if not port_ok:
            c.error((*src, "httpGet", "port"), f"port {port!r} must be a positive integer", "set port: 8080")
        if not str(http.get("path") or "").startswith("/"):
            c.error(
                (*src, "httpGet", "path"),
                f"path {http.get('path')!r} must start with /",
                "set path: /metrics",
            )
    elif kind == "Custom":
        if mc.custom_collector is None:
            c.error(
                (*at, "collector", "customCollector"),
                "the Custom collector needs collector.customCollector",
                "add the collector container under collector.customCollector",
            )
        if mc.file_system_path is not None and (
            not _is_abs(fsp.get("path")) or fsp.get("kind") not in ("Directory", "File")
        ):
            c.error(
                (*src, "fileSystemPath"),
                "source.fileSystemPath needs an absolute path and kind File or Directory",
                "fix fileSystemPath.path and fileSystemPath.kind",
            )


# Constructs Python's re accepts and Go's RE2 rejects (lookaround, backreferences, atomic groups,
# possessive quantifiers, conditionals).
_NOT_RE2 = re.compile(r"\(\?[=!]|\(\?<[=!]|\\[1-9]|\(\?>|[*+?}]\+|\(\?\(|\(\?P=")
_TWO_GROUPS = re.compile(r".*\(.*\).*\(.*\).*")


@rule(
    "webhook.filter",
    "validator.go: validateMetricsCollector (filter)",
    "each metricsFormat compiles as a Go (RE2) regexp and has two subexpressions (name, value)",
)
def check_filter(c: Check) -> None:
    formats = _get_formats(c)
    for i, fmt in formats:
        at = ("spec", "metricsCollectorSpec", "source", "filter", "metricsFormat", i)
        try:
            re.compile(fmt)
            bad = _NOT_RE2.search(fmt)
            if bad:
                raise re.error(f"{bad.group(0)!r} is not supported by Go's RE2 regexp syntax")
        except re.error as exc:
            c.error(at, f"invalid filter {fmt!r}: {exc}", "write a Go RE2 regular expression with two groups")
            continue
        if not _TWO_GROUPS.match(fmt):
            c.error(
                at,
                f"filter {fmt!r} needs two top subexpressions (metric name, then value)",
                r"e.g. ([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)",
            )


def _get_formats(c: Check) -> list[tuple[int, str]]:
    mcs = c.spec.get("metricsCollectorSpec")
    formats = None
    if (
        isinstance(mcs, dict)
        and isinstance(mcs.get("source"), dict)
        and isinstance(mcs["source"].get("filter"), dict)
    ):
        formats = mcs["source"]["filter"].get("metricsFormat")
    return [(i, f) for i, f in enumerate(formats) if isinstance(f, str)] if isinstance(formats, list) else []


def is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
