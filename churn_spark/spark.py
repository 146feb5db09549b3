"""The only place a SparkSession is built.

``get_spark(config)`` reuses the active session where one exists (spark-submit,
Databricks, a notebook) and otherwise builds a local one with Delta Lake configured
through ``configure_spark_with_delta_pip``: Delta's jars come from Maven Central on the
first start and from the local Ivy cache after that. A local JVM started here can write its
console output (Ivy's resolution report, log4j warnings, task stack traces) to a file instead
of the terminal (``console_log``). Nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator

from pyspark.sql import SparkSession

from churn_spark.config import SparkConfig

log = logging.getLogger(__name__)

# Settings every session needs, whoever built it: Delta's SQL extension and catalog, and
# UTC so that event dates and "before T" mean the same on every machine.
_REQUIRED = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
}
_SUPPORTED_JAVA = (17, 21)


def get_spark(config: SparkConfig, console_log: str | None = None, warehouse: str | None = None) -> SparkSession:
    """Return the active SparkSession, or build one from ``config``.

    Parameters
    ----------
    config
        Master, application name and extra Spark settings (from the YAML).
    console_log
        A file where a JVM started here writes its console output, for its whole life;
        None: this process's stdout and stderr. No effect where a
        session or a JVM exists already (spark-submit, Databricks, a notebook).
    warehouse
        Where a session started here keeps metastore tables (``spark.sql.warehouse.dir``) unless
        the settings say; None: Spark's ``./spark-warehouse``, which Spark creates in the working
        folder. No effect under spark-submit (the cluster's own warehouse stays).

    Returns
    -------
    SparkSession
        With Delta configured and the session time zone set to UTC.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        active.conf.set("spark.sql.session.timeZone", "UTC")
        return active

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")  # pandas-on-Spark asks for it
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit started our JVM
    if not under_submit:
        _ensure_supported_java()

    builder = SparkSession.builder.appName(config.app_name)
    if config.master and not under_submit:
        builder = builder.master(config.master)
    own = {"spark.sql.warehouse.dir": warehouse} if warehouse and not under_submit else {}
    settings = {**_REQUIRED, **own, **config.settings}
    # Delta's helper sets spark.jars.packages itself: packages the config names (hadoop-aws for
    # s3a://) go to it, so that they add to Delta's jars instead of being overwritten.
    packages = [name.strip() for name in settings.pop("spark.jars.packages", "").split(",") if name.strip()]
    for key, value in settings.items():
        builder = builder.config(key, value)
    if not under_submit:
        from delta import configure_spark_with_delta_pip

        builder = configure_spark_with_delta_pip(builder, extra_packages=packages)
    with _console_to(None if under_submit else console_log):
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    if console_log is not None and not under_submit:
        _query_context_loggers_to(console_log)
    return spark


@contextlib.contextmanager
def _console_to(path: str | None) -> Iterator[None]:
    """Point file descriptors 1 and 2 at ``path`` while the JVM is started, then give them back.

    The JVM is a child process: it inherits this process's descriptors when it is spawned and
    keeps them, so everything it (and the Python workers it starts) prints goes to ``path``.
    """
    if path is None:
        yield
        return
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (target, *saved):
            os.close(fd)
    log.debug("Spark's console output: %s", path)


def hadoop_aws_package() -> str:
    """The Maven coordinate of hadoop-aws for the Hadoop that this pyspark ships.

    ``s3a://`` needs hadoop-aws at exactly the version of Spark's Hadoop client (its pom brings
    the matching AWS SDK bundle, about 550 MB, once into the Ivy cache). Give it as
    ``spark.settings.spark.jars.packages`` for a session built here, or to spark-submit's
    ``--packages``.

    Raises
    ------
    RuntimeError
        If pyspark's jars folder holds no ``hadoop-client-api-<version>.jar``.
    """
    import pyspark

    jars = os.path.join(os.path.dirname(pyspark.__file__), "jars")
    found = sorted(glob.glob(os.path.join(jars, "hadoop-client-api-*.jar")))
    match = re.search(r"hadoop-client-api-(\d[^/]*)\.jar$", found[-1]) if found else None
    if match is None:
        raise RuntimeError(f"no hadoop-client-api-<version>.jar in {jars}: cannot tell which hadoop-aws to use")
    return f"org.apache.hadoop:hadoop-aws:{match.group(1)}"


def _ensure_supported_java() -> None:
    """Point JAVA_HOME at JDK 17/21 when the default Java is one pyspark 4.0 cannot run on.

    pyspark 4.0 fails on Java 25 ("getSubject is not supported"); machines with several
    JDKs often have a newer one first on the PATH.
    """
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if "JAVA_HOME" in os.environ else "java"
    if _java_major(java) in _SUPPORTED_JAVA:
        return
    for home in sorted(glob.glob("/usr/lib/jvm/*")) + sorted(glob.glob("/opt/java/*")):
        if _java_major(os.path.join(home, "bin", "java")) in _SUPPORTED_JAVA:
            log.info("using JDK at %s (pyspark 4.0 needs Java 17 or 21)", home)
            os.environ["JAVA_HOME"] = home
            return
    log.warning("no JDK 17 or 21 found; Spark may fail to start on this Java")


# pyspark's own Python loggers that print a query's JSON stack trace to stderr whenever an
# exception is raised (pyspark/errors/exceptions/base.py), even one the caller handles.
_QUERY_CONTEXT_LOGGERS = ("SQLQueryContextLogger", "DataFrameQueryContextLogger")


def _query_context_loggers_to(path: str) -> None:
    """Send pyspark's query-context loggers to ``path`` instead of stderr."""
    from pyspark.logger import PySparkLogger

    for name in _QUERY_CONTEXT_LOGGERS:
        logger = PySparkLogger.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.addHandler(logging.FileHandler(path))
        logger.propagate = False


def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)', out)
    return int(match.group(1)) if match else None
