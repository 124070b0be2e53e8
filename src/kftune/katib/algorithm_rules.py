"""Algorithm-settings checks, delegated to the suggestion code in ``kftune.hpo``.

Katib checks algorithm settings only when the Suggestion starts: each built-in service's
``ValidateAlgorithmSettings`` (``pkg/suggestion/v1beta1/<service>/service.py``, goptuna's
``service.go``) and medianstop's ``ValidateEarlyStoppingSettings``
(``pkg/earlystopping/v1beta1/medianstop/service.py``); a failure there fails the Experiment after it
was admitted. kftune's suggestion algorithms (``kftune.hpo``) carry the same rules (plus those of
``asha`` and ``bohb``) and are the single place they live, so this module only converts an
Experiment into the ``kftune.hpo`` problem and reports what ``validate`` returns.

``kftune.hpo`` is imported lazily: without it (or with an interface this glue does not know) the
rules report nothing and ``hpo_status()`` says why; the rest of the validator does not depend on it.
The interface used: ``kftune.hpo.get_algorithm(name).validate(problem) -> list[str]``,
``kftune.hpo.base.Problem`` / ``Objective``, ``kftune.hpo.space.SearchSpace.from_katib(parameters)``
and, for early stopping, ``kftune.hpo.earlystop``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any

from kftune.katib.experiment import Experiment
from kftune.katib.findings import Check, rule

_CANDIDATES = {
    # Problem / Objective field name -> value getter (first match wins for each field)
    "space": lambda e, s: s,
    "search_space": lambda e, s: s,
    "parameters": lambda e, s: s,
    "algorithm": lambda e, s: e.algorithm.name,
    "algorithm_name": lambda e, s: e.algorithm.name,
    "name": lambda e, s: e.algorithm.name,
    "settings": lambda e, s: dict(e.algorithm.settings),
    "algorithm_settings": lambda e, s: dict(e.algorithm.settings),
    "parallel_trial_count": lambda e, s: e.parallel_trial_count,
    "max_trial_count": lambda e, s: e.max_trial_count,
    "max_failed_trial_count": lambda e, s: e.max_failed_trial_count,
    "experiment_name": lambda e, s: e.name,
}
_OBJECTIVE = {
    "metric": lambda o: o.objective_metric_name,
    "metric_name": lambda o: o.objective_metric_name,
    "name": lambda o: o.objective_metric_name,
    "objective_metric_name": lambda o: o.objective_metric_name,
    "type": lambda o: o.type,
    "direction": lambda o: o.type,
    "goal": lambda o: o.goal,
    "additional_metric_names": lambda o: list(o.additional_metric_names),
    "additional_metrics": lambda o: list(o.additional_metric_names),
}


def _import(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def hpo_status() -> str | None:
    """None when kftune.hpo is usable here, else why not."""
    hpo = _import("kftune.hpo")
    if hpo is None or not hasattr(hpo, "get_algorithm"):
        return "kftune.hpo (get_algorithm) is not available in this installation"
    if _import("kftune.hpo.base") is None or _import("kftune.hpo.space") is None:
        return "kftune.hpo.base / kftune.hpo.space are not available"
    return None


def _build(cls: type, values: dict[str, Any]) -> Any:
    """Instantiate ``cls`` with the keyword arguments it accepts, taken from ``values``."""
    if dataclasses.is_dataclass(cls):
        names = [f.name for f in dataclasses.fields(cls) if f.init]
    else:
        names = list(inspect.signature(cls).parameters)
    return cls(**{n: values[n] for n in names if n in values})


def to_problem(exp: Experiment) -> Any:
    """The ``kftune.hpo.base.Problem`` for an Experiment."""
    base = importlib.import_module("kftune.hpo.base")
    space_mod = importlib.import_module("kftune.hpo.space")
    space = space_mod.SearchSpace.from_katib(exp.parameters)
    obj = exp.objective
    objective = _build(base.Objective, {k: f(obj) for k, f in _OBJECTIVE.items()})
    values = {k: f(exp, space) for k, f in _CANDIDATES.items()}
    values["objective"] = objective
    return _build(base.Problem, values)


@rule("suggestion.settings", "suggestion/v1beta1/*/service.py + goptuna/service.go ValidateAlgorithmSettings "
      "(via kftune.hpo)",
      "algorithm settings and search space are accepted by the algorithm's suggestion service "
      "(Katib checks them only after admission)")
def check_algorithm_settings(c: Check) -> None:
    if not c.options.check_algorithm_settings or hpo_status() is not None:
        return
    name = c.exp.algorithm.name
    if not name or name not in c.options.katib_config.suggestions:
        return  # webhook.algorithm reports it
    hpo = importlib.import_module("kftune.hpo")
    try:
        algorithm = hpo.get_algorithm(name)
    except (KeyError, ValueError, LookupError):
        return  # e.g. NAS algorithms kftune does not implement
    try:
        problem = to_problem(c.exp)
        messages = algorithm.validate(problem)
    except (ValueError, TypeError) as exc:
        c.error(("spec", "algorithm"), f"the {name} suggestion service rejects the experiment: {exc}",
                "fix the search space or settings it names")
        return
    except Exception as exc:  # noqa: BLE001 - a UserError from kftune.hpo, or an interface mismatch
        c.error(("spec", "algorithm"), f"the {name} suggestion service rejects the experiment: {exc}",
                "fix the search space or settings it names")
        return
    for message in messages or []:
        c.error(("spec", "algorithm", "algorithmSettings"), f"{name}: {message}",
                "fix the setting (Katib's suggestion service would fail the Experiment after admission)")


@rule("earlystopping.settings", "earlystopping/v1beta1/medianstop/service.py ValidateEarlyStoppingSettings "
      "(via kftune.hpo.earlystop)",
      "early-stopping settings are accepted (medianstop: min_trials_required > 0, start_step >= 1, no others)")
def check_early_stopping_settings(c: Check) -> None:
    es = c.exp.early_stopping
    if es is None or not es.name or not c.options.check_algorithm_settings:
        return
    module = _import("kftune.hpo.earlystop")
    if module is None:
        return
    messages: list[str] | None = None
    if hasattr(module, "get_early_stopping"):
        messages = module.get_early_stopping(es.name).validate(dict(es.settings))
    elif hasattr(module, "validate_settings"):
        messages = module.validate_settings(es.name, dict(es.settings))
    for message in messages or []:
        c.error(("spec", "earlyStopping", "algorithmSettings"), f"{es.name}: {message}",
                "fix the setting (Katib's early-stopping service would fail the Experiment after admission)")
