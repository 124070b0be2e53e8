"""``pbt``: Population Based Training with the settings and labels of Katib's service
(pkg/suggestion/v1beta1/pbt), rebuilt from the trial list on every call.

Settings (Katib's): ``n_population`` (required, >= 5), ``truncation_threshold`` (required, in
[0, 1]), ``resample_probability`` (optional, in [0, 1]; unset = perturb), ``suggestion_trial_dir``
(required by Katib's validation: where its service keeps checkpoints; kftune's local runner
resumes from the parent trial's own output directory instead), ``random_state``.

Labels: Katib's ``pbt.suggestion.katib.kubeflow.org/generation`` and
``pbt.suggestion.katib.kubeflow.org/parent`` (so templates written for Katib's PBT work), plus
``kftune.io/parent-trial`` (= the parent, what kftune templates resume from) and
``kftune.io/pbt-member`` (the member of the previous generation whose place the trial takes).

Generations: generation 0 is ``n_population`` random members. Generation g+1 is produced once
generation g has ``n_population`` finished members with a value; each of them gets one child, as
in Katib's ``_segment_sample_pool``: with ``lo, hi = quantile(values, (t, 1 - t))`` (t the
truncation threshold, values oriented so that larger is better), members below ``lo`` (worst
first, at most ``int(n_population * t)``) are replaced by an **exploit** child and the others (best
first) get an **explore** child:

- exploit: copy the hyperparameters *and the checkpoint* of a member at or above ``hi`` (drawn
  with a seeded RNG) - parent = that member. (Katib's service copies the upper member's
  hyperparameters but names the *replaced* member as parent, so the weights continue from the
  worse model; kftune follows the PBT paper, where exploit copies the better model.)
- explore: the member's own hyperparameters perturbed - parent = the member. Without
  ``resample_probability``: ints and doubles x 0.8 or x 1.2 (clipped to [min, max], snapped to
  the step), discrete/categorical move to the previous or next list value (Katib's wrap-around);
  with it: each parameter is redrawn from its prior with that probability, else kept.

A member that fails is replaced within its generation (Katib re-queues it with the same
assignments; kftune draws the replacement again from the same rule, so a failing configuration
is not retried forever). The search never completes by itself: ``maxTrialCount`` ends it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kftune.hpo.base import (
    LABEL_PARENT,
    Algorithm,
    Problem,
    Settings,
    Suggestion,
    TrialRecord,
    stable_seed,
    unique,
)
from kftune.hpo.simple import sample_assignment
from kftune.hpo.space import Parameter, format_value, parse_value

LABEL_GENERATION = "pbt.suggestion.katib.kubeflow.org/generation"
LABEL_PBT_PARENT = "pbt.suggestion.katib.kubeflow.org/parent"
LABEL_MEMBER = "kftune.io/pbt-member"


def perturb(p: Parameter, text: str, rng: np.random.Generator) -> str:
    """Katib's explore step for one value (see module doc)."""
    if p.is_numeric:
        factor = 0.8 if rng.random() < 0.5 else 1.2
        v = float(parse_value(p, text)) * factor
        if p.type == "int":
            v = int(v)
        return format_value(p, p._snap(v))
    i = p.index_of(text) + (-1 if rng.random() < 0.5 else 1)
    return p.values[0] if i >= len(p.values) else p.values[i]


