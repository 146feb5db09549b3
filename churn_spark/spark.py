"""The only place a SparkSession is built.

``get_spark(config)`` reuses the active session where one exists (spark-submit,
Databricks, a notebook) and otherwise builds a local one with Delta Lake configured
through ``configure_spark_with_delta_pip``: Delta's jars come from Maven Central on the
first start and from the local Ivy cache after that. Nothing here runs at import time.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import subprocess
import sys

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


def get_spark(config: SparkConfig) -> SparkSession:
    """Return the active SparkSession, or build one from ``config``.

    Parameters
    ----------
    config
        Master, application name and extra Spark settings (from the YAML).

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
    for key, value in {**_REQUIRED, **config.settings}.items():
        builder = builder.config(key, value)
    if not under_submit:
        from delta import configure_spark_with_delta_pip

        builder = configure_spark_with_delta_pip(builder)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


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


def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)', out)
    return int(match.group(1)) if match else None
