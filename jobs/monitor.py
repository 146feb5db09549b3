"""spark-submit entry point for `churn-spark monitor`: exits 3 when the model should be retrained.

    spark-submit --packages io.delta:delta-spark_2.13:4.0.0 --py-files churn_spark.zip \
        jobs/monitor.py --conf conf/cluster.yaml; [ $? -eq 3 ] && spark-submit ... jobs/train.py ...

On Databricks a task's non-zero exit fails the job, so there the decision is the task value
``retrain`` ("true" / "false"), which the weekly job's condition_task reads, and the exit is 0.
"""

import sys

from churn_spark.cli import main
from churn_spark.monitor import RETRAIN


def _databricks_task_value(retrain: bool) -> bool:
    """Set the task value ``retrain`` where this runs as a Databricks job task; whether it did."""
    try:
        from pyspark.dbutils import DBUtils  # only on Databricks
        from pyspark.sql import SparkSession
    except ImportError:
        return False
    DBUtils(SparkSession.builder.getOrCreate()).jobs.taskValues.set(key="retrain", value=str(retrain).lower())
    return True


if __name__ == "__main__":
    status = main(["monitor", *sys.argv[1:]])
    if status in (0, RETRAIN) and _databricks_task_value(status == RETRAIN):
        status = 0
    sys.exit(status)
