"""``hyperband`` with the semantics of Katib's own service (pkg/suggestion/v1beta1/hyperband),
rebuilt from the trial list on every call, and the successive-halving bracket shared with BOHB.

Katib's settings:

- ``r_l`` (required): the maximum resource R (a number > 0).
- ``eta`` (default 3): the reduction factor; Katib reads ``int(float(eta))`` and replaces values
  <= 0 by 3; kftune asks for an integer > 1 (eta = 1 divides by zero in Katib).
- ``resource_name`` (required): the parameter that receives the budget.
- Katib's service writes its progress back into the settings (``s_max``, ``b_l``, ``r``, ``n``,
  ``current_s``, ``current_i``, ``evaluating_trials``); kftune accepts and ignores them: its
  progress is read from the trials' labels.

Schedule (Katib's formulas): ``s_max = floor(log(r_l) / log(eta))``; brackets run for
s = s_max, s_max-1, ..., 0 (bracket label b = s_max - s); bracket s starts
``n = ceil((s_max + 1) * eta^s / (s + 1))`` random configurations with budget
``int(r_l * eta^-s)``; stage i (i = 1..s) promotes the best ``ceil(n / eta^i)`` of stage i-1 with
budget ``int(r_l * eta^(i-s))``, once every trial of stage i-1 has finished. The next bracket
starts as soon as the current bracket's last stage is created (Katib does the same, so the last
stage of a bracket runs alongside the next bracket's first). ``kftune.io/rung`` is the budget
level ``b + i`` (0 = smallest budget). Validation: ``parallelTrialCount >= eta^s_max``.

Where kftune differs from Katib's service, deliberately:

- Katib sizes a bracket's first stage by the number of trials the controller asks for
  (``param.n = current_request_number``); kftune uses the formula above.
- Katib raises (and stalls the experiment) when a trial of a finished stage did not succeed;
  kftune ranks failed trials last and never promotes them (a stage may then be smaller).
- Katib samples new configurations uniformly between min and max, ignoring distributions and
  steps; kftune draws from each parameter's prior (logUniform respected, steps kept).
- Budgets use a float-safe ``floor(log)`` (Katib's ``int(math.log(243) / math.log(3))`` is 4).
- Like Katib, budgets come from ``r_l`` and may lie outside the resource parameter's
  feasibleSpace; kftune mentions it in :meth:`notes`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kftune.hpo.base import (
    Algorithm,
    Problem,
    Settings,
    Suggestion,
    TrialRecord,
    call_seed,
    stable_seed,
    unique,
)
from kftune.hpo.ladder import (
    Ladder,
    Run,
    budget_value,
    int_log,
    new_config_suggestion,
    pending_run,
    promotion_suggestion,
    read_resource,
)
from kftune.hpo.simple import sample_assignment
from kftune.hpo.space import Parameter, parse_value

KATIB_STATE_SETTINGS = ("s_max", "b_l", "r", "n", "current_s", "current_i", "evaluating_trials")


@dataclass
class Bracket:
    """One successive-halving bracket: stage j has ``sizes[j]`` trials at budget level ``base + j``."""

    index: int
    sizes: list[int]
    base: int


def next_in_bracket(
    bracket: Bracket,
    runs: Sequence[Run],
    new_config: Callable[[int], Suggestion],
    promote: Callable[[Run, int], Suggestion],
) -> tuple[str, Suggestion | None]:
    """The bracket's next trial: ``("run", suggestion)``, ``("wait", None)`` while a stage it
    needs is still running, or ``("done", None)`` once its last stage exists.

    Stage 0 is filled with new configurations; stage j (j >= 1) is created once every trial of
    stage j-1 has finished, from its best ``sizes[j]`` results (failed trials never promoted).
    """
    stages: list[dict[str, Run]] = [{} for _ in bracket.sizes]
    pending: list[bool] = [False for _ in bracket.sizes]
    for r in runs:
        j = r.rung - bracket.base
        if not 0 <= j < len(stages):
            continue
        pending[j] = pending[j] or r.pending
        cur = stages[j].get(r.config)
        if cur is None or (r.loss is not None and (cur.loss is None or r.loss < cur.loss)):
            stages[j][r.config] = r
    if len(stages[0]) < bracket.sizes[0]:
        return "run", new_config(bracket.base)
    for j in range(1, len(stages)):
        if pending[j - 1]:
            return "wait", None
        ranked = sorted(
            (r for r in stages[j - 1].values() if r.promotable), key=lambda r: (r.loss, _order(r.config))
        )
        for r in ranked[: bracket.sizes[j]]:
            if r.config not in stages[j]:
                return "run", promote(r, bracket.base + j)
    return "done", None


def _order(config: str) -> tuple[int, int | str]:
    return (0, int(config)) if config.isdigit() else (1, config)


def runs_by_bracket(runs: Sequence[Run]) -> dict[int, list[Run]]:
    out: dict[int, list[Run]] = {}
    for r in runs:
        if r.bracket is not None and r.bracket >= 0:
            out.setdefault(r.bracket, []).append(r)
    return out


@dataclass
class HyperbandConfig:
    resource: Parameter
    r_l: float
    eta: int
    s_max: int
    brackets: list[Bracket]
    budgets: list[float]  # per level, 0 = smallest


def katib_hyperband_schedule(r_l: float, eta: int) -> tuple[int, list[Bracket], list[float]]:
    """Katib's formulas: ``(s_max, brackets, budget per level)``."""
    s_max = int_log(r_l, eta) if r_l >= 1 else 0
    brackets = []
    for b in range(s_max + 1):
        s = s_max - b
        n = math.ceil((s_max + 1) * eta**s / (s + 1))
        sizes = [math.ceil(n / eta**i - 1e-9) for i in range(s + 1)]
        brackets.append(Bracket(b, sizes, b))
    budgets = [float(int(r_l * eta ** (level - s_max) + 1e-9)) for level in range(s_max + 1)]
    return s_max, brackets, budgets


