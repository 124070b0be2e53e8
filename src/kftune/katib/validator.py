"""``kftune katib validate``: Katib's admission rules and more, offline.

Reads Experiment files (or directories of them) the way kubectl does and reports, for every
document, every problem at once: file and line, YAML path, what is wrong and how to fix it.
Errors are what Katib (or the trial, or the trainer) would reject; warnings are what would run
but quietly go wrong. ``validate_paths`` returns a :class:`Report`; exit code 1 if any error.

Rules, in the order they run (ids as printed after each finding). Each has a valid and an invalid
case in ``tests/katib/test_katib_rules.py``; ``yaml`` and ``document`` are tested in
``tests/katib/test_katib_validate.py``, the two delegated ones in
``tests/katib/test_katib_algorithm_rules.py``. Katib paths are in kubeflow/katib: ``validator.go`` is
``pkg/webhook/v1beta1/experiment/validator/validator.go``, ``validation_webhook.go`` is beside it,
suggestion services are under ``pkg/suggestion/v1beta1/``.

============================  ============================================  ============================================
rule                          derived from                                  checks
============================  ============================================  ============================================
yaml                          kubectl: sigs.k8s.io/yaml (go-yaml v2),       readable file; YAML syntax (with its line);
                              NewYAMLReader                                 duplicate keys (warning)
document                      kubectl / API server                          each document a mapping with a kind;
                                                                            Experiments are kubeflow.org/v1beta1; other
                                                                            kinds skipped (note); no two Experiments
                                                                            with one namespace/name
webhook.decode                validation_webhook.go: Handle                 every field has the Go type Katib decodes it
                              (decoder.Decode into Experiment)              into (min/max/step/list/setting values are
                                                                            strings)
webhook.name                  validator.go: ValidateExperiment              metadata.name starts with a lower-case
                              (namingConvention, len > 40)                  letter and has at most 40 characters
webhook.counts                validator.go: ValidateExperiment (counts)     maxFailedTrialCount >= 0, maxTrialCount > 0,
                                                                            parallelTrialCount > 0
webhook.counts-consistent     validator.go: ValidateExperiment (counts)     maxFailedTrialCount <= maxTrialCount and
                                                                            parallelTrialCount (default 3) <=
                                                                            maxTrialCount
webhook.parameters-or-nas     validator.go: ValidateExperiment (parameters  exactly one of spec.parameters and
                              / nasConfig)                                  spec.nasConfig
webhook.objective             validator.go: validateObjective               objective present; type minimize|maximize;
                                                                            objectiveMetricName set; not repeated in
                                                                            additionalMetricNames
webhook.algorithm             validator.go: validateAlgorithm               algorithm present; algorithmName set and
                              (GetSuggestionConfigData)                     registered in katib-config (+ kftune's asha,
                                                                            bohb)
webhook.early-stopping        validator.go: validateEarlyStopping           earlyStopping.algorithmName set and
                              (GetEarlyStoppingConfigData)                  registered in katib-config (medianstop)
webhook.resume-policy         validator.go: validateResumePolicy            resumePolicy is Never, LongRunning or
                                                                            FromVolume
webhook.parameters            validator.go: validateParameters              parameterType and distribution are known;
                                                                            feasibleSpace set; int/double: min and max,
                                                                            no list; categorical/discrete: no
                                                                            min/max/step
webhook.trial-template        validator.go: validateTrialTemplate           trialTemplate present; primaryContainerName;
                                                                            success/failureCondition (after defaults);
                                                                            trialParameters present; exactly one of
                                                                            trialSpec and configMap; configMap name,
                                                                            namespace and templatePath
webhook.trial-parameters      validator.go: validateTrialTemplate           trialParameters have a name (no braces) and
                              (trialParameters loop)                        a reference; names and references unique; a
                                                                            reference names a spec.parameters entry or
                                                                            trial metadata (${trialSpec.Name},
                                                                            Labels[k]...)
webhook.placeholders          validator.go: validateTrialTemplate           every trialParameter appears as
                              (substitution checks)                         ${trialParameters.<name>} in the template
                                                                            and every placeholder has a trialParameter
webhook.trial-spec            validator.go: validateTrialTemplate (after    the trial spec has apiVersion and kind and
                              substitution)                                 no metadata.name / metadata.namespace
webhook.job                   validator.go: validateTrialJob /              a batch/v1 Job template converts to
                              validatePatchJob                              Kubernetes' Job type without dropping fields
                                                                            (checked with the Kubernetes JSON schema
                                                                            when kubernetes-validate is installed)
webhook.metrics-collector     validator.go: validateMetricsCollector        collector kind known and (for injected
                                                                            kinds) in katib-config; File: absolute file
                                                                            path, format TEXT|JSON, no filter with JSON;
                                                                            TensorFlowEvent: absolute directory, no
                                                                            format; Prometheus: port > 0, path /...;
                                                                            Custom: customCollector set, absolute path
                                                                            of kind File|Directory
webhook.filter                validator.go: validateMetricsCollector        each metricsFormat compiles as a Go (RE2)
                              (filter)                                      regexp and has two subexpressions (name,
                                                                            value)
suggestion.settings           suggestion/v1beta1/*/service.py +             algorithm settings and search space are
                              goptuna/service.go ValidateAlgorithmSettings  accepted by the algorithm's suggestion
                              (via kftune.hpo)                              service (Katib checks them only after
                                                                            admission)
earlystopping.settings        earlystopping/v1beta1/medianstop/service.py   early-stopping settings are accepted
                              ValidateEarlyStoppingSettings (via            (medianstop: min_trials_required > 0,
                              kftune.hpo.earlystop)                         start_step >= 1, no others)
extra.unknown-field           kftune (Katib decodes into Go types and       no field Katib does not know (a typo such as
                              drops unknown fields)                         parallelTrialCounts is silently ignored)
extra.non-finite              kftune (sigs.k8s.io/yaml -> encoding/json)    no .nan/.inf values: kubectl cannot encode
                                                                            them as JSON
extra.name-dns                kftune (API server: DNS-1123 names; Katib     metadata.name is a whole DNS-1035 label:
                              names the suggestion Service                  Katib's own regexp only checks how the name
                              <name>-<algorithm>)                           starts
extra.duplicate-parameter     kftune (goptuna rejects it at run time;       parameter names are unique
                              others overwrite silently)
extra.range                   kftune (suggestion services parse the bounds  min/max/step parse as numbers of the
                              with int()/float() at run time)               parameter's type; min < max (min == max is a
                                                                            constant); step > 0
extra.distribution            kftune (hyperopt takes math.log of the        logUniform/logNormal need min > 0; a
                              bounds; optuna, goptuna, skopt, hyperband,    distribution the algorithm cannot honour is
                              pbt support fewer distributions)              an error (optuna) or a warning (ignored)
extra.list                    kftune (suggestion services pick from the     categorical/discrete lists are non-empty and
                              list; Katib never checks it)                  unique; discrete values are numbers
extra.parameter-unreferenced  kftune (generator.go applyParameters:         every spec.parameters entry is referenced by
                              len(assignments) != nonMetaParamCount fails   a trialParameter
                              every trial)
extra.meta-reference          kftune (generator.go applyParameters reads    ${trialSpec.Labels[k]} /
                              Labels/Annotations from the template)         ${trialSpec.Annotations[k]} name a key of
                                                                            the trialSpec's own metadata
extra.primary-container       kftune (inject_webhook.go: the pod webhook    primaryContainerName names a container of
                              fails without it)                             the primary pod template
extra.trial-kind              kftune (katib-config                          the trial's apiVersion/kind is a trial
                              init.controller.trialResources: the           resource Katib watches
                              controller watches only these)
extra.pod-schema              kftune (training operators prune unknown      pod templates of non-Job trial kinds match
                              fields of their pod templates)                Kubernetes' PodTemplateSpec (needs
                                                                            kubernetes-validate)
extra.image-tag               kftune (docs/contracts.md: images are tagged  every image has a tag other than latest (or
                              by version or git SHA)                        a digest)
extra.istio                   kftune (NOTES: with an Istio sidecar the      trial pod templates carry
                              trial pod never completes)                    sidecar.istio.io/inject: "false"
extra.env-reference           kftune (kubelet leaves an undefined $(VAR)    $(VAR) in command/args/env names an env var
                              as written)                                   of the container (or one Katib / the
                                                                            operator sets)
extra.trainer-env             kftune (kftune.train.watchdog,                KFTUNE_STALL_TIMEOUT_S is seconds >= 0 (0:
                              TrainArgs.gpu_memory_fraction_: the trial     off; under 60 a healthy start can look
                              exits 2 at start)                             stalled) and KFTUNE_GPU_MEMORY_FRACTION a
                                                                            fraction in (0, 1], for a `kftune train`
                                                                            container
extra.trainer-args            kftune (docs/contracts.md: the trainer exits  the `kftune train` argv has the required
                              2 on unknown or malformed arguments)          flags, only known flags, valid choices, and
                                                                            parameters of matching types behind
                                                                            int/float flags
extra.objective-metric        kftune                                        the objective (and additional metrics) are
                              (kftune.train.metric_lines.METRICS_BY_TASK;   printed by the trainer for its --task; the
                              Katib records an unavailable metric)          objective type matches the metric (loss and
                                                                            perplexity are minimised)
extra.metrics-filter          kftune (file-metricscollector.go              the StdOut collector (with its filters)
                              parseLogsInTextFormat on a real metric line)  extracts the objective and additional
                                                                            metrics, with the printed values, from a
                                                                            line the trainer prints (format_epoch_line)
extra.output-dir              kftune (trials running at once must not       --output-dir differs per trial (uses the
                              share a checkpoint directory)                 trial name)
extra.resource-parameter      kftune (asha/bohb settings;                   asha/bohb/hyperband: resource_name names an
                              hyperband/service.py                          int parameter with min >= 1 that feeds
                              ValidateAlgorithmSettings)                    --num-epochs; hyperband: r_l > 0 and
                                                                            parallelTrialCount covers the first bracket
                                                                            (eta^s_max)
extra.metric-strategies       kftune (common_types.go MetricStrategyType;   metricStrategies values are min, max or
                              strategies of other metrics are ignored)      latest, for the objective or an additional
                                                                            metric
extra.pbt                     kftune (pbt/service.py samples min..max by    suggestion_trial_dir is absolute and comes
                              step; inject_webhook.go mounts the            with resumePolicy FromVolume; pbt int/double
                              suggestion PVC, which composer.go /           parameters have a step
                              suggestion_controller.go create only for
                              resumePolicy FromVolume)
extra.shell-wrap              kftune (inject_webhook.go                     every argument of the primary container
                              wrapWorkerContainer: for                      survives that: no empty argument, no
                              StdOut/File/TensorFlowEvent collectors the    argument that is only a $(VAR) that can be
                              primary container runs as sh -c with command  empty, no spaces or shell characters (in
                              and args joined by spaces, unquoted)          literals or in categorical values fed to
                                                                            args)
operator.pytorchjob           training-operator v1.9                        a PyTorchJob trial passes the operator's
                              (pytorchjob_webhook.go, webhooks.go           validating webhook (Master/Worker types,
                              ValidateRunPolicy, the PyTorchJob CRD         Master replicas 1 - the webhook runs before
                              schema: unknown fields are pruned)            defaults -, a container named pytorch with
                                                                            an image, elasticPolicy, managedBy) and has
                                                                            only the CRD's fields with their types
============================  ============================================  ============================================

Not checkable offline (cluster state): the namespace label
``katib.kubeflow.org/metrics-collector-injection: enabled`` (``Handle``), a leftover PV for
``resumePolicy: FromVolume`` (``Handle``), the edit rules for an existing Experiment
(``ValidateExperiment`` with ``oldInst``), and the content of a ``configMap`` trial template.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Importing the rule modules registers their rules (in this order).
from kftune.katib import algorithm_rules, rules_extra, rules_operator, rules_webhook  # noqa: F401
from kftune.katib.experiment import API_VERSION, Experiment, load_documents
from kftune.katib.findings import ERROR, NOTE, RULES, WARNING, Check, Finding, Options, Rule, run_rules
from kftune.katib.katib_config import KatibConfig
from kftune.katib.kubeyaml import Document


@dataclass
class DocumentResult:
    file: str
    index: int
    line: int
    kind: str | None
    name: str | None
    status: str  # checked | skipped | invalid


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    documents: list[DocumentResult] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def errors(self) -> int:
        return self.count(ERROR)

    @property
    def warnings(self) -> int:
        return self.count(WARNING)

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0

    def summary(self) -> dict[str, Any]:
        from kftune.katib.k8s_schema import available

        return {
            "kubernetes_schema_checks": available(),
            "files": len(self.files),
            "documents": len(self.documents),
            "experiments": sum(1 for d in self.documents if d.kind == "Experiment"),
            "skipped": sum(1 for d in self.documents if d.status == "skipped"),
            "errors": self.errors,
            "warnings": self.warnings,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "files": self.files,
            "documents": [vars(d) for d in self.documents],
            "findings": [f.to_dict() for f in self.findings],
        }


_GROUP_ORDER = {"webhook": 0, "suggestion": 1, "earlystopping": 1, "extra": 2}


def rules() -> list[Rule]:
    """All rules: Katib's webhook, then the suggestion services', then kftune's extras."""
    return sorted(RULES.values(), key=lambda r: _GROUP_ORDER.get(r.id.split(".")[0], 3))


