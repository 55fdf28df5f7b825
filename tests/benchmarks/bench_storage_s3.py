"""S3 backend: throughput and client memory streaming 500 MB into a moto server. Prints; never fails on time."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import boto3

from tests.benchmarks._streaming import MiB, free_port, measure_put, wait_for_port


def test_s3_streams_500mb_with_flat_memory():
    from tfregistry_storage_s3.backend import S3Options, S3Storage

    port = free_port()
    # moto in its own process, so this process's peak RSS is the client's alone
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        endpoint, bucket = f"http://127.0.0.1:{port}", f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x",
                     aws_secret_access_key="y").create_bucket(Bucket=bucket)
        storage = S3Storage(S3Options(bucket=bucket, endpoint_url=endpoint, region="us-east-1", path_style=True,
                                      access_key_id="x", secret_access_key="y"))
        measure_put(storage, "s3 (moto server)", f"part size {storage.options.part_size // MiB} MiB")
    finally:
        server.terminate()
        server.wait(timeout=20)
