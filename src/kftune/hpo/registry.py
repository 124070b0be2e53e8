"""Algorithm names -> implementations (imported lazily: optuna/scikit-learn load on first use)."""

from __future__ import annotations

import importlib

from kftune.errors import UserError
from kftune.hpo.base import Algorithm

_ALGORITHMS: dict[str, tuple[str, str]] = {
    "random": ("kftune.hpo.simple", "RandomSearch"),
    "sobol": ("kftune.hpo.simple", "SobolSearch"),
    "grid": ("kftune.hpo.simple", "GridSearch"),
    "tpe": ("kftune.hpo.optuna_tpe", "Tpe"),
    "multivariate-tpe": ("kftune.hpo.optuna_tpe", "MultivariateTpe"),
    "cmaes": ("kftune.hpo.cmaes", "CmaEs"),
    "bayesianoptimization": ("kftune.hpo.bayesopt", "BayesianOptimization"),
    "hyperband": ("kftune.hpo.hyperband", "Hyperband"),
    "asha": ("kftune.hpo.asha", "Asha"),
    "bohb": ("kftune.hpo.bohb", "Bohb"),
    "pbt": ("kftune.hpo.pbt", "Pbt"),
}

#: Algorithms that stock Katib does not have (served by kftune's suggestion service).
KFTUNE_ONLY = ("asha", "bohb")


def known_algorithms() -> list[str]:
    return sorted(_ALGORITHMS)


def get_algorithm(name: str) -> Algorithm:
    """The algorithm called ``name``; UserError listing the known names otherwise."""
    try:
        module, cls = _ALGORITHMS[name]
    except (KeyError, TypeError):
        raise UserError(
            f"unknown algorithm {name!r}: known algorithms are {', '.join(known_algorithms())}"
        ) from None
    return getattr(importlib.import_module(module), cls)()
