"""What Katib demands of an ``asha``/``bohb`` search on top of the algorithms' own settings checks.

Pure functions, no gRPC: kftune's suggestion service (:mod:`kftune.katib.service`) applies them in
``ValidateAlgorithmSettings``, the offline validator can apply the same ones, and the cluster
client (:mod:`kftune.katib.client`) reads the service's end-of-search messages by the markers
defined here.

Why they exist (kubeflow/katib, ``pkg/controller.v1beta1``):

- **Exactly N.** ``suggestionclient.go: SyncAssignments`` asks for ``current_request_number``
  trials and fails the sync unless the reply holds exactly that many; nothing of a short reply is
  kept, and the controller asks again (with a backoff, and at once when a trial finishes, because
  the experiment controller then raises the Suggestion's ``spec.requests``). A request is
  ``min(maxTrialCount - completed, parallelTrialCount) - active`` trials, whatever the algorithm
  could use.
- **No end signal.** ``experiment/util/status_util.go`` ends an experiment on its goal, on
  ``maxFailedTrialCount`` or on ``maxTrialCount``; its "suggestion end reached" branch is always
  passed ``false``. Katib's own grid service therefore *validates* ``maxTrialCount`` against the
  number of combinations so that it never runs dry (``optuna/service.py: _validate_grid_setting``).

ASHA and BOHB run out of trials to propose in two ways: at their end (``num_configurations``
configurations started and every promotion made; ``num_iterations`` brackets done), and on the way
there, when what is left are promotions that wait for running trials and Katib asks for more trials
than can be promoted right now. With no trial running, waiting cannot help and the experiment would
stall. Bounding ``maxTrialCount`` by the *largest* number of trials the settings can produce
(``num_configurations x rungs``) does not prevent that; bounding it by the number of trials the
algorithm can always propose without waiting does, which is the grid rule carried over:

- ``asha``: new configurations never wait. With ``num_configurations`` unset (Li et al.'s ASHA, which
  grows the bottom rung whenever nothing is promotable) every request is filled and
  ``maxTrialCount`` alone bounds the search, the Katib-native way. With ``num_configurations = N``,
  ``maxTrialCount`` must be set and at most N.
- ``bohb``: until every iteration has started, a free worker always gets a first-stage
  configuration (hpbandster's ``Master.run`` starts the next iteration). So ``maxTrialCount`` must be
  set and at most the first-stage trials of ``num_iterations`` iterations; raise ``num_iterations``
  to allow more.

Under these rules the service never has to answer short. When it still cannot fill a request (an
experiment restarted with a larger ``maxTrialCount``, trials Katib hides from the service), it
answers with a gRPC error whose message starts with one of the markers below.
"""

from __future__ import annotations

from typing import Any

#: Message prefixes of the suggestion service's errors (the controller records them as Warning
#: events ``ReconcileError`` on the Suggestion, ``rpc error: code = ... desc = <message>``).
MARK_WAITING = "kftune: waiting"  # UNAVAILABLE: running trials will make more trials possible
MARK_COMPLETE = "kftune: search complete"  # FAILED_PRECONDITION: the algorithm is done
MARK_EXHAUSTED = "kftune: search exhausted"  # FAILED_PRECONDITION: fewer possible, nothing running
END_MARKERS = (MARK_COMPLETE, MARK_EXHAUSTED)

CHECKED_ALGORITHMS = ("asha", "bohb")


def always_fillable(problem: Any) -> int | None:
    """How many trials the algorithm can propose before it may have to wait (None: no limit).

    Only for ``asha`` and ``bohb`` with valid settings; None for every other algorithm.
    """
    name = problem.algorithm_name
    if name == "asha":
        from kftune.hpo.asha import Asha

        return Asha().config(problem).num_configurations
    if name == "bohb":
        from kftune.hpo.bohb import Bohb, bohb_bracket

        cfg = Bohb().config(problem)
        return sum(bohb_bracket(i, cfg.s_max, cfg.eta).sizes[0] for i in range(cfg.num_iterations))
    return None


def _bohb_iterations_for(problem: Any, trials: int) -> int:
    """The smallest ``num_iterations`` whose first stages hold at least ``trials`` trials."""
    from kftune.hpo.bohb import Bohb, bohb_bracket

    cfg = Bohb().config(problem)
    total, i = 0, 0
    while total < trials:
        total += bohb_bracket(i, cfg.s_max, cfg.eta).sizes[0]
        i += 1
    return max(i, 1)


def katib_errors(problem: Any) -> list[str]:
    """Why Katib could stall this ``asha``/``bohb`` search ([] when it cannot, or for other
    algorithms). Call after the algorithm's own ``validate`` returned no error."""
    name = problem.algorithm_name
    if name not in CHECKED_ALGORITHMS:
        return []
    fillable = always_fillable(problem)
    if fillable is None:
        return []
    max_trials = problem.max_trial_count
    if max_trials is not None and max_trials <= fillable:
        return []
    why = (
        "Katib's controller fails every request that is not answered with exactly the number of "
        "trials it asks for and has no end-of-search signal, so the experiment could stall with "
        "nothing running"
    )
    given = "unset" if max_trials is None else str(max_trials)
    if name == "asha":
        return [
            f"maxTrialCount ({given}) must be set and at most num_configurations ({fillable}): once all "
            f"{fillable} configurations have started only promotions remain, which wait for running "
            f"trials, and {why}; remove num_configurations and let maxTrialCount bound the search "
            "(ASHA then starts a new configuration whenever no promotion is due), or lower maxTrialCount"
        ]
    iterations = problem.settings.get("num_iterations", "unset: one Hyperband round")
    fix = (
        f"set num_iterations to at least {_bohb_iterations_for(problem, max_trials)} (or more) so that "
        "new brackets keep the workers busy until maxTrialCount ends the experiment, or lower maxTrialCount"
        if max_trials is not None
        else "set maxTrialCount"
    )
    return [
        f"maxTrialCount ({given}) must be set and at most the {fillable} first-stage trials of "
        f"num_iterations ({iterations}) iterations: after that BOHB's remaining trials are promotions "
        f"that wait for running trials, and {why}; {fix}"
    ]


__all__ = [
    "CHECKED_ALGORITHMS",
    "END_MARKERS",
    "MARK_COMPLETE",
    "MARK_EXHAUSTED",
    "MARK_WAITING",
    "always_fillable",
    "katib_errors",
]
