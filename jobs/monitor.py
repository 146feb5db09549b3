"""spark-submit entry point for `churn-spark monitor`: exits 3 when the model should be retrained.

    spark-submit --packages io.delta:delta-spark_2.13:4.0.0 --py-files churn_spark.zip \
        jobs/monitor.py --conf conf/cluster.yaml; [ $? -eq 3 ] && spark-submit ... jobs/train.py ...

On Databricks the decision is the task value ``retrain`` instead, and the exit 0
(``churn_spark.monitor.exit_status``).
"""

import sys

from churn_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["monitor", *sys.argv[1:]]))
