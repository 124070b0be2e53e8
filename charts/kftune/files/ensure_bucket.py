"""Create the MLflow artifact bucket if it does not exist (init container of the MLflow pod).

Reads the endpoint from MLFLOW_S3_ENDPOINT_URL (empty: AWS S3) and the credentials from the
usual AWS_* variables, the same ones the MLflow server uses. Waits for the endpoint to answer
(the bundled MinIO may still be starting), then is idempotent: an existing bucket is left alone.
Exit 0 when the bucket exists afterwards, 1 otherwise, with one line on stderr saying why.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import boto3
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError


def _client():
    endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None
    return boto3.client("s3", endpoint_url=endpoint, region_name=os.environ.get("AWS_DEFAULT_REGION"))


def ensure_bucket(bucket: str, wait_seconds: float) -> str:
    """Return "exists" or "created"; raise RuntimeError with a one-line reason otherwise."""
    s3 = _client()
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            s3.head_bucket(Bucket=bucket)
            return "exists"
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                break
            if code in ("403", "AccessDenied"):
                raise RuntimeError(
                    f"access denied to bucket {bucket!r}: check the S3 credentials Secret"
                ) from exc
            last = f"{code}: {exc}"
        except (EndpointConnectionError, BotoCoreError) as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise RuntimeError(f"S3 endpoint not ready after {wait_seconds:.0f} s: {last}")
        time.sleep(2)
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    kwargs: dict = {"Bucket": bucket}
    if not os.environ.get("MLFLOW_S3_ENDPOINT_URL") and region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise RuntimeError(f"cannot create bucket {bucket!r}: {code}: {exc}") from exc
        return "exists"
    return "created"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ensure_bucket", description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--wait-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    try:
        state = ensure_bucket(args.bucket, args.wait_seconds)
    except RuntimeError as exc:
        print(f"ensure_bucket: error: {exc}", file=sys.stderr)
        return 1
    print(f"bucket {args.bucket}: {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
