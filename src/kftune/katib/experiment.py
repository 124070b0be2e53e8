"""Katib ``Experiment`` files as Python objects: load, read typed fields, render trials.

``load_documents(path)`` reads a file or a directory of YAML files (multi-document files
included) with kubectl's scalar typing (:mod:`kftune.katib.kubeyaml`); every document keeps its
file, index and node line numbers. ``Experiment`` wraps one ``kind: Experiment`` document: the raw
dict plus typed accessors with Katib's defaults applied (``experiment_defaults.go``: 3 parallel
trials, ``Never`` resume policy, the StdOut collector, success/failure conditions of Jobs and
Kubeflow training jobs, the metric strategy of each metric).

``Experiment.render_trial`` does what Katib's trial generator does
(``pkg/controller.v1beta1/experiment/manifest/generator.go``, ``applyParameters``): each
``trialParameters[i]`` takes its value from the suggestion's assignment named by its
``reference``, or, when the reference is ``${trialSpec.<Key>}``, from the trial's metadata:
``Name``, ``Namespace`` (the trial's), ``Kind``, ``APIVersion``, ``Labels[key]`` and
``Annotations[key]`` (the last four read from the trial *template*: its ``kind``, ``apiVersion``
and ``metadata.labels`` / ``metadata.annotations``, not the Trial object's labels). Then every
``${trialParameters.<name>}`` placeholder is replaced. Katib does that by text substitution in the
template's JSON; here it is done on the parsed object, string by string, so a value stays one
string (``1; rm -rf ~`` is one argv element, never a shell command).

``TrialCommand`` is what a local runner needs from a rendered trial: the primary container's
``command + args`` with Kubernetes ``$(VAR)`` references expanded from the container's ``env``
(including downward-API ``fieldRef`` values such as ``metadata.labels['kftune.io/parent-trial']``),
its environment, working directory and image. ``Experiment.trial_argv`` does both steps.

On a cluster, with the StdOut, File or TensorFlowEvent collector, Katib's pod webhook runs the
primary container as ``sh -c "<command and args joined by spaces> 1>/var/log/katib/metrics.log
2>&1 && ..."`` (``wrapWorkerContainer``): arguments are not quoted, stderr joins stdout, and an
empty argument disappears. The validator (``extra.shell-wrap``) rejects templates whose arguments
would not survive that, so that the argv list built here is what the trainer sees on the cluster too.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kftune.errors import UserError
from kftune.katib.kubeyaml import Document, YamlProblem, parse_documents, yaml_files

API_VERSION = "kubeflow.org/v1beta1"

# pkg/controller.v1beta1/consts/const.go
PARAM_PLACEHOLDER = re.compile(r"\$\{trialParameters\.(.+?)\}")  # TrialTemplateParamReplaceFormatRegex
META_REFERENCE = re.compile(r"\$\{trialSpec\.(.+?)\}")  # TrialTemplateMetaReplaceFormatRegex
META_INDEXED = re.compile(r"(.+)\[(.+)]")  # TrialTemplateMetaParseFormatRegex
META_KEYS = ("Name", "Namespace", "Kind", "APIVersion", "Annotations", "Labels")

# pkg/apis/controller/experiments/v1beta1/constants.go
DEFAULT_PARALLEL_TRIAL_COUNT = 3
DEFAULT_RESUME_POLICY = "Never"
JOB_SUCCESS = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
JOB_FAILURE = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
KUBEFLOW_JOB_SUCCESS = 'status.conditions.#(type=="Succeeded")#|#(status=="True")#'
KUBEFLOW_JOB_FAILURE = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
TRAINJOB_SUCCESS = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
TRAINJOB_FAILURE = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
KUBEFLOW_JOB_KINDS = ("TFJob", "PyTorchJob", "XGBoostJob", "MPIJob", "TrainJob")
KUBEFLOW_PRIMARY_POD_LABELS = {"training.kubeflow.org/job-role": "master"}
TRAINJOB_PRIMARY_POD_LABELS = {
    "jobset.sigs.k8s.io/replicatedjob-name": "node",
    "batch.kubernetes.io/job-completion-index": "0",
}


def _get(obj: Any, *keys: str | int, default: Any = None) -> Any:
    """obj[k1][k2]... or ``default`` when a step is missing or of the wrong type."""
    for key in keys:
        if isinstance(key, int):
            if not isinstance(obj, list) or not -len(obj) <= key < len(obj):
                return default
        elif not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return default if obj is None else obj


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


# --------------------------------------------------------------------------------------------
# Typed views


@dataclass(frozen=True)
class Objective:
    type: str
    goal: float | None
    objective_metric_name: str
    additional_metric_names: tuple[str, ...]
    metric_strategies: dict[str, str]  # metric -> min|max|latest (Katib's defaults filled in)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Objective first, then the additional metrics (the order Katib's collector uses)."""
        return (self.objective_metric_name, *self.additional_metric_names)


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str
    settings: dict[str, str]  # values as written (Katib passes strings)


