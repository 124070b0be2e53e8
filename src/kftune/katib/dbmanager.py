"""Read trials' metric logs from Katib's DB manager (``katib-db-manager``, gRPC ``DBManager``).

A Trial object keeps only its reduced observation (min/max/latest per metric); every value the
metrics collector parsed - for kftune's trainer, one per epoch - is in Katib's database, behind
``DBManager.GetObservationLog`` (``pkg/apis/manager/v1beta1/api.proto``), which is also what the
Katib UI plots. The rows come back ordered by time (``pkg/db/v1beta1/mysql``: ``ORDER BY time``);
values that are not numbers (``unavailable``) are skipped.

The DB manager listens on ``katib-db-manager.kubeflow:6789`` in a standard install; metrics
collector sidecars in user namespaces reach it there, and so does a pipeline step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from kftune.katib import proto

DB_MANAGER_SERVICE = "api.v1.beta1.DBManager"
DEFAULT_ADDRESS = "katib-db-manager.kubeflow:6789"


class ObservationLogError(RuntimeError):
    """The DB manager could not be reached or answered with an error."""


def observation_logs(
    address: str, trial_names: Iterable[str], metric: str, *, timeout_s: float = 10.0
) -> dict[str, list[float]]:
    """``{trial: [value, ...]}``: the numeric values of ``metric`` each trial reported, in time order.

    Raises :class:`ObservationLogError` naming the address and the gRPC status when a call fails."""
    import grpc

    api = proto.pb2()
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            f"/{DB_MANAGER_SERVICE}/GetObservationLog",
            request_serializer=api.GetObservationLogRequest.SerializeToString,
            response_deserializer=api.GetObservationLogReply.FromString,
        )
        out: dict[str, list[float]] = {}
        for name in trial_names:
            try:
                reply = call(
                    api.GetObservationLogRequest(trial_name=name, metric_name=metric), timeout=timeout_s
                )
            except grpc.RpcError as exc:
                code = exc.code().name if hasattr(exc, "code") and exc.code() else "UNKNOWN"
                details = exc.details() if hasattr(exc, "details") else str(exc)
                raise ObservationLogError(
                    f"Katib DB manager at {address}: GetObservationLog({name}, {metric}) failed: {code}: {details}"
                ) from None
            values = []
            for log in reply.observation_log.metric_logs:
                if log.metric.name != metric:
                    continue
                try:
                    v = float(log.metric.value)
                except ValueError:
                    continue
                if math.isfinite(v):
                    values.append(v)
            out[name] = values
        return out


def add_db_manager_servicer(servicer: Any, server: Any) -> None:
    """Register ``servicer.GetObservationLog`` on a gRPC server (a stand-in for tests and demos)."""
    import grpc

    api = proto.pb2()
    handler = grpc.unary_unary_rpc_method_handler(
        servicer.GetObservationLog,
        request_deserializer=api.GetObservationLogRequest.FromString,
        response_serializer=api.GetObservationLogReply.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(DB_MANAGER_SERVICE, {"GetObservationLog": handler}),)
    )