def _doc_finding(
    doc: Document, severity: str, rule_id: str, line: int | None, message: str, fix: str, path: str = ""
) -> Finding:
    return Finding(
        severity, str(doc.path), line, path, message.rstrip("."), fix.rstrip("."), rule_id, doc.index
    )


def validate_document(doc: Document, options: Options, report: Report) -> Experiment | None:
    """Check one document, adding to ``report``; returns the Experiment when it is one."""
    for p in doc.problems:
        fix = "fix the YAML at that line" if p.severity == ERROR else "remove the repeated key"
        if "cannot read" in p.message:
            fix = "check the path and permissions"
        report.findings.append(_doc_finding(doc, p.severity, "yaml", p.line, p.message, fix))
    data = doc.data
    result = DocumentResult(str(doc.path), doc.index, doc.start_line, None, None, "invalid")
    report.documents.append(result)
    if any(p.severity == ERROR for p in doc.problems):
        return None
    if not isinstance(data, dict):
        report.findings.append(
            _doc_finding(
                doc,
                ERROR,
                "document",
                doc.start_line,
                f"document {doc.index + 1} is {type(data).__name__ if data is not None else 'empty'}, not a mapping",
                "each YAML document must be a Kubernetes object (a mapping with apiVersion and kind)",
            )
        )
        return None
    kind = data.get("kind")
    result.kind = kind if isinstance(kind, str) else None
    meta = data.get("metadata")
    result.name = meta.get("name") if isinstance(meta, dict) and isinstance(meta.get("name"), str) else None
    if not kind:
        report.findings.append(
            _doc_finding(
                doc,
                ERROR,
                "document",
                doc.line_of(()),
                f"document {doc.index + 1} has no kind",
                "add apiVersion: kubeflow.org/v1beta1 and kind: Experiment",
            )
        )
        return None
    if kind != "Experiment":
        result.status = "skipped"
        report.findings.append(
            _doc_finding(
                doc,
                NOTE,
                "document",
                doc.line_of(()),
                f"skipped {kind}{' ' + result.name if result.name else ''}: not an Experiment",
                "",
            )
        )
        return None
    result.status = "checked"
    if data.get("apiVersion") != API_VERSION:
        report.findings.append(
            _doc_finding(
                doc,
                ERROR,
                "document",
                doc.line_of(("apiVersion",)),
                f"apiVersion {data.get('apiVersion')!r} is not {API_VERSION}",
                f"set apiVersion: {API_VERSION}",
                "apiVersion",
            )
        )
    exp = Experiment(data, doc)
    check = Check(exp, doc, options)
    run_rules(check, rules())
    report.findings.extend(check.findings)
    return exp


