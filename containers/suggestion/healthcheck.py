"""gRPC health probe for the suggestion container (Docker HEALTHCHECK; Kubernetes uses its native grpc probe).

`grpc_health_probe` is not available offline, so this does the same with grpcio alone:
grpc.health.v1.Health/Check for the service Katib probes ("manager.v1beta1.Suggestion"),
encoded by hand (HealthCheckRequest{service=1}; SERVING is HealthCheckResponse{status=1} = b"\\x08\\x01").
Exit 0 when SERVING, 1 otherwise, with one line saying why.

    python healthcheck.py [--address 127.0.0.1:6789] [--service manager.v1beta1.Suggestion]
"""

from __future__ import annotations

import argparse
import sys

import grpc

SERVING = b"\x08\x01"


def encode_request(service: str) -> bytes:
    raw = service.encode()
    if len(raw) > 127:
        raise ValueError("service name too long for this probe")
    return (b"\x0a" + bytes([len(raw)]) + raw) if raw else b""


def check(address: str, service: str, timeout: float) -> tuple[bool, str]:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary("/grpc.health.v1.Health/Check")
        try:
            reply = call(encode_request(service), timeout=timeout)
        except grpc.RpcError as exc:
            return False, f"{exc.code().name}: {exc.details()}"
    if reply == SERVING:
        return True, "SERVING"
    return False, f"not serving (reply {reply!r})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="healthcheck")
    parser.add_argument("--address", default="127.0.0.1:6789")
    parser.add_argument("--service", default="manager.v1beta1.Suggestion")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    ok, why = check(args.address, args.service, args.timeout)
    print(f"{args.address} {args.service or '(server)'}: {why}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
