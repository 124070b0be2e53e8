"""Hyperparameter search: search spaces, suggestion algorithms and early stopping.

Every algorithm is a pure function of (problem, trials) -> new trials: no state survives between
calls, so Katib's gRPC ``Suggestion`` service and the local runner share the same code. Start
with :func:`get_algorithm`::

    from kftune.hpo import Problem, get_algorithm
    problem = Problem.from_katib(experiment["spec"])
    algo = get_algorithm(problem.algorithm_name)
    errors = algo.validate(problem)            # [] when it can run
    new = algo.suggest(problem, trials, n=3)   # list[Suggestion], at most 3
    done = algo.is_complete(problem, trials)

Algorithms: random, sobol, grid, tpe, multivariate-tpe, cmaes, bayesianoptimization, hyperband,
pbt (Katib's built-ins, with Katib's settings) and asha, bohb (kftune's). Early stopping:
:mod:`kftune.hpo.earlystop` (medianstop). Nothing here imports torch; optuna, scipy.stats and
scikit-learn are imported only by the algorithms that use them.
"""

from kftune.hpo.base import (
    LABEL_BRACKET,
    LABEL_CONFIG,
    LABEL_PARENT,
    LABEL_RUNG,
    TRIAL_CONDITIONS,
    Algorithm,
    Objective,
    Problem,
    Suggestion,
    TrialRecord,
)
from kftune.hpo.registry import KFTUNE_ONLY, get_algorithm, known_algorithms
from kftune.hpo.space import Parameter, SearchSpace, format_value, parse_value


def suggest(problem: Problem, trials: list[TrialRecord], n: int) -> list[Suggestion]:
    """Shortcut: ``get_algorithm(problem.algorithm_name).suggest(problem, trials, n)``."""
    return get_algorithm(problem.algorithm_name).suggest(problem, trials, n)


def validate(problem: Problem) -> list[str]:
    """Shortcut: ``get_algorithm(problem.algorithm_name).validate(problem)``."""
    return get_algorithm(problem.algorithm_name).validate(problem)


__all__ = [
    "KFTUNE_ONLY",
    "LABEL_BRACKET",
    "LABEL_CONFIG",
    "LABEL_PARENT",
    "LABEL_RUNG",
    "TRIAL_CONDITIONS",
    "Algorithm",
    "Objective",
    "Parameter",
    "Problem",
    "SearchSpace",
    "Suggestion",
    "TrialRecord",
    "format_value",
    "get_algorithm",
    "known_algorithms",
    "parse_value",
    "suggest",
    "validate",
]