class Hyperband(Algorithm):
    name = "hyperband"

    def _read(self, problem: Problem) -> tuple[HyperbandConfig | None, list[str]]:
        s = Settings(problem.settings, self.name)
        s.require("r_l", " (the maximum resource, e.g. the number of epochs)")
        r_l = s.number("r_l", None, lo=0, lo_open=True, must="a positive number")
        eta = s.integer("eta", 3, lo=2, must="an integer > 1")
        resource = read_resource(problem, s, need_range=False)
        s.integer("random_state", 0, lo=0)
        s.reject_unknown(also_allowed=KATIB_STATE_SETTINGS)
        if resource is None or r_l is None or s.errors:
            return None, s.errors
        s_max, brackets, budgets = katib_hyperband_schedule(r_l, eta)
        need = eta**s_max
        if problem.parallel_trial_count < need:
            s.errors.append(
                f"parallelTrialCount must be not less than {need} (eta^s_max for r_l={r_l:g}, eta={eta})"
            )
        if any(int(b) < 1 for b in budgets):
            s.errors.append(f"r_l={r_l:g} gives a budget below 1 with eta={eta}: {budgets}")
        if s.errors:
            return None, s.errors
        return HyperbandConfig(resource, r_l, eta, s_max, brackets, budgets), []

    def validate(self, problem: Problem) -> list[str]:
        return self._read(problem)[1]

    def config(self, problem: Problem) -> HyperbandConfig:
        self.check(problem)
        cfg, _ = self._read(problem)
        assert cfg is not None
        return cfg

    def notes(self, problem: Problem) -> list[str]:
        cfg, errors = self._read(problem)
        if cfg is None:
            return []
        out = []
        for b in cfg.budgets:
            try:
                parse_value(cfg.resource, budget_value(cfg.resource, b))
            except ValueError:
                out.append(
                    f"hyperband: budget {budget_value(cfg.resource, b)} (from r_l) lies outside the feasibleSpace "
                    f"of '{cfg.resource.name}'; Katib ignores that feasibleSpace for hyperband, so does kftune"
                )
        return out

    def _schedule(self, problem: Problem, trials: Sequence[TrialRecord]):
        cfg = self.config(problem)
        ladder = Ladder.build(problem, trials, cfg.resource, cfg.budgets)
        return cfg, ladder

    def suggest(self, problem: Problem, trials: Sequence[TrialRecord], n: int) -> list[Suggestion]:
        cfg, ladder = self._schedule(problem, trials)
        base_seed = call_seed(problem, trials)
        space = problem.space.without(cfg.resource.name)
        keys = ladder.config_keys()
        configs = ladder.configs()
        out: list[Suggestion] = []
        for slot in range(max(n, 0)):
            by_bracket = runs_by_bracket(ladder.runs)
            made: Suggestion | None = None
            for br in cfg.brackets:

                def new_config(level: int, br: Bracket = br, slot: int = slot) -> Suggestion:
                    a = unique(
                        lambda attempt: sample_assignment(
                            space, np.random.default_rng(stable_seed(base_seed, slot, attempt))
                        ),
                        keys,
                        problem.space,
                        np.random.default_rng(stable_seed(base_seed, slot, "unused")),
                        exclude=(cfg.resource.name,),
                    )
                    return new_config_suggestion(
                        a, cfg.resource, cfg.budgets[level], level, ladder.next_config_id(configs), br.index
                    )

                def promote(run: Run, level: int, br: Bracket = br) -> Suggestion:
                    return promotion_suggestion(run, cfg.resource, cfg.budgets[level], level, br.index)

                status, made = next_in_bracket(br, by_bracket.get(br.index, []), new_config, promote)
                if status != "done":
                    break
            if made is None:
                break
            out.append(made)
            ladder.add(pending_run(made, cfg.resource, slot, problem.space))
            configs.add(made.labels["kftune.io/config"])
            keys.add(problem.space.key(made.assignments, (cfg.resource.name,)))
        return out

    def is_complete(self, problem: Problem, trials: Sequence[TrialRecord]) -> bool:
        cfg, ladder = self._schedule(problem, trials)
        by_bracket = runs_by_bracket(ladder.runs)
        dummy = Suggestion({})
        for br in cfg.brackets:
            status, _ = next_in_bracket(
                br, by_bracket.get(br.index, []), lambda _l: dummy, lambda _r, _l: dummy
            )
            if status != "done":
                return False
        return True
