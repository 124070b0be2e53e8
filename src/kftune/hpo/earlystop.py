"""``medianstop`` early stopping with Katib's semantics (pkg/earlystopping/v1beta1/medianstop and
the metrics collector's ``updateStopRules``), as pure functions.

Katib splits the work in two:

1. When a batch of trials is created, the early-stopping service returns a *rule* for them
   (:func:`median_stop_rule`): once at least ``min_trials_required`` (default 3) trials have
   **Succeeded**, the rule value is the mean, over those trials, of the average of each one's
   first ``start_step`` (default 4) objective reports. (Katib calls it the median but computes
   this mean; kftune does the same so that local runs stop what Katib would stop.) The rule
   compares with ``less`` when maximising, ``greater`` when minimising. Before enough trials
   have succeeded there is no rule and nothing is stopped.
2. The trial's metrics collector applies the rule (:func:`should_stop`): it tracks the best
   objective value reported so far and, at the ``start_step``-th report, stops the trial if that
   best value is below (maximise) / above (minimise) the rule value. It checks at that report
   only; a trial that passes once is never stopped later.

:func:`trials_to_stop` combines the two for a local runner: the running trials whose reports
(``TrialRecord.intermediate``) meet their rule. Pass the rule each trial got at creation (as
Katib fixes it in the Trial spec); without it, the rule from the currently succeeded trials is
used for all.

Settings (validated like Katib's ``validate_medianstop_setting``): ``min_trials_required`` an
integer > 0, ``start_step`` an integer >= 1; anything else is an unknown setting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kftune.errors import UserError
from kftune.hpo.base import Objective, Settings, TrialRecord


@dataclass(frozen=True)
class MedianStopSettings:
    min_trials_required: int = 3
    start_step: int = 4

    @staticmethod
    def read(raw: Mapping[str, str]) -> tuple[MedianStopSettings, list[str]]:
        s = Settings(raw, "medianstop")
        m = s.integer("min_trials_required", 3, lo=1, must="an integer > 0")
        st = s.integer("start_step", 4, lo=1, must="an integer >= 1")
        s.reject_unknown()
        errors = [
            e.replace("algorithm setting", "early stopping setting").replace(
                "unknown algorithm setting", "unknown early stopping setting"
            )
            for e in s.errors
        ]
        return MedianStopSettings(m, st), errors

    @staticmethod
    def parse(raw: Mapping[str, str]) -> MedianStopSettings:
        settings, errors = MedianStopSettings.read(raw)
        if errors:
            raise UserError("medianstop: " + "; ".join(errors))
        return settings


def validate_medianstop(raw: Mapping[str, str]) -> list[str]:
    """Messages for bad medianstop settings (empty when valid)."""
    return MedianStopSettings.read(raw)[1]


@dataclass(frozen=True)
class EarlyStoppingRule:
    """Katib's ``EarlyStoppingRule``: stop when ``metric`` compares ``comparison`` to ``value``
    at report ``start_step``."""

    metric: str
    value: float
    comparison: str  # "less" | "greater"
    start_step: int


def median_stop_rule(
    objective: Objective,
    trials: Sequence[TrialRecord],
    settings: MedianStopSettings | Mapping[str, str] = MedianStopSettings(),
) -> EarlyStoppingRule | None:
    """The rule Katib's medianstop service would return for new trials, or None."""
    if not isinstance(settings, MedianStopSettings):
        settings = MedianStopSettings.parse(settings)
    averages = []
    for t in trials:
        if t.status != "Succeeded" or not t.intermediate:
            continue
        first = [v for _, v in t.intermediate[: settings.start_step]]
        averages.append(sum(first) / len(first))
    if len(averages) < settings.min_trials_required:
        return None
    return EarlyStoppingRule(
        objective.metric,
        sum(averages) / len(averages),
        "less" if objective.maximize else "greater",
        settings.start_step,
    )


def should_stop(
    rule: EarlyStoppingRule | None, intermediate: Sequence[tuple[int, float]], objective: Objective
) -> bool:
    """Does the collector stop a trial with these reports? (best value at report start_step)."""
    if rule is None or len(intermediate) < max(rule.start_step, 1):
        return False
    first = [v for _, v in intermediate[: max(rule.start_step, 1)]]
    best = max(first) if objective.maximize else min(first)
    if rule.comparison == "less":
        return best < rule.value
    if rule.comparison == "greater":
        return best > rule.value
    return best == rule.value


def trials_to_stop(
    objective: Objective,
    trials: Sequence[TrialRecord],
    settings: MedianStopSettings | Mapping[str, str] = MedianStopSettings(),
    rules: Mapping[str, EarlyStoppingRule | None] | None = None,
) -> list[str]:
    """Names of the running trials that medianstop stops now."""
    if not isinstance(settings, MedianStopSettings):
        settings = MedianStopSettings.parse(settings)
    current = median_stop_rule(objective, trials, settings) if rules is None else None
    out = []
    for t in trials:
        if t.status != "Running":
            continue
        rule = rules.get(t.name) if rules is not None else current
        if should_stop(rule, t.intermediate, objective):
            out.append(t.name)
    return out
