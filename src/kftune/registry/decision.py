"""Champion or challenger: the one rule that moves the ``champion`` alias.

A new model version becomes ``champion`` when there is no champion yet, or when its per-seed
scores are *significantly better* than the champion's: ``kftune.evaluate.stats.compare(new,
champion, paired=<same seeds>, alternative="greater")`` ("less" for loss/perplexity) reports
``significant is True`` at ``alpha``. Otherwise it becomes ``challenger`` and the reason says why
(not better, not significant, or undecided because there are too few seeds). Pure: no MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kftune.evaluate.stats import Comparison, compare
from kftune.registry.rundir import higher_is_better

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class Decision:
    alias: str  # CHAMPION or CHALLENGER
    reason: str  # one sentence for tags, descriptions and the CLI
    metric: str  # what was compared, e.g. test_f1
    scores: dict[int, float]  # the new model's per-seed scores
    champion_version: str | None = None
    champion_scores: dict[int, float] | None = None
    comparison: Comparison | None = None

    @property
    def moves_champion(self) -> bool:
        return self.alias == CHAMPION

    def to_dict(self) -> dict:
        return {
            "alias": self.alias,
            "reason": self.reason,
            "metric": self.metric,
            "scores": {str(k): v for k, v in self.scores.items()},
            "champion_version": self.champion_version,
            "champion_scores": None
            if self.champion_scores is None
            else {str(k): v for k, v in self.champion_scores.items()},
            "comparison": None if self.comparison is None else self.comparison.to_dict(),
        }


def decide(
    scores: Mapping[int, float],
    champion_scores: Mapping[int, float] | None,
    *,
    metric: str,
    alpha: float = 0.05,
    champion_version: str | None = None,
) -> Decision:
    """Where the new version goes; see the module docstring.

    ``scores``/``champion_scores``: {seed: score} on ``metric``. ``champion_scores`` None: there is
    no champion. An empty mapping: the champion has no scores on ``metric`` (registered by hand, or
    on another metric); the new version is then a challenger, since nothing shows it is better.
    """
    new = {int(k): float(v) for k, v in scores.items()}
    if not new:
        raise ValueError(f"decide: no per-seed {metric} scores for the new model")
    if champion_scores is None:
        return Decision(CHAMPION, "no champion yet", metric, new)
    champ = {int(k): float(v) for k, v in champion_scores.items()}
    who = f"champion v{champion_version}" if champion_version else "the champion"
    if not champ:
        return Decision(
            CHALLENGER,
            f"{who} has no per-seed {metric} scores to compare with (kftune.seed_scores tag); "
            "move the alias by hand if this model should replace it",
            metric,
            new,
            champion_version,
            champ,
        )
    paired = set(new) == set(champ) and len(new) >= 2
    alternative = "greater" if higher_is_better(metric) else "less"
    if paired:
        c = compare(new, champ, paired=True, alternative=alternative, alpha=alpha)
    else:
        c = compare(
            list(new.values()), list(champ.values()), paired=False, alternative=alternative, alpha=alpha
        )
    pairing = f"paired by seed, n={c.n}" if paired else f"unpaired, n={c.n_a} vs {c.n_b}"
    if c.significant is True:
        alias = CHAMPION
        reason = f"significantly better than {who} on {metric} ({pairing}): {c.summary()}"
    else:
        alias = CHALLENGER
        reason = f"not shown better than {who} on {metric} ({pairing}): {c.reason}"
    return Decision(alias, reason, metric, new, champion_version, champ, c)
