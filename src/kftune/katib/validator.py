"""``kftune katib validate``: Katib's admission rules and more, offline.

Reads Experiment files (or directories of them) the way kubectl does and reports, for every
document, every problem at once: file and line, YAML path, what is wrong and how to fix it.
Errors are what Katib (or the trial, or the trainer) would reject; warnings are what would run
but quietly go wrong. ``validate_paths`` returns a :class:`Report`; exit code 1 if any error.

Rules (ids as printed after each finding; tests in ``tests/katib/test_validator_rules.py`` unless
noted). Katib sources are in kubeflow/katib; ``validator.go`` is
``pkg/webhook/v1beta1/experiment/validator/validator.go``.

========================  ===========================================================  ==========================
rule                      derived from                                                 what it checks
========================  ===========================================================  ==========================
yaml                      kubectl (sigs.k8s.io/yaml, go-yaml v2; NewYAMLReader)        readable file, YAML syntax
                                                                                        (with line), duplicate keys
document                  kubectl / API server                                         each document is a mapping
                                                                                        with a kind; Experiments are
                                                                                        kubeflow.org/v1beta1; other
                                                                                        kinds are skipped (note);
                                                                                        no two Experiments share a
                                                                                        namespace/name
webhook.decode            validation_webhook.go Handle (decoder.Decode)                Go types: min/max/step/list/
                                                                                        setting values are strings,
                                                                                        counts int32, goal float
webhook.name              validator.go ValidateExperiment (namingConvention, 40)       name starts [a-z], <= 40
webhook.counts            validator.go ValidateExperiment                              maxFailed >= 0, max > 0,
                                                                                        parallel > 0
webhook.counts-consistent validator.go ValidateExperiment                              maxFailed <= max, parallel
                                                                                        (default 3) <= max
webhook.parameters-or-nas validator.go ValidateExperiment                              parameters xor nasConfig
webhook.objective         validator.go validateObjective                               present, type, metric, not
                                                                                        in additionalMetricNames
webhook.algorithm         validator.go validateAlgorithm (GetSuggestionConfigData)     name set and in katib-config
webhook.early-stopping    validator.go validateEarlyStopping                           name set and in katib-config
webhook.resume-policy     validator.go validateResumePolicy                            Never|LongRunning|FromVolume
webhook.parameters        validator.go validateParameters                              type, distribution,
                                                                                        feasibleSpace per type
webhook.trial-template    validator.go validateTrialTemplate                           primaryContainerName,
                                                                                        conditions (after defaults),
                                                                                        trialParameters, one source,
                                                                                        configMap fields
webhook.trial-parameters  validator.go validateTrialTemplate (loop)                    name/reference, unique,
                                                                                        reference exists (isMetaKey)
webhook.placeholders      validator.go validateTrialTemplate (substitution)            trialParameters <->
                                                                                        ${trialParameters.x} both ways
webhook.trial-spec        validator.go validateTrialTemplate (unstructured)            apiVersion/kind; no
                                                                                        metadata.name/namespace
webhook.job               validator.go validateTrialJob / validatePatchJob             batch/v1 Job schema (strict,
                                                                                        kubernetes-validate)
webhook.metrics-collector validator.go validateMetricsCollector                        kind (+katib-config), File/
                                                                                        TFEvent paths & formats,
                                                                                        Prometheus port/path, Custom
webhook.filter            validator.go validateMetricsCollector (filter)               RE2 compiles, 2 groups
suggestion.settings       suggestion/v1beta1/*/service.py ValidateAlgorithmSettings    via kftune.hpo (test_
                          (goptuna: service.go)                                        algorithm_rules.py)
earlystopping.settings    earlystopping/v1beta1/medianstop/service.py                  via kftune.hpo.earlystop
                          ValidateEarlyStoppingSettings                                (test_algorithm_rules.py)
extra.unknown-field       kftune (Go decoding drops unknown fields)                    typos (warning)
extra.non-finite          kftune (encoding/json)                                       no .nan/.inf
extra.name-dns            kftune (API server; Service <name>-<algorithm>)              whole name is a DNS label
extra.duplicate-parameter kftune                                                       unique parameter names
extra.range               kftune (suggestions parse bounds at run time)                numbers, min < max (double),
                                                                                        min == max int (warning),
                                                                                        step > 0
extra.distribution        kftune (hyperopt/optuna/goptuna/skopt search-space code)     log needs min > 0; optuna:
                                                                                        no normal; ignored (warning)
extra.list                kftune                                                       non-empty, unique lists;
                                                                                        discrete values numeric;
                                                                                        no quotes (warning)
extra.parameter-          kftune (generator.go applyParameters)                        each parameter has a
unreferenced                                                                           trialParameter
extra.meta-reference      kftune (generator.go applyParameters)                        Labels[k]/Annotations[k]
                                                                                        exist on the trialSpec
extra.primary-container   kftune (pod webhook inject_webhook.go)                       primaryContainerName exists
extra.trial-kind          kftune (katib-config trialResources; default              kind watched; PyTorchJob has
                          primaryPodLabels job-role: master)                           a Master
extra.pod-schema          kftune (operators prune pod templates)                       PodTemplateSpec schema
extra.image-tag           kftune (docs/contracts.md)                                   no :latest / untagged images
extra.istio               kftune (NOTES)                                               sidecar.istio.io/inject
                                                                                        "false" (warning)
extra.env-reference       kftune (kubelet $(VAR) expansion)                            $(VAR) defined (warning)
extra.trainer-args        kftune (docs/contracts.md, trainer exits 2)                  required/known flags,
                                                                                        choices, parameter types
extra.objective-metric    kftune (metric_lines.METRICS_BY_TASK)                        objective printed for
                                                                                        --task; direction (warning)
extra.metrics-filter      kftune (file-metricscollector.go on format_epoch_line)       StdOut filter extracts the
                                                                                        metrics with their values
extra.output-dir          kftune                                                       --output-dir per trial
                                                                                        (warning)
extra.resource-parameter  kftune (asha/bohb; hyperband/service.py)                     resource param int >= 1 ->
                                                                                        --num-epochs; hyperband r_l,
                                                                                        first bracket, total trials
extra.metric-strategies   kftune (common_types.go)                                     min|max|latest, known metric
========================  ===========================================================  ==========================

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
from kftune.katib import algorithm_rules, rules_extra, rules_webhook  # noqa: F401
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
        return {
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


def rules() -> list[Rule]:
    return list(RULES.values())


def _doc_finding(doc: Document, severity: str, rule_id: str, line: int | None, message: str, fix: str,
                 path: str = "") -> Finding:
    return Finding(severity, str(doc.path), line, path, message.rstrip("."), fix.rstrip("."), rule_id, doc.index)


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
        report.findings.append(_doc_finding(
            doc, ERROR, "document", doc.start_line,
            f"document {doc.index + 1} is {type(data).__name__ if data is not None else 'empty'}, not a mapping",
            "each YAML document must be a Kubernetes object (a mapping with apiVersion and kind)"))
        return None
    kind = data.get("kind")
    result.kind = kind if isinstance(kind, str) else None
    meta = data.get("metadata")
    result.name = meta.get("name") if isinstance(meta, dict) and isinstance(meta.get("name"), str) else None
    if not kind:
        report.findings.append(_doc_finding(
            doc, ERROR, "document", doc.line_of(()), f"document {doc.index + 1} has no kind",
            "add apiVersion: kubeflow.org/v1beta1 and kind: Experiment"))
        return None
    if kind != "Experiment":
        result.status = "skipped"
        report.findings.append(_doc_finding(
            doc, NOTE, "document", doc.line_of(()),
            f"skipped {kind}{' ' + result.name if result.name else ''}: not an Experiment", ""))
        return None
    result.status = "checked"
    if data.get("apiVersion") != API_VERSION:
        report.findings.append(_doc_finding(
            doc, ERROR, "document", doc.line_of(("apiVersion",)),
            f"apiVersion {data.get('apiVersion')!r} is not {API_VERSION}", f"set apiVersion: {API_VERSION}",
            "apiVersion"))
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
                report.findings.append(_doc_finding(
                    doc, ERROR, "document", doc.line_of(("metadata", "name")),
                    f"another Experiment named {exp.name!r} in namespace {exp.namespace or '(current)'} is at "
                    f"{seen[key]}: applying both makes the second an edit of the first, which Katib rejects",
                    "give each Experiment its own name", "metadata.name"))
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
    )
    return "\n".join(lines)