@dataclass(frozen=True)
class TrialParameter:
    name: str
    reference: str
    description: str = ""

    @property
    def meta_key(self) -> str | None:
        """``Name``/``Labels[k]``... when the reference is ``${trialSpec.<key>}``, else None."""
        m = META_REFERENCE.search(self.reference)
        return m.group(1) if m else None


@dataclass(frozen=True)
class TrialTemplate:
    primary_container_name: str
    trial_parameters: tuple[TrialParameter, ...]
    trial_spec: dict[str, Any] | None
    config_map: dict[str, Any] | None
    success_condition: str
    failure_condition: str
    primary_pod_labels: dict[str, str]
    retain: bool

    @property
    def kind(self) -> str:
        return _str(_get(self.trial_spec, "kind"))

    @property
    def api_version(self) -> str:
        return _str(_get(self.trial_spec, "apiVersion"))


@dataclass(frozen=True)
class MetricsCollector:
    kind: str  # StdOut, File, TensorFlowEvent, PrometheusMetric, Custom, Push
    file_system_path: dict[str, Any] | None  # {path, kind, format}
    metrics_format: tuple[str, ...]  # source.filter.metricsFormat (empty: Katib's default filter)
    http_get: dict[str, Any] | None
    custom_collector: dict[str, Any] | None

    @property
    def path(self) -> str:
        return _str(_get(self.file_system_path, "path"))

    @property
    def path_kind(self) -> str:
        return _str(_get(self.file_system_path, "kind"))

    @property
    def file_format(self) -> str:
        return _str(_get(self.file_system_path, "format"))


