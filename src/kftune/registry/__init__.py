"""MLflow tracking (``tracking``) and the model registry with model cards.

The functions a pipeline step calls (MLflow and torch are imported only when used):

- :func:`register` ``(run_dir, *, name, tracking_uri=None, alpha=0.05, force=False) -> RegistrationResult``:
  publish the run's best seed with its model card; ``champion`` only if significantly better.
  Raises :class:`RegistryUnavailable` (a ``UserError``, exit 3) when the server is down.
- :func:`plan_registration` ``(run_dir, *, name, tracking_uri=None, alpha=0.05) -> Plan``: the same
  decision without registering (``kftune registry compare``).
- :func:`list_versions` ``(name, *, tracking_uri=None) -> list[VersionInfo]``.
- :func:`load_run_dir` ``(path) -> RunDir`` and :func:`compare_scores` / :func:`write_comparisons`
  for the compare step that writes ``comparison.json``.
- :func:`model_card` / :func:`card_description`: the card text from a run directory.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "register": "kftune.registry.publish",
    "plan_registration": "kftune.registry.publish",
    "list_versions": "kftune.registry.publish",
    "format_versions": "kftune.registry.publish",
    "RegistrationResult": "kftune.registry.publish",
    "RegistryUnavailable": "kftune.registry.publish",
    "Plan": "kftune.registry.publish",
    "VersionInfo": "kftune.registry.publish",
    "Decision": "kftune.registry.decision",
    "decide": "kftune.registry.decision",
    "CHAMPION": "kftune.registry.decision",
    "CHALLENGER": "kftune.registry.decision",
    "RunDir": "kftune.registry.rundir",
    "Retrain": "kftune.registry.rundir",
    "load_run_dir": "kftune.registry.rundir",
    "find_run_dirs": "kftune.registry.rundir",
    "compare_scores": "kftune.registry.rundir",
    "read_comparisons": "kftune.registry.rundir",
    "write_comparisons": "kftune.registry.rundir",
    "model_card": "kftune.registry.modelcard",
    "card_description": "kftune.registry.modelcard",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'kftune.registry' has no attribute {name!r}")
