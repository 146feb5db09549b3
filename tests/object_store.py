"""An S3-compatible object store on loopback for the slow tests: moto's server, one bucket, and
the settings that point Spark's ``s3a://`` connector (and s3fs, through the same
``spark.hadoop.fs.s3a.*`` settings) at it.

moto's server is pure Python from PyPI, starts in about a second in this process's own thread
and dies with it: an interrupted run leaves no server behind, and CI needs no toolchain
(MinIO would be a Go build of several minutes, under the AGPL).
"""

from __future__ import annotations

import logging
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from churn_spark.spark import hadoop_aws_package

# Dummy credentials: moto accepts any, and nothing here can reach a real account.
ACCESS_KEY, SECRET_KEY, REGION = "testing", "testing", "us-east-1"


@dataclass(frozen=True)
class ObjectStore:
    """A running server and the bucket made for this run."""

    endpoint: str
    bucket: str

    @property
    def lakehouse(self) -> str:
        return f"s3a://{self.bucket}/churn"

    @property
    def landing(self) -> str:
        return f"s3a://{self.bucket}/landing"

    def spark_settings(self) -> dict[str, str]:
        """``spark.hadoop.fs.s3a.*`` for this server: path-style requests over plain http to the
        loopback endpoint, with the dummy credentials."""
        return {
            "spark.hadoop.fs.s3a.endpoint": self.endpoint,
            "spark.hadoop.fs.s3a.endpoint.region": REGION,
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
            "spark.hadoop.fs.s3a.access.key": ACCESS_KEY,
            "spark.hadoop.fs.s3a.secret.key": SECRET_KEY,
            "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        }

    def environment(self) -> dict[str, str]:
        """The AWS SDKs' own variables for this server, for a driver's environment and (as
        ``spark.executorEnv``) the executors': petastorm's converter opens the training cache
        with fsspec's defaults, never the ``storage_options`` it is given elsewhere."""
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION}

    def overrides(self) -> list[str]:
        """``--set`` values that put the lakehouse and landing in the bucket, hadoop-aws among
        the session's packages, ``spark_settings`` and ``environment`` for the executors."""
        settings = {"spark.jars.packages": hadoop_aws_package(), **self.spark_settings(),
                    **{f"spark.executorEnv.{name}": value for name, value in self.environment().items()}}
        return [f"lakehouse={self.lakehouse}", f"landing={self.landing}",
                *(f"spark.settings.{key}={value}" for key, value in settings.items())]

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under ``prefix``, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def object_store() -> Iterator[ObjectStore]:
    """moto's S3 server on a free loopback port with a new bucket; stopped on exit.

    The bucket's name is unique per call: Hadoop caches one ``FileSystem`` per bucket for the
    life of a JVM, with the endpoint it was first opened with.
    """
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        store = ObjectStore(f"http://127.0.0.1:{port}", f"churn-{secrets.token_hex(4)}")
        store.client().create_bucket(Bucket=store.bucket)
        yield store
    finally:
        server.stop()


def point_session_at(spark: Any, store: ObjectStore) -> None:
    """Give the suite's running session ``store``'s s3a settings, so the tests can read what a
    job wrote there (the session's Hadoop configuration is read when a bucket is first opened)."""
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in store.spark_settings().items():
        hadoop.set(key.removeprefix("spark.hadoop."), value)
