"""Algorithm-settings checks, delegated to the suggestion code in ``kftune.hpo``.

Katib checks algorithm settings only when the Suggestion starts: each built-in service's
``ValidateAlgorithmSettings`` (``pkg/suggestion/v1beta1/<service>/service.py``, goptuna's
``service.go``) and medianstop's ``ValidateEarlyStoppingSettings``
(``pkg/earlystopping/v1beta1/medianstop/service.py``); a failure there fails the Experiment after it
was admitted. kftune's suggestion algorithms (``kftune.hpo``) carry the same rules (plus those of
``asha`` and ``bohb``) and are the single place they live, so this module only converts an
Experiment into the ``kftune.hpo`` problem and reports what ``validate`` returns.

``kftune.hpo`` is imported lazily: without it the rules report nothing and ``hpo_status()`` says
why; the rest of the validator does not depend on it. The interface used:
``kftune.hpo.Problem.from_katib(spec)``, ``kftune.hpo.get_algorithm(name).validate(problem) ->
list[str]`` (``UserError`` for an unknown name) and ``kftune.hpo.earlystop.validate_<name>(settings)
-> list[str]`` (``validate_medianstop``).
"""

from __future__ import annotations

import importlib
from typing import Any

from kftune.errors import UserError
from kftune.katib.experiment import Experiment
from kftune.katib.findings import Check, rule


def _import(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def hpo_status() -> str | None:
    """None when kftune.hpo is usable here, else why not."""
    hpo = _import("kftune.hpo")
    if hpo is None or not hasattr(hpo, "get_algorithm") or not hasattr(hpo, "Problem"):
        return "kftune.hpo (get_algorithm, Problem) is not available in this installation"
    return None


def to_problem(exp: Experiment) -> Any:
    """The ``kftune.hpo.Problem`` of an Experiment (UserError where it cannot be built)."""
    return importlib.import_module("kftune.hpo").Problem.from_katib(exp.spec)


@rule(
    "suggestion.settings",
    "suggestion/v1beta1/*/service.py + goptuna/service.go ValidateAlgorithmSettings (via kftune.hpo)",
    "algorithm settings and search space are accepted by the algorithm's suggestion service "
    "(Katib checks them only after admission)",
)
def check_algorithm_settings(c: Check) -> None:
    if not c.options.check_algorithm_settings or hpo_status() is not None:
        return
    name = c.exp.algorithm.name
    if not name or name not in c.options.katib_config.suggestions:
        return  # webhook.algorithm reports it
    hpo = importlib.import_module("kftune.hpo")
    try:
        algorithm = hpo.get_algorithm(name)
    except UserError:
        return  # an algorithm kftune does not implement (enas, darts): nothing to check here
    try:
        problem = to_problem(c.exp)
        messages = algorithm.validate(problem)
        if not messages:  # settings fine on their own: can Katib's exactly-N controller stall on them?
            from kftune.katib.service_rules import katib_errors

            messages = katib_errors(problem)
    except UserError as exc:
        c.error(
            ("spec",),
            f"the {name} suggestion service cannot read the experiment: {exc}",
            "fix the field it names",
        )
        return
    for message in messages or []:
        c.error(
            ("spec", "algorithm", "algorithmSettings"),
            f"{name}: {message}",
            "fix the setting (Katib's suggestion service would fail the Experiment after admission)",
        )


@rule(
    "earlystopping.settings",
    "earlystopping/v1beta1/medianstop/service.py ValidateEarlyStoppingSettings (via kftune.hpo.earlystop)",
    "early-stopping settings are accepted (medianstop: min_trials_required > 0, start_step >= 1, no others)",
)
def check_early_stopping_settings(c: Check) -> None:
    es = c.exp.early_stopping
    if es is None or not es.name or not c.options.check_algorithm_settings:
        return
    validate = getattr(_import("kftune.hpo.earlystop"), f"validate_{es.name}", None)
    if validate is None:
        return  # kftune.hpo not merged yet, or an early-stopping algorithm it does not implement
    for message in validate(dict(es.settings)) or []:
        c.error(
            ("spec", "earlyStopping", "algorithmSettings"),
            f"{es.name}: {message}",
            "fix the setting (Katib's early-stopping service would fail the Experiment after admission)",
        )