@dataclass
class Experiment:
    """One ``kind: Experiment`` document."""

    raw: dict[str, Any]
    document: Document | None = None

    # -- where it came from
    @property
    def path(self) -> Path | None:
        return self.document.path if self.document else None

    def line_of(self, *ypath: str | int) -> int | None:
        return self.document.line_of(ypath) if self.document else None

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.raw.get("spec")
        return spec if isinstance(spec, dict) else {}

    # -- metadata
    @property
    def name(self) -> str:
        return _str(_get(self.raw, "metadata", "name"))

    @property
    def namespace(self) -> str | None:
        return _get(self.raw, "metadata", "namespace") or None

    # -- counts and policy (Katib defaults applied)
    @property
    def parallel_trial_count(self) -> int:
        value = _int(self.spec.get("parallelTrialCount"))
        return DEFAULT_PARALLEL_TRIAL_COUNT if value is None else value

    @property
    def max_trial_count(self) -> int | None:
        return _int(self.spec.get("maxTrialCount"))

    @property
    def max_failed_trial_count(self) -> int | None:
        return _int(self.spec.get("maxFailedTrialCount"))

    @property
    def resume_policy(self) -> str:
        return _str(self.spec.get("resumePolicy")) or DEFAULT_RESUME_POLICY

    @property
    def parameters(self) -> list[dict[str, Any]]:
        params = self.spec.get("parameters")
        return [p for p in params if isinstance(p, dict)] if isinstance(params, list) else []

    @property
    def parameter_names(self) -> list[str]:
        return [_str(p.get("name")) for p in self.parameters]

    # -- objective / algorithm
    @property
    def objective(self) -> Objective:
        obj = _get(self.spec, "objective", default={})
        obj = obj if isinstance(obj, dict) else {}
        otype = _str(obj.get("type"))
        metric = _str(obj.get("objectiveMetricName"))
        extra = tuple(m for m in _get(obj, "additionalMetricNames", default=[]) if isinstance(m, str))
        goal = obj.get("goal")
        goal = float(goal) if isinstance(goal, int | float) and not isinstance(goal, bool) else None
        # experiment_defaults.go setDefaultObjective
        given = {
            _str(s.get("name")): _str(s.get("value"))
            for s in _get(obj, "metricStrategies", default=[])
            if isinstance(s, dict)
        }
        default = {"minimize": "min", "maximize": "max"}.get(otype, "latest")
        strategies = {name: given.get(name) or default for name in (metric, *extra)}
        for name, value in given.items():
            strategies.setdefault(name, value)
        return Objective(otype, goal, metric, extra, strategies)

    @staticmethod
    def _algorithm(spec: Any) -> AlgorithmSpec | None:
        if not isinstance(spec, dict):
            return None
        settings = {}
        for s in _get(spec, "algorithmSettings", default=[]):
            if isinstance(s, dict):
                value = s.get("value")
                settings[_str(s.get("name"))] = "" if value is None else str(value)
        return AlgorithmSpec(_str(spec.get("algorithmName")), settings)

    @property
    def algorithm(self) -> AlgorithmSpec:
        return self._algorithm(self.spec.get("algorithm")) or AlgorithmSpec("", {})

    @property
    def early_stopping(self) -> AlgorithmSpec | None:
        return self._algorithm(self.spec.get("earlyStopping"))

    # -- trial template
    @property
    def trial_template(self) -> TrialTemplate:
        tt = _get(self.spec, "trialTemplate", default={})
        tt = tt if isinstance(tt, dict) else {}
        trial_spec = tt.get("trialSpec") if isinstance(tt.get("trialSpec"), dict) else None
        kind = _str(_get(trial_spec, "kind"))
        success, failure = _str(tt.get("successCondition")), _str(tt.get("failureCondition"))
        labels = tt.get("primaryPodLabels") if isinstance(tt.get("primaryPodLabels"), dict) else {}
        # experiment_defaults.go setDefaultTrialTemplate
        if trial_spec is not None and kind == "Job":
            success, failure = success or JOB_SUCCESS, failure or JOB_FAILURE
        elif trial_spec is not None and kind in KUBEFLOW_JOB_KINDS:
            trainjob = kind == "TrainJob"
            success = success or (TRAINJOB_SUCCESS if trainjob else KUBEFLOW_JOB_SUCCESS)
            failure = failure or (TRAINJOB_FAILURE if trainjob else KUBEFLOW_JOB_FAILURE)
            labels = labels or dict(TRAINJOB_PRIMARY_POD_LABELS if trainjob else KUBEFLOW_PRIMARY_POD_LABELS)
        params = tuple(
            TrialParameter(_str(p.get("name")), _str(p.get("reference")), _str(p.get("description")))
            for p in _get(tt, "trialParameters", default=[])
            if isinstance(p, dict)
        )
        return TrialTemplate(
            primary_container_name=_str(tt.get("primaryContainerName")),
            trial_parameters=params,
            trial_spec=trial_spec,
            config_map=tt.get("configMap") if isinstance(tt.get("configMap"), dict) else None,
            success_condition=success,
            failure_condition=failure,
            primary_pod_labels={str(k): str(v) for k, v in labels.items()},
            retain=tt.get("retain") is True,
        )

    # -- metrics collector
    @property
    def metrics_collector(self) -> MetricsCollector:
        mc = _get(self.spec, "metricsCollectorSpec", default={})
        mc = mc if isinstance(mc, dict) else {}
        kind = _str(_get(mc, "collector", "kind")) or "StdOut"
        source = _get(mc, "source", default={})
        source = source if isinstance(source, dict) else {}
        fsp = source.get("fileSystemPath") if isinstance(source.get("fileSystemPath"), dict) else None
        # experiment_defaults.go setDefaultMetricsCollector
        if kind == "File":
            fsp = {"kind": "File", "path": "/var/log/katib/metrics.log", "format": "TEXT", **(fsp or {})}
        elif kind == "TensorFlowEvent":
            fsp = {"kind": "Directory", "path": "/var/log/katib/tfevent/", **(fsp or {})}
        http = source.get("httpGet") if isinstance(source.get("httpGet"), dict) else None
        if kind == "PrometheusMetric":
            http = {"path": "/metrics", "port": 8080, **(http or {})}
        formats = tuple(f for f in _get(source, "filter", "metricsFormat", default=[]) if isinstance(f, str))
        custom = _get(mc, "collector", "customCollector")
        return MetricsCollector(kind, fsp, formats, http, custom if isinstance(custom, dict) else None)

    # -- trials
    def render_trial(
        self,
        assignments: Mapping[str, Any],
        trial_name: str,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """The trial's job object (``runSpec``) for one suggestion, like Katib's generator.

        ``assignments`` maps ``spec.parameters[*].name`` to the suggested value (Katib passes
        strings; other values are converted with ``str``). Raises ``UserError`` where Katib would
        fail to create the trial.
        """
        tt = self.trial_template
        if tt.trial_spec is None:
            raise UserError(
                f"{self._where('spec', 'trialTemplate')}: no trialSpec to render (configMap "
                "templates need the cluster); put the template in spec.trialTemplate.trialSpec"
            )
        spec = tt.trial_spec
        namespace = namespace if namespace is not None else (self.namespace or "default")
        values: dict[str, str] = {}
        used: set[str] = set()
        for param in tt.trial_parameters:
            key = param.meta_key
            if key is None:
                if param.reference not in assignments:
                    raise UserError(
                        f"{self._where('spec', 'trialTemplate', 'trialParameters')}: trialParameter "
                        f"{param.name!r} references {param.reference!r}, which the assignment lacks "
                        f"(got {sorted(assignments)}); add it to spec.parameters or fix the reference"
                    )
                values[param.name] = str(assignments[param.reference])
                used.add(param.reference)
                continue
            values[param.name] = _meta_value(key, spec, trial_name, namespace, self._where)
        extra = sorted(set(assignments) - used)
        if extra:
            raise UserError(
                f"{self._where('spec', 'trialTemplate', 'trialParameters')}: assignment(s) {extra} are "
                "not referenced by any trialParameter (Katib fails such trials); add trialParameters for them"
            )
        rendered = substitute(copy.deepcopy(spec), values)
        metadata = rendered.setdefault("metadata", {})
        metadata["name"] = trial_name
        metadata["namespace"] = namespace
        return rendered

    def trial_command(
        self,
        rendered: Mapping[str, Any],
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> TrialCommand:
        """The primary container of a rendered trial, as a local process would run it.

        ``labels``/``annotations`` are the pod's extra metadata at run time (Katib copies the
        Trial's labels, e.g. those the suggestion set, onto the pod): they feed downward-API env.
        """
        tt = self.trial_template
        pod = primary_pod_template(rendered, tt.primary_pod_labels)
        if pod is None:
            raise UserError(
                f"{self._where('spec', 'trialTemplate', 'trialSpec')}: no pod template found "
                "(expected spec.template or spec.<replica>ReplicaSpecs.<role>.template)"
            )
        _, template = pod
        container = find_container(template, tt.primary_container_name)
        if container is None:
            raise UserError(
                f"{self._where('spec', 'trialTemplate', 'primaryContainerName')}: no container named "
                f"{tt.primary_container_name!r} in the primary pod template; set primaryContainerName "
                "to one of its containers"
            )
        pod_labels = {**_get(template, "metadata", "labels", default={}), **(labels or {})}
        pod_annotations = {**_get(template, "metadata", "annotations", default={}), **(annotations or {})}
        meta = {
            "name": _str(_get(rendered, "metadata", "name")),
            "namespace": _str(_get(rendered, "metadata", "namespace")),
            "labels": {str(k): str(v) for k, v in pod_labels.items()},
            "annotations": {str(k): str(v) for k, v in pod_annotations.items()},
        }
        env = container_env(container, meta)
        raw_argv = [*(container.get("command") or []), *(container.get("args") or [])]
        argv = [expand_vars(str(a), env) for a in raw_argv]
        working_dir = container.get("workingDir")
        return TrialCommand(
            argv=argv,
            env=env,
            working_dir=expand_vars(working_dir, env) if isinstance(working_dir, str) else None,
            image=_str(container.get("image")),
            container=container,
        )

    def trial_argv(
        self,
        assignments: Mapping[str, Any],
        trial_name: str,
        labels: Mapping[str, str] | None = None,
        namespace: str | None = None,
    ) -> list[str]:
        """The primary container's ``command + args`` for one suggestion (see ``trial_command``)."""
        return self.trial_command(self.render_trial(assignments, trial_name, namespace), labels=labels).argv

    def _where(self, *ypath: str | int) -> str:
        loc = str(self.path) if self.path else f"experiment {self.name or '?'}"
        line = self.line_of(*ypath)
        return f"{loc}:{line}" if line else loc


@dataclass
class TrialCommand:
    argv: list[str]  # command + args, $(VAR) expanded
    env: dict[str, str]  # the container's env as resolved (downward API from the pod metadata)
    working_dir: str | None
    image: str
    container: dict[str, Any] = field(repr=False, default_factory=dict)


# --------------------------------------------------------------------------------------------
# Rendering helpers


def _meta_value(key: str, spec: Mapping[str, Any], trial: str, namespace: str, where: Any) -> str:
    index = None
    if m := META_INDEXED.search(key):
        key, index = m.group(1), m.group(2)
    if key == "Name":
        return trial
    if key == "Namespace":
        return namespace
    if key == "Kind":
        return _str(spec.get("kind"))
    if key == "APIVersion":
        return _str(spec.get("apiVersion"))
    if key in ("Labels", "Annotations") and index is not None:
        table = _get(spec, "metadata", key.lower(), default={})
        if index not in table:
            raise UserError(
                f"{where('spec', 'trialTemplate', 'trialParameters')}: ${{trialSpec.{key}[{index}]}} "
                f"reads spec.trialTemplate.trialSpec.metadata.{key.lower()}, which has no key {index!r}; "
                "Katib fails such trials. Add it there, or read a label the suggestion sets on the pod "
                "through the downward API (env valueFrom.fieldRef)"
            )
        return str(table[index])
    raise UserError(
        f"{where('spec', 'trialTemplate', 'trialParameters')}: illegal trial metadata reference "
        f"${{trialSpec.{key}}}; use one of {', '.join(META_KEYS)}"
    )


def substitute(obj: Any, values: Mapping[str, str]) -> Any:
    """Replace ``${trialParameters.x}`` in every string (keys included) of ``obj``."""

    def repl(m: re.Match[str]) -> str:
        return values.get(m.group(1), m.group(0))

    if isinstance(obj, str):
        return PARAM_PLACEHOLDER.sub(repl, obj)
    if isinstance(obj, list):
        return [substitute(x, values) for x in obj]
    if isinstance(obj, dict):
        return {substitute(k, values): substitute(v, values) for k, v in obj.items()}
    return obj


def pod_templates(obj: Any, ypath: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], dict]]:
    """Every pod template (``{metadata?, spec: {containers: [...]}}``) in a job object, with its path.

    Covers Job (``spec.template``), Kubeflow training jobs (``spec.<x>ReplicaSpecs.<role>.template``)
    and anything else that nests pod templates under a ``template`` key.
    """
    found: list[tuple[tuple[str | int, ...], dict]] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            here = (*ypath, key)
            if (
                key == "template"
                and isinstance(value, dict)
                and isinstance(_get(value, "spec", "containers"), list)
            ):
                found.append((here, value))
            else:
                found.extend(pod_templates(value, here))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found.extend(pod_templates(value, (*ypath, i)))
    return found


