"""What a Katib installation knows: algorithms, early stopping, metrics collectors, trial kinds.

The admission webhook looks algorithm, early-stopping and metrics-collector names up in the
``katib-config`` ConfigMap (``GetSuggestionConfigData`` & co.); the controller only watches the
trial kinds listed in ``init.controller.trialResources``. Offline we use the default
``manifests/v1beta1/installs/katib-standalone/katib-config.yaml`` plus kftune's own ``asha`` and
``bohb`` suggestion service, or a ``katib-config`` the user passes (``--katib-config FILE``: the
ConfigMap or the ``KatibConfig`` document inside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kftune.errors import UserError
from kftune.katib.kubeyaml import load_value

DEFAULT_SUGGESTIONS = (
    "random",
    "tpe",
    "grid",
    "hyperband",
    "bayesianoptimization",
    "cmaes",
    "sobol",
    "multivariate-tpe",
    "enas",
    "darts",
    "pbt",
)
KFTUNE_SUGGESTIONS = ("asha", "bohb")
DEFAULT_EARLY_STOPPINGS = ("medianstop",)
DEFAULT_METRICS_COLLECTORS = ("StdOut", "File", "TensorFlowEvent")
DEFAULT_TRIAL_RESOURCES = (
    "TrainJob.v1alpha1.trainer.kubeflow.org",
    "Job.v1.batch",
    "TFJob.v1.kubeflow.org",
    "PyTorchJob.v1.kubeflow.org",
    "MPIJob.v1.kubeflow.org",
    "XGBoostJob.v1.kubeflow.org",
)


@dataclass(frozen=True)
class KatibConfig:
    suggestions: tuple[str, ...] = DEFAULT_SUGGESTIONS + KFTUNE_SUGGESTIONS
    early_stoppings: tuple[str, ...] = DEFAULT_EARLY_STOPPINGS
    metrics_collectors: tuple[str, ...] = DEFAULT_METRICS_COLLECTORS
    trial_resources: tuple[str, ...] = DEFAULT_TRIAL_RESOURCES
    source: str = "Katib's default katib-config (katib-standalone) + kftune's asha/bohb"

    def has_trial_kind(self, api_version: str, kind: str) -> bool:
        """``Kind.version.group`` as in trialResources (``batch/v1`` -> ``Job.v1.batch``)."""
        group, _, version = api_version.rpartition("/")
        return f"{kind}.{version}.{group}".rstrip(".") in self.trial_resources or (
            not group and f"{kind}.{version}" in self.trial_resources
        )

    @classmethod
    def load(cls, path: str | Path) -> KatibConfig:
        """Read a ``katib-config`` ConfigMap (key ``katib-config.yaml``) or a ``KatibConfig``."""
        path = Path(path)
        try:
            data = load_value(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UserError(f"{path}: cannot read the katib-config: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - YAML errors
            raise UserError(
                f"{path}: not valid YAML: {exc}; pass the katib-config ConfigMap or KatibConfig"
            ) from exc
        if isinstance(data, dict) and data.get("kind") == "ConfigMap":
            inner = (data.get("data") or {}).get("katib-config.yaml")
            if not isinstance(inner, str):
                raise UserError(
                    f"{path}: ConfigMap has no data['katib-config.yaml']; pass Katib's katib-config"
                )
            data = load_value(inner)
        if not isinstance(data, dict) or data.get("kind") != "KatibConfig":
            raise UserError(f"{path}: expected kind: KatibConfig (or the katib-config ConfigMap holding it)")
        runtime = data.get("runtime") or {}

        def names(key: str, field: str) -> tuple[str, ...]:
            return tuple(
                str(x.get(field)) for x in runtime.get(key) or [] if isinstance(x, dict) and x.get(field)
            )

        resources = ((data.get("init") or {}).get("controller") or {}).get("trialResources")
        return cls(
            suggestions=names("suggestions", "algorithmName"),
            early_stoppings=names("earlyStoppings", "algorithmName"),
            metrics_collectors=names("metricsCollectors", "kind"),
            trial_resources=tuple(str(r) for r in resources) if resources else DEFAULT_TRIAL_RESOURCES,
            source=str(path),
        )