def validate_paths(paths: Iterable[str | Path], options: Options | None = None) -> Report:
    """Validate every document of every file (or directory of files) given."""
    options = options or Options(KatibConfig())
    report = Report()
    seen: dict[tuple[str, str], Finding | str] = {}
    for target in paths:
        docs = load_documents(target)
        for path in dict.fromkeys(str(d.path) for d in docs):
            report.files.append(path)
        for doc in docs:
            exp = validate_document(doc, options, report)
            if exp is None or not exp.name:
                continue
            key = (exp.namespace or "", exp.name)
            here = f"{doc.path}:{doc.line_of(('metadata', 'name'))}"
            if key in seen:
                report.findings.append(
                    _doc_finding(
                        doc,
                        ERROR,
                        "document",
                        doc.line_of(("metadata", "name")),
                        f"another Experiment named {exp.name!r} in namespace {exp.namespace or '(current)'} is at "
                        f"{seen[key]}: applying both makes the second an edit of the first, which Katib rejects",
                        "give each Experiment its own name",
                        "metadata.name",
                    )
                )
            else:
                seen[key] = here
    report.findings.sort(key=lambda f: (f.file, f.document if f.document is not None else -1, f.line or 0))
    return report


def format_text(report: Report) -> str:
    """Per file: one line per finding, or ``ok``; then a summary line."""
    by_file: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_file.setdefault(f.file, []).append(f)
    lines: list[str] = []
    for file in report.files:
        findings = by_file.get(file, [])
        lines += [f.format() for f in findings]
        if not any(f.severity == ERROR for f in findings):
            names = [d.name or "?" for d in report.documents if d.file == file and d.status == "checked"]
            lines.append(f"{file}: ok ({', '.join(names)})" if names else f"{file}: no Experiment")
    s = report.summary()
    lines.append(
        f"{s['files']} file(s), {s['documents']} document(s), {s['experiments']} Experiment(s), "
        f"{s['skipped']} skipped: {s['errors']} error(s), {s['warnings']} warning(s)"
        + (
            ""
            if s["kubernetes_schema_checks"]
            else " (Job/pod templates not checked against the Kubernetes schema: install kubernetes-validate)"
        )
    )
    return "\n".join(lines)
