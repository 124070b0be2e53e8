"""Katib's v1beta1 gRPC messages, and the ``Suggestion`` service wired by hand.

The message classes are the ones generated from Katib's ``pkg/apis/manager/v1beta1/api.proto``
that the ``kubeflow-katib`` wheel ships as ``kubeflow/katib/katib_api_pb2.py`` (proto package
``api.v1.beta1``). We load that one file directly instead of ``from kubeflow.katib import
katib_api_pb2``: importing ``kubeflow.katib`` runs the SDK's ``__init__``, which imports the
``kubernetes`` client and ``kubeflow.training``, and the suggestion image installs the wheel with
``--no-deps`` (containers/suggestion/Dockerfile) to stay small. Both routes give the same classes
(protobuf keys them by descriptor), so messages mix freely with the SDK's in one process.

The generated ``katib_api_pb2_grpc.py`` imports the SDK package the same way, so the two
``Suggestion`` methods are registered here with ``grpc.method_handlers_generic_handler`` and
:class:`SuggestionStub` is the client side (used by tests and benchmarks).
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from kftune.errors import UserError

#: Full gRPC name of Katib's suggestion service (``package api.v1.beta1``).
SUGGESTION_SERVICE = "api.v1.beta1.Suggestion"
#: The service name Katib's gRPC readiness/liveness probes ask for
#: (pkg/controller.v1beta1/consts: DefaultGRPCService).
KATIB_HEALTH_SERVICE = "manager.v1beta1.Suggestion"

_MODULE_NAME = "kftune.katib._katib_api_pb2"


def _find_generated_file() -> Path:
    spec = importlib.util.find_spec("kubeflow")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root) / "katib" / "katib_api_pb2.py"
        if path.is_file():
            return path
    raise UserError(
        "Katib's gRPC messages are missing (kubeflow/katib/katib_api_pb2.py): "
        "install them with `pip install --no-deps kubeflow-katib==0.19.0`"
    )


@cache
def pb2() -> ModuleType:
    """The ``katib_api_pb2`` module (message classes such as ``GetSuggestionsRequest``)."""
    loaded = sys.modules.get("kubeflow.katib.katib_api_pb2")
    if loaded is not None:
        return loaded
    path = _find_generated_file()
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[_MODULE_NAME] = module
    return module


def add_suggestion_servicer(servicer: Any, server: Any) -> None:
    """Register ``servicer.GetSuggestions`` and ``servicer.ValidateAlgorithmSettings`` on ``server``."""
    import grpc

    api = pb2()
    handlers = {
        "GetSuggestions": grpc.unary_unary_rpc_method_handler(
            servicer.GetSuggestions,
            request_deserializer=api.GetSuggestionsRequest.FromString,
            response_serializer=api.GetSuggestionsReply.SerializeToString,
        ),
        "ValidateAlgorithmSettings": grpc.unary_unary_rpc_method_handler(
            servicer.ValidateAlgorithmSettings,
            request_deserializer=api.ValidateAlgorithmSettingsRequest.FromString,
            response_serializer=api.ValidateAlgorithmSettingsReply.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SUGGESTION_SERVICE, handlers),))


class SuggestionStub:
    """Client for Katib's ``Suggestion`` service: ``stub.GetSuggestions(request, timeout=...)``."""

    def __init__(self, channel: Any):
        api = pb2()
        self.GetSuggestions = channel.unary_unary(
            f"/{SUGGESTION_SERVICE}/GetSuggestions",
            request_serializer=api.GetSuggestionsRequest.SerializeToString,
            response_deserializer=api.GetSuggestionsReply.FromString,
        )
        self.ValidateAlgorithmSettings = channel.unary_unary(
            f"/{SUGGESTION_SERVICE}/ValidateAlgorithmSettings",
            request_serializer=api.ValidateAlgorithmSettingsRequest.SerializeToString,
            response_deserializer=api.ValidateAlgorithmSettingsReply.FromString,
        )


__all__ = ["KATIB_HEALTH_SERVICE", "SUGGESTION_SERVICE", "SuggestionStub", "add_suggestion_servicer", "pb2"]