_PRIMARY_ROLES = ("master", "chief", "launcher", "node")


def primary_pod_template(
    job: Mapping[str, Any], primary_pod_labels: Mapping[str, str] | None = None
) -> tuple[tuple[str | int, ...], dict] | None:
    """The pod template whose pods Katib treats as the primary pod (where metrics are collected).

    For a Job, its only template. For Kubeflow jobs the operator labels pods with
    ``training.kubeflow.org/job-role: master`` for the Master/Chief/Launcher replica; Katib's
    default ``primaryPodLabels`` select that one.
    """
    templates = pod_templates(job)
    if not templates:
        return None
    if len(templates) == 1:
        return templates[0]
    by_role = {str(p[-2]).lower(): (p, t) for p, t in templates if len(p) >= 2}
    for role in _PRIMARY_ROLES:
        if role in by_role:
            return by_role[role]
    return templates[0]


def find_container(template: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    for c in _get(template, "spec", "containers", default=[]):
        if isinstance(c, dict) and c.get("name") == name:
            return c
    return None


_FIELD_REF = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def container_env(container: Mapping[str, Any], meta: Mapping[str, Any]) -> dict[str, str]:
    """The container's ``env`` as kubelet builds it: in order, ``$(VAR)`` from earlier entries.

    ``valueFrom.fieldRef`` supports ``metadata.name``, ``metadata.namespace`` and
    ``metadata.labels['k']`` / ``metadata.annotations['k']`` (a missing key gives ""). Other sources
    (secrets, config maps, resource fields) cannot be resolved offline and are left out.
    """
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        name = entry["name"]
        if "value" in entry and entry["value"] is not None:
            env[name] = expand_vars(str(entry["value"]), env)
            continue
        ref = _get(entry, "valueFrom", "fieldRef", "fieldPath")
        if not isinstance(ref, str):
            if "valueFrom" not in entry:
                env[name] = ""
            continue
        if ref in ("metadata.name", "metadata.namespace"):
            env[name] = str(meta.get(ref.split(".")[1], ""))
        elif m := _FIELD_REF.match(ref):
            env[name] = str(meta.get(m.group(1), {}).get(m.group(2), ""))
    return env


def expand_vars(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion (third_party/forked/golang/expansion): ``$$`` escapes,
    undefined references stay as written."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = text.find(")", i + 2)
                if close != -1:
                    name = text[i + 2 : close]
                    out.append(env.get(name, f"$({name})"))
                    i = close + 1
                    continue
                out.append("$(")
                i += 2
                continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Loading


def load_documents(target: str | Path) -> list[Document]:
    """All documents of a file, or of every ``*.yaml``/``*.yml`` in a directory.

    An unreadable file yields one document with the problem recorded (so a validator can report
    it and go on); a missing path raises ``UserError``.
    """
    target = Path(target)
    if not target.exists():
        raise UserError(
            f"{target}: no such file or directory; pass a Katib Experiment YAML file or a directory"
        )
    docs: list[Document] = []
    files = yaml_files(target)
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            doc = Document(path=path, index=0, start_line=1)
            doc.problems.append(YamlProblem(None, f"cannot read the file: {exc}"))
            docs.append(doc)
            continue
        docs.extend(parse_documents(text, path))
    return docs


def is_experiment(doc: Document) -> bool:
    return isinstance(doc.data, dict) and doc.data.get("kind") == "Experiment"


def load_experiments(targets: str | Path | Iterable[str | Path]) -> list[Experiment]:
    """Every ``kind: Experiment`` document under the targets (others are ignored).

    Raises ``UserError`` on a YAML syntax error or when nothing is found.
    """
    targets = [targets] if isinstance(targets, str | Path) else list(targets)
    out: list[Experiment] = []
    for target in targets:
        for doc in load_documents(target):
            errors = [p for p in doc.problems if p.severity == "error"]
            if errors:
                line = errors[0].line
                raise UserError(f"{doc.path}{f':{line}' if line else ''}: {errors[0].message}")
            if is_experiment(doc):
                out.append(Experiment(doc.data, doc))
    if not out:
        raise UserError(f"no kind: Experiment document in {', '.join(str(t) for t in targets)}")
    return out


def load_experiment(target: str | Path) -> Experiment:
    """The one Experiment in a file (``UserError`` if there are none or several)."""
    exps = load_experiments(target)
    if len(exps) > 1:
        names = ", ".join(e.name or "?" for e in exps)
        raise UserError(f"{target}: holds {len(exps)} Experiments ({names}); pass a file with one")
    return exps[0]
