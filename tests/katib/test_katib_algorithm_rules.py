"""Suggestion-service and medianstop settings checks, delegated to kftune.hpo (and, for asha/bohb,
to the service's rule that Katib must be able to fill every request: kftune.katib.service_rules)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from kftune.katib.algorithm_rules import hpo_status, to_problem
from kftune.katib.experiment import Experiment, load_experiment
from kftune.katib.findings import Options
from kftune.katib.katib_config import KatibConfig
from kftune.katib.validator import validate_paths

KATIB = Path(__file__).resolve().parents[2] / "katib"
needs_hpo = pytest.mark.skipif(
    hpo_status() is not None, reason=f"{hpo_status()} (merged from the hpo branch)"
)


def test_validate_does_not_import_torch_or_need_hpo():
    code = (
        "import sys; from kftune.katib.validate_cmd import main; rc = main([sys.argv[1]]); "
        "print('torch' in sys.modules, rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(KATIB)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "False 0"


@needs_hpo
@pytest.mark.parametrize("path", sorted(KATIB.glob("*.yaml")), ids=lambda p: p.name)
def test_katib_files_pass_the_suggestion_checks(path):
    report = validate_paths([path], Options(KatibConfig()))
    assert [f.format() for f in report.findings if f.rule.endswith(".settings")] == []


@needs_hpo
def test_to_problem_builds_from_an_experiment():
    problem = to_problem(load_experiment(KATIB / "ner-asha.yaml"))
    assert problem is not None


def _with(path: str, algorithm: dict | None = None, early: dict | None = None) -> Path:
    exp = load_experiment(KATIB / path)
    data = copy.deepcopy(exp.raw)
    if algorithm is not None:
        data["spec"]["algorithm"] = algorithm
    if early is not None:
        data["spec"]["earlyStopping"] = early
    return Experiment(data, exp.document)


@needs_hpo
@pytest.mark.parametrize(
    ("path", "algorithm", "early", "rule"),
    [
        (
            "ner-tpe-medianstop.yaml",
            {"algorithmName": "tpe", "algorithmSettings": [{"name": "gamma", "value": "1.5"}]},
            None,
            "suggestion.settings",
        ),
        (
            "ner-tpe-medianstop.yaml",
            None,
            {"algorithmName": "medianstop", "algorithmSettings": [{"name": "start_step", "value": "0"}]},
            "earlystopping.settings",
        ),
        (
            "ner-pbt.yaml",
            {
                "algorithmName": "pbt",
                "algorithmSettings": [
                    {"name": "suggestion_trial_dir", "value": "/ckpt"},
                    {"name": "n_population", "value": "3"},
                    {"name": "truncation_threshold", "value": "0.2"},
                ],
            },
            None,
            "suggestion.settings",
        ),
        (
            "ner-asha.yaml",
            {
                "algorithmName": "asha",
                "algorithmSettings": [
                    {"name": "resource_name", "value": "num_epochs"},
                    {"name": "reduction_factor", "value": "1"},
                ],
            },
            None,
            "suggestion.settings",
        ),
        (  # valid on their own, but Katib's exactly-N controller would stall: 12 configs < 110 trials
            "ner-asha.yaml",
            {
                "algorithmName": "asha",
                "algorithmSettings": [
                    {"name": "resource_name", "value": "num_epochs"},
                    {"name": "num_configurations", "value": "12"},
                ],
            },
            None,
            "suggestion.settings",
        ),
    ],
)
def test_bad_settings_are_errors(path, algorithm, early, rule):
    from kftune.katib.findings import Check, run_rules
    from kftune.katib.validator import rules

    exp = _with(path, algorithm, early)
    check = Check(exp, exp.document, Options(KatibConfig()))
    run_rules(check, rules())
    assert [f for f in check.findings if f.rule == rule and f.severity == "error"], [
        f.format() for f in check.findings
    ]