class Pbt(Algorithm):
    name = "pbt"

    def _read(self, problem: Problem) -> tuple[Settings, int, float, float | None, int]:
        s = Settings(problem.settings, self.name)
        for name in ("suggestion_trial_dir", "n_population", "truncation_threshold"):
            s.require(name)
        s.text("suggestion_trial_dir")
        n_pop = s.integer("n_population", 5, lo=5, must="an integer >= 5")
        trunc = s.number("truncation_threshold", 0.2, lo=0, hi=1)
        resample = s.number("resample_probability", None, lo=0, hi=1)
        seed = s.integer("random_state", 0, lo=0)
        s.reject_unknown()
        return s, n_pop, trunc, resample, seed

    def validate(self, problem: Problem) -> list[str]:
        return self._read(problem)[0].errors

    def notes(self, problem: Problem) -> list[str]:
        return [
            "pbt: exploit copies the better member's checkpoint (parent = that member); "
            "Katib's service names the replaced member as parent"
        ]

    def suggest(self, problem: Problem, trials: Sequence[TrialRecord], n: int) -> list[Suggestion]:
        self.check(problem)
        _, n_pop, trunc, resample, seed = self._read(problem)
        space = problem.space
        gens: dict[int, list[TrialRecord]] = {}
        for t in trials:
            g = t.labels.get(LABEL_GENERATION)
            if g is not None and g.isdigit() and not space.check(t.assignments):
                gens.setdefault(int(g), []).append(t)
        taken = {space.key(t.assignments) for t in trials}
        out: list[Suggestion] = []
        for slot in range(max(n, 0)):
            s = self._next(problem, gens, n_pop, trunc, resample, seed, taken, slot)
            if s is None:
                break
            out.append(s)
            taken.add(space.key(s.assignments))
            pending = TrialRecord(f"__pending-{slot}", dict(s.assignments), "Created", labels=dict(s.labels))
            gens.setdefault(int(s.labels[LABEL_GENERATION]), []).append(pending)
        return out

    def _next(self, problem, gens, n_pop, trunc, resample, seed, taken, slot) -> Suggestion | None:
        objective = problem.objective
        top = max(gens) if gens else 0
        members = gens.get(top, [])
        live = [t for t in members if t.pending or t.value(objective) is not None]
        finished = [t for t in members if t.value(objective) is not None]
        if len(finished) >= n_pop:
            return self._child(
                problem, top + 1, finished, gens.get(top + 1, []), n_pop, trunc, resample, seed
            )
        if len(live) >= n_pop:
            return None  # the generation is full and still running
        if top == 0:
            a = unique(
                lambda attempt: sample_assignment(
                    problem.space,
                    np.random.default_rng(stable_seed(seed, "init", len(members), slot, attempt)),
                ),
                set(taken),
                problem.space,
                np.random.default_rng(stable_seed(seed, "unused", len(members), slot)),
            )
            return Suggestion(a, {LABEL_GENERATION: "0", LABEL_PARENT: ""})
        previous = [t for t in gens.get(top - 1, []) if t.value(objective) is not None]
        return self._child(problem, top, previous, members, n_pop, trunc, resample, seed)

    def plan(
        self, problem: Problem, pool: Sequence[TrialRecord], n_pop: int, trunc: float
    ) -> list[tuple[TrialRecord, str]]:
        """Each pool member with "exploit" or "explore", in creation order."""
        objective = problem.objective
        scale = 1.0 if objective.maximize else -1.0
        vals = np.array([scale * t.value(objective) for t in pool])
        lo, hi = np.quantile(vals, (trunc, 1 - trunc))
        ranked = sorted(zip(vals, [t.name for t in pool], pool, strict=True), key=lambda z: (z[0], z[1]))
        exploit = [t for v, _, t in ranked if v < lo][: int(n_pop * trunc)]
        exploit_names = {t.name for t in exploit}
        explore = [t for v, _, t in reversed(ranked) if t.name not in exploit_names][: n_pop - len(exploit)]
        return [(t, "exploit") for t in exploit] + [(t, "explore") for t in explore]

    def _child(self, problem, generation, pool, children, n_pop, trunc, resample, seed) -> Suggestion | None:
        objective = problem.objective
        used = {c.labels.get(LABEL_MEMBER) for c in children if c.pending or c.value(objective) is not None}
        scale = 1.0 if objective.maximize else -1.0
        vals = np.array([scale * t.value(objective) for t in pool])
        hi = float(np.quantile(vals, 1 - trunc))
        upper = sorted((t for t, v in zip(pool, vals, strict=True) if v >= hi), key=lambda t: t.name)
        for member, kind in self.plan(problem, pool, n_pop, trunc):
            if member.name in used:
                continue
            retry = sum(1 for c in children if c.labels.get(LABEL_MEMBER) == member.name)
            rng = np.random.default_rng(stable_seed(seed, generation, member.name, retry))
            if kind == "exploit":
                parent = (
                    upper[int(rng.integers(len(upper)))]
                    if upper
                    else max(pool, key=lambda t: scale * t.value(objective))
                )
                a = dict(parent.assignments)
            else:
                parent = member
                a = {}
                for p in problem.space:
                    cur = member.assignments[p.name]
                    if resample is None:
                        a[p.name] = perturb(p, cur, rng)
                    elif rng.random() < resample:
                        a[p.name] = format_value(p, p.sample(rng))
                    else:
                        a[p.name] = cur
            labels = {
                LABEL_GENERATION: str(generation),
                LABEL_PBT_PARENT: parent.name,
                LABEL_PARENT: parent.name,
                LABEL_MEMBER: member.name,
            }
            return Suggestion(a, labels)
        return None
